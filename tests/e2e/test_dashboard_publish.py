"""The last mile in the dashboard (headless Chromium): act on what is in review, publish to a real WordPress, export.

One site's run, taken through the page as an editor would: an article rejected with a reason in its modal and
another in bulk, the rest approved in bulk, a 409 shown beside Publish while the site has no target, a WordPress
target added through the Publishing form (checked against the site), bulk publish, an edit (after a 422 shown
beside its field) published as an update of the same post, a post deleted on the site recreated, and exports of
a selection and of the run. What is asserted is what WordPress holds (tests/wordpress.py) and what the page
shows; the application password never appears in the page, and the browser logs no error but the two provoked.
"""

from __future__ import annotations

import asyncio
import io
import re
import uuid
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from shared.settings import Settings
from tests.e2e.conftest import api_server, fleet_with, wait_for
from tests.e2e.test_dashboard import BASE, new_site, run_to_completion, sign_in
from tests.wordpress import ThrowawayWordPress, throwaway_wordpress

pytestmark = pytest.mark.e2e

from playwright import async_api as playwright_api  # noqa: E402  (test_dashboard skips without Chromium)

expect = playwright_api.expect
# a few quick retries, so a publish that cannot succeed ends within seconds
PUBLISHING = {"retry_base_seconds": 0.5, "max_attempts": 4, "stall_seconds": 12, "publish_timeout_seconds": 10.0}
# the two HTTP errors the test provokes on purpose, a 409 and a 422 (the browser logs every 4xx answer of fetch)
PROVOKED = re.compile(r"^Failed to load resource: the server responded with a status of (409|422)")


@pytest.fixture(scope="module")
async def wordpress(output_dir: Path) -> AsyncIterator[ThrowawayWordPress]:
    async with throwaway_wordpress(output_dir / "wordpress-dashboard") as site:
        yield site


@pytest.fixture(scope="module")
async def server(settings: Settings, sessions, output_dir: Path, wordpress) -> AsyncIterator[str]:
    """Every consumer (the publish one too) as a process, and the API, sharing a secret key; yields its URL."""
    media = output_dir / f"media-dashboard-{uuid.uuid4().hex[:6]}"
    media.mkdir(parents=True)
    async with fleet_with(settings, output_dir, ai_latency_ms=20, media_dir=media,
                          secret_key=SecretStr(uuid.uuid4().hex * 2), **PUBLISHING) as (_fleet, own):
        async with api_server(own, output_dir) as base:
            yield base


@pytest.fixture
async def page(browser, request, shots: Path):
    """A fresh context; every page error and console error is collected, and must be none (but the expected)."""
    context = await browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda message: errors.append(f"{message.text} ({message.location.get('url')})")
           if message.type == "error" else None)
    yield tab
    await tab.screenshot(path=shots / f"{request.node.name}.png", full_page=True)
    await context.close()
    unexpected = [e for e in errors if not PROVOKED.search(e)]
    assert not unexpected and len(errors) - len(unexpected) <= 2, f"errors in the browser: {errors}"


@pytest.fixture
async def api(server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{server}{BASE}", timeout=30) as http:
        yield http


async def posts_by_id(wordpress: ThrowawayWordPress) -> dict[int, dict[str, Any]]:
    return {p["id"]: p for p in await wordpress.posts()}


def assert_never_shown(html: str, wordpress: ThrowawayWordPress) -> None:
    secret = wordpress.site.application_password
    for variant in {secret, secret.replace(" ", "")}:
        assert variant not in html, "the application password is in the page"


async def opened(download) -> zipfile.ZipFile:
    """A Playwright download, as a zip."""
    return zipfile.ZipFile(io.BytesIO(await asyncio.to_thread(Path(await download.path()).read_bytes)))


async def select_all_on(page, tab: str, count: int) -> None:
    """The status tab, then "select all on page"; `count` rows are there and all picked."""
    await page.click(f'#review-tabs [data-status="{tab}"]')
    await expect(page.locator(f'#review-tabs [data-status="{tab}"]')).to_have_attribute("aria-selected", "true")
    await expect(page.locator("#review-list tr")).to_have_count(count)
    await page.check("#review-select-page")
    await expect(page.locator("#selection-count")).to_have_text(f"{count} selected")


async def test_reject_approve_publish_edit_and_export_from_the_dashboard(page, server, api, sessions, make_module_site,
                                                                         wordpress, request, shots):
    site, key = await new_site(sessions, make_module_site, keywords=12)
    headers = {"X-API-Key": key}
    run_id = await run_to_completion(api, site.id, key)
    review = (await api.get("/review/", params={"site_id": site.id}, headers=headers)).json()
    ids = [item["id"] for item in review["items"]]
    assert 3 <= review["total"] == len(ids) <= 20, review["total"]  # one page
    before = set(await posts_by_id(wordpress))  # a fresh site has its "Hello world!"

    await sign_in(page, server, key)
    tabs = page.locator("#review-tabs .tab")
    await expect(tabs).to_have_text([f"Review {len(ids)}", "Approved 0", "Rejected 0", "Published 0",
                                     "Publish failed 0", f"All {len(ids)}"])
    await expect(page.locator("#review-range")).to_have_text(f"1\u2013{len(ids)} of {len(ids)}")  # an en dash
    await expect(page.locator("#review-list .badge")).to_have_text(["review"] * len(ids))

    # --- one article rejected with a reason in its modal, another in bulk (the reason is asked for)
    rejected = ids[-1]
    await page.click(f'.review-item[data-content-id="{rejected}"]')
    await expect(page.locator("#article-status .badge")).to_have_text("review")
    await page.click("#article-reject")
    await page.fill("#article-reject-reason", "Off-topic for this site")
    await page.click("#article-reject-confirm")
    await expect(page.locator("#article-status .badge")).to_have_text("rejected")
    await expect(page.locator("#article-rejection")).to_contain_text("Off-topic for this site")
    await expect(page.locator("#article-history .change").first).to_contain_text("rejected")
    await expect(page.locator("#article-history .change").first).to_contain_text("Off-topic for this site")
    await expect(page.locator("#article-publish")).to_be_disabled()
    await page.screenshot(path=shots / f"{request.node.name}-rejected.png")
    await page.click("#article-close")
    await expect(page.locator('#review-tabs [data-status="rejected"] .tab-count')).to_have_text("1")
    await page.check(f'#review-list tr[data-content-id="{ids[-2]}"] .row-check')
    await expect(page.locator("#selection-count")).to_have_text("1 selected")
    await page.click("#bulk-reject")
    await page.click("#bulk-reject-confirm")  # no reason yet: refused by the page, nothing sent
    await expect(page.locator("#bulk-result")).to_contain_text("A rejection needs a reason")
    await page.fill("#bulk-reject-reason", "Duplicate of another article")
    await page.click("#bulk-reject-confirm")
    await expect(page.locator("#bulk-result")).to_contain_text("Reject: 1 changed, 0 unchanged, 0 failed")
    await expect(page.locator('#review-tabs [data-status="rejected"] .tab-count')).to_have_text("2")
    await expect(page.locator("#selection-count")).to_have_text("0 selected")

    # --- the rest approved in bulk: select all on the page, Approve
    approved = ids[:-2]
    await page.check("#review-select-page")
    await expect(page.locator("#selection-count")).to_have_text(f"{len(approved)} selected")
    await page.click("#bulk-approve")
    await expect(page.locator("#bulk-result")).to_contain_text(
        f"Approve: {len(approved)} changed, 0 unchanged, 0 failed")
    await expect(page.locator("#review-empty")).to_be_visible()
    await expect(page.locator('#review-tabs [data-status="approved"] .tab-count')).to_have_text(str(len(approved)))

    # --- publishing before there is a target: the API's 409, in its words, beside the action
    await page.click('#review-tabs [data-status="approved"]')
    await page.click(f'.review-item[data-content-id="{approved[0]}"]')
    await expect(page.locator("#article-publish")).to_be_enabled()
    await page.click("#article-publish")
    await expect(page.locator("#article-message")).to_have_text(
        f"Could not publish: site {site.id} has no enabled publish target; add one first")
    await expect(page.locator("#article-message")).to_have_class(re.compile(r"\berror\b"))
    await page.click("#article-close")

    # --- a WordPress target through the Publishing form, checked against the site; the skip-review warning
    await page.click("#configure")
    await expect(page.locator("#targets-empty")).to_be_visible()
    await page.check("#cfg-skip_review")
    await expect(page.locator("#skip-review-warning")).to_contain_text("skip human review")
    await page.click("#config-save")
    await expect(page.locator('[data-error-for="skip_review"]')).to_contain_text("without human review")
    await page.uncheck("#cfg-skip_review")
    await expect(page.locator("#skip-review-warning")).to_be_hidden()
    await page.click("#target-add")
    await page.fill("#tgt-base_url", wordpress.site.base_url)
    await page.fill("#tgt-username", wordpress.site.username)
    await page.fill("#tgt-application_password", wordpress.site.application_password)
    await page.select_option("#tgt-post_status", "future")
    await expect(page.locator("#tgt-schedule_spacing_minutes")).to_be_visible()  # the spacing of scheduled posts
    await page.select_option("#tgt-post_status", "publish")
    await expect(page.locator("#tgt-schedule_spacing_minutes")).to_be_hidden()
    await expect(page.locator("#tgt-verify")).to_be_checked()
    await page.screenshot(path=shots / f"{request.node.name}-target.png")
    await page.click("#target-save")
    await expect(page.locator("#targets .target")).to_have_count(1, timeout=20_000)
    await expect(page.locator("#target-form")).to_be_hidden()
    target = page.locator("#targets .target").first
    await expect(target).to_contain_text("application password: stored")
    await target.locator(".target-test").click()
    await expect(target.locator(".target-check")).to_contain_text(f"Connected as {wordpress.site.username}")
    await target.locator(".target-edit").click()  # editing shows "stored" and an empty field, never the password
    await expect(page.locator("#tgt-password-state")).to_have_text("stored")
    await expect(page.locator("#tgt-application_password")).to_have_value("")
    assert_never_shown(await page.content(), wordpress)
    await page.click("#target-cancel")
    await page.click("#config-close")
    stored = (await api.get("/publish_targets/", params={"site_id": site.id}, headers=headers)).json()["targets"]
    assert [(t["base_url"], t["post_status"], t["enabled"], t["has_password"]) for t in stored] == [
        (wordpress.site.base_url, "publish", True, True)]

    # --- bulk publish of every article, the rejected one included: it fails, in plain words, and gets no post
    await select_all_on(page, "all", len(ids))
    await page.click("#bulk-publish")
    result = page.locator("#bulk-result")
    await expect(result).to_contain_text(f"Publish: {len(approved)} changed, 0 unchanged, 2 failed")
    await expect(result.locator(".result-errors li")).to_have_text([
        f"#{i}: content {i} is rejected; approve it before publishing" for i in (ids[-2], ids[-1])])  # in page order
    await expect(page.locator("#selection-count")).to_have_text("2 selected")  # what failed stays picked

    async def all_published() -> bool:
        counts = (await api.get("/review/", params={"site_id": site.id}, headers=headers)).json()["counts"]
        return counts["published"] + counts["publish_failed"] == len(approved)

    await wait_for(all_published, timeout=90, every=0.5)
    posts = {i: p for i, p in (await posts_by_id(wordpress)).items() if i not in before}
    assert len(posts) == len(approved)  # one post per article
    media = {m["id"]: m["source_url"] for m in await wordpress.media()}
    for post in posts.values():
        assert post["status"] == "publish" and post["featured_media"] in media
        inline = re.findall(r'<img[^>]+src="([^"]+)"', post["content"]["raw"])
        assert inline and all(url in media.values() for url in inline)
    await page.click('#review-tabs [data-status="published"]')
    await expect(page.locator('#review-tabs [data-status="published"] .tab-count')).to_have_text(str(len(approved)))
    await expect(page.locator("#review-list .badge")).to_have_text(["published"] * len(approved))
    await page.click('#review-tabs [data-status="rejected"]')  # the rejected ones: badge, no post
    await expect(page.locator("#review-list .badge")).to_have_text(["rejected", "rejected"])
    for content_id, reason in ((ids[-1], "Off-topic for this site"), (ids[-2], "Duplicate of another article")):
        detail = (await api.get(f"/content/{content_id}", headers=headers)).json()
        assert detail["publications"] == [] and detail["rejection_reason"] == reason
        assert detail["title"] not in {p["title"]["raw"] for p in posts.values()}

    # --- an edit in the modal, published as an update of the same post
    edited = approved[0]
    await page.click('#review-tabs [data-status="published"]')
    await page.click(f'.review-item[data-content-id="{edited}"]')
    await expect(page.locator("#article-status .badge")).to_have_text("published")
    publication = page.locator("#article-publications .publication")
    await expect(publication).to_have_count(1)
    await expect(publication.locator(".badge")).to_have_text("published")
    [shown] = (await api.get(f"/content/{edited}", headers=headers)).json()["publications"]
    post_id = shown["remote_id"]
    assert post_id in posts
    await expect(publication.locator("a.post-link")).to_have_attribute("href", posts[post_id]["link"])
    await expect(page.locator("#article-publish")).to_have_text("Publish again")
    await page.locator("#article-modal").evaluate("overlay => overlay.scrollTo(0, overlay.scrollHeight)")
    await expect(page.locator("#article-close")).to_be_in_viewport()  # the header stays when the body scrolls
    await page.click("#article-edit")
    await expect(page.locator("#article-edit-form")).to_be_visible()
    await page.fill("#edit-meta_title", "x" * 61)
    await expect(page.locator("#edit-meta_title-count")).to_have_text("61/60")
    await expect(page.locator("#edit-meta_title-count")).to_have_class(re.compile(r"\bover\b"))
    await page.click("#edit-save")  # the API's 422, beside the field in plain words
    await expect(page.locator('#article-edit-form [data-error-for="meta_title"]')).to_have_text(
        "must be at most 60 characters")
    await expect(page.locator("#edit-meta_title")).to_have_attribute("aria-invalid", "true")
    await page.screenshot(path=shots / f"{request.node.name}-edit.png")
    await page.fill("#edit-meta_title", "Edited meta title")
    await page.fill("#edit-title", "Edited in the dashboard")
    await page.click("#edit-save")
    await expect(page.locator("#article-edit-form")).to_be_hidden()
    await expect(page.locator("#article-title")).to_have_text("Edited in the dashboard")
    await expect(page.locator("#article-body .article-html")).to_be_visible()
    await expect(page.locator("#article-history .change").first).to_contain_text("edited")
    await expect(page.locator("#article-publications .stale")).to_contain_text("out of date")
    await expect(page.locator("#article-publish")).to_have_text("Publish update")
    await page.screenshot(path=shots / f"{request.node.name}-update.png")
    await page.click("#article-publish")
    await expect(page.locator("#article-message")).to_contain_text("Sent to publishing")
    await expect(page.locator("#article-publish")).to_have_text("Publish again", timeout=30_000)  # up to date

    async def updated() -> bool:
        post = (await wordpress.rest("GET", f"wp/v2/posts/{post_id}", params={"context": "edit"})).json()
        return bool(post["title"]["raw"] == "Edited in the dashboard")

    await wait_for(updated, timeout=30)
    assert len(await posts_by_id(wordpress)) == len(before) + len(approved)  # the same post, no new one

    # --- the post deleted on the site: publishing again fails, visibly, and "Recreate post" makes a new one
    await wordpress.delete_post(post_id, force=True)
    await page.click("#article-publish")
    await expect(page.locator("#article-status .badge")).to_have_text("publish failed", timeout=30_000)
    await expect(page.locator("#article-publications .publication-error")).to_contain_text("was deleted on the site")
    await expect(page.locator("#article-recreate")).to_be_visible()
    await page.screenshot(path=shots / f"{request.node.name}-deleted.png")
    await page.click("#article-recreate")
    await expect(page.locator("#article-status .badge")).to_have_text("published", timeout=30_000)
    await expect(page.locator("#article-recreate")).to_be_hidden()
    await expect(page.locator("#article-publications .publication-error")).to_have_count(0)
    recreated = {i: p for i, p in (await posts_by_id(wordpress)).items() if i not in before}
    assert len(recreated) == len(approved) and post_id not in recreated
    assert [p["title"]["raw"] for p in recreated.values()].count("Edited in the dashboard") == 1
    await page.click("#article-close")

    # --- exports: the selection (Markdown) and the run (HTML), downloaded through the page with the key
    await select_all_on(page, "published", len(approved))
    await page.select_option("#export-format", "markdown")
    async with page.expect_download() as waiting:
        await page.click("#bulk-export")
    download = await waiting.value
    assert download.suggested_filename.endswith("-selection-markdown.zip")
    with await opened(download) as archive:
        names = archive.namelist()
        articles = [n for n in names if re.fullmatch(r"articles/[^/]+\.md", n)]
        assert len(articles) == len(approved), names
        assert any("Edited in the dashboard" in archive.read(n).decode() for n in articles)
    await expect(page.locator("#bulk-result")).to_contain_text("downloaded")

    await page.click("#history-body tr")
    await expect(page.locator("#run-modal")).to_be_visible()
    await page.select_option("#run-export-format", "html")
    async with page.expect_download() as waiting:
        await page.click("#run-export")
    download = await waiting.value
    assert download.suggested_filename.endswith(f"{run_id}-html.zip")
    with await opened(download) as archive:
        assert len([n for n in archive.namelist() if re.fullmatch(r"articles/[^/]+\.html", n)]) == len(ids)
    await page.click("#run-close")

    assert_never_shown(await page.content(), wordpress)
