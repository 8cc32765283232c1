"""Publishing to a real WordPress (Debian's package, PHP's server, MariaDB) with every consumer a process.

What is asserted is what the site owner sees in WordPress: one post per article with its featured
and inline images and its category, the same posts updated after an edit, no duplicate and no
missing article after kill -9 of the publish consumer or a WordPress outage, and WordPress's own
message on an article whose target has a wrong password. The password never shows in a log.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from automation.contract import asyncapi_document
from producers.api.app import create_app
from shared.api_keys import create_api_key
from shared.models import Content, Publication
from shared.settings import Settings
from tests.e2e.conftest import fleet_with, wait_for
from tests.e2e.test_resilience import start_and_wait_for_id, wait_status
from tests.wordpress import ThrowawayWordPress, throwaway_wordpress

pytestmark = pytest.mark.e2e
BASE = "/api/v1/automation"
# retries within a few seconds (0.5, 1, 2 s), so an outage longer than that ends in publish_failed
PUBLISHING = {"ai_provider": "local", "retry_base_seconds": 0.5, "max_attempts": 4, "stall_seconds": 12,
              "publish_timeout_seconds": 10.0}
QUICK = {"stage_4_batch_size": 8, "stage_5_batch_size": 8, "stage_6_batch_size": 16}


@pytest.fixture(scope="module")
async def wordpress(output_dir: Path) -> AsyncIterator[ThrowawayWordPress]:
    async with throwaway_wordpress(output_dir / "wordpress") as site:
        yield site


@pytest.fixture(scope="module")
async def publishing_fleet(settings: Settings, output_dir: Path, wordpress: ThrowawayWordPress):
    media = output_dir / f"media-publish-{uuid.uuid4().hex[:6]}"
    media.mkdir(parents=True)
    secret = SecretStr(uuid.uuid4().hex * 2)
    async with fleet_with(settings, output_dir, media_dir=media, secret_key=secret, **PUBLISHING) as (processes, own):
        yield processes, own


@pytest.fixture(scope="module")
async def client(publishing_fleet) -> AsyncIterator[httpx.AsyncClient]:
    _, own = publishing_fleet
    app = create_app(own, asyncapi_document(own))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                     timeout=60) as http:
            yield http


async def site_in_review(publishing_fleet, sessions, make_site) -> tuple[int, dict[str, str], list[int]]:
    """A site whose run completed: (site id, API headers, the ids of its articles in review)."""
    _, own = publishing_fleet
    site = await make_site(keywords=12, **QUICK)
    run_id = await start_and_wait_for_id(own, sessions, site.id)
    run = await wait_status(sessions, run_id, "completed", "failed", timeout=240)
    assert run.status == "completed", run.error_message
    async with sessions() as session, session.begin():
        key = await create_api_key(session, site.account_id)
    return site.id, {"X-API-Key": key}, list(run.stage_7_result["content_ids"])


async def add_target(client, headers, site_id: int, wordpress: ThrowawayWordPress, *, password: str | None = None,
                     verify: bool = True) -> httpx.Response:
    return await client.post(f"{BASE}/publish_targets/", headers=headers, json={
        "site_id": site_id, "name": "blog", "base_url": wordpress.site.base_url, "username": wordpress.site.username,
        "application_password": password or wordpress.site.application_password, "post_status": "publish",
        "verify": verify})


async def publications(sessions, content_ids: list[int]) -> list[Publication]:
    async with sessions() as session:
        return list((await session.scalars(select(Publication).where(Publication.content_id.in_(content_ids))
                                           .order_by(Publication.content_id))).all())


async def settled(sessions, content_ids: list[int], timeout: float = 180) -> list[Publication]:
    """Waits until every article's publication is published or failed."""
    async def done() -> list[Publication] | None:
        rows = await publications(sessions, content_ids)
        return rows if len(rows) == len(content_ids) and all(p.status != "queued" for p in rows) else None

    return await wait_for(done, timeout=timeout, every=0.5)  # type: ignore[return-value]


async def ours(wordpress: ThrowawayWordPress, content_ids_by_title: dict[str, int]) -> Counter[str]:
    """How many posts WordPress holds per article title of ours."""
    return Counter(p["title"]["raw"] for p in await wordpress.posts() if p["title"]["raw"] in content_ids_by_title)


async def titles(sessions, content_ids: list[int]) -> dict[str, int]:
    async with sessions() as session:
        rows = (await session.execute(select(Content.title, Content.id).where(Content.id.in_(content_ids)))).all()
    return {title: content_id for title, content_id in rows}


async def test_approved_articles_become_posts_with_their_images_and_edits_update_them(
        publishing_fleet, client, sessions, make_site, wordpress):
    site_id, headers, ids = await site_in_review(publishing_fleet, sessions, make_site)
    created = await add_target(client, headers, site_id, wordpress)
    assert created.status_code == 201, created.text
    before = len(await wordpress.posts())  # a fresh site has its "Hello world!"
    bulk = (await client.post(f"{BASE}/content/bulk", json={"ids": ids, "action": "approve"}, headers=headers)).json()
    assert bulk["changed"] == len(ids)
    bulk = (await client.post(f"{BASE}/content/bulk", json={"ids": ids, "action": "publish"}, headers=headers)).json()
    assert bulk["changed"] == len(ids), bulk

    rows = await settled(sessions, ids)
    assert [p.status for p in rows] == ["published"] * len(ids), [p.last_error for p in rows]
    by_title = await titles(sessions, ids)
    assert await ours(wordpress, by_title) == Counter({title: 1 for title in by_title})  # one post each
    posts = {p["id"]: p for p in await wordpress.posts()}
    media_urls = {m["id"]: m["source_url"] for m in await wordpress.media()}
    for publication in rows:
        post = posts[publication.remote_id]
        assert post["status"] == "publish" and post["featured_media"] in media_urls
        inline = re.findall(r'<img[^>]+src="([^"]+)"', post["content"]["raw"])
        assert inline and all(url in media_urls.values() for url in inline)  # rewritten to the media library
        assert post["categories"] and post["tags"]
    async with httpx.AsyncClient() as http:  # the images are really there
        assert (await http.get(next(iter(media_urls.values())))).headers["content-type"] == "image/png"

    # an edit, published again, updates the same post
    first = rows[0]
    edited = await client.patch(f"{BASE}/content/{first.content_id}", json={"title": "Edited by an editor"},
                                headers=headers)
    assert edited.status_code == 200
    assert (await client.post(f"{BASE}/content/{first.content_id}/publish", headers=headers)).status_code == 202

    async def updated() -> dict | None:
        post = (await wordpress.rest("GET", f"wp/v2/posts/{first.remote_id}", params={"context": "edit"})).json()
        return post if post["title"]["raw"] == "Edited by an editor" else None

    await wait_for(updated, timeout=60)
    assert len(await wordpress.posts()) == before + len(ids)  # post count unchanged
    detail = (await client.get(f"{BASE}/content/{first.content_id}", headers=headers)).json()
    assert detail["publications"][0]["up_to_date"] is True and detail["status"] == "published"
    assert [c["action"] for c in detail["changes"]][:3] == ["published", "publish", "edit"]


async def test_kill_9_of_the_publish_consumer_and_an_outage_leave_no_duplicate_and_no_missing_post(
        publishing_fleet, client, sessions, make_site, wordpress):
    processes, _ = publishing_fleet
    site_id, headers, ids = await site_in_review(publishing_fleet, sessions, make_site)
    assert (await add_target(client, headers, site_id, wordpress)).status_code == 201
    await client.post(f"{BASE}/content/bulk", json={"ids": ids, "action": "approve"}, headers=headers)
    before = {p["id"] for p in await wordpress.posts()}

    async def new_posts() -> Counter[str]:
        """This site's posts: the ones WordPress did not hold before, counted per title."""
        return Counter(p["title"]["raw"] for p in await wordpress.posts() if p["id"] not in before)

    await client.post(f"{BASE}/content/bulk", json={"ids": ids, "action": "publish"}, headers=headers)

    async def some_published() -> bool:
        return any(p.status == "published" for p in await publications(sessions, ids))

    await wait_for(some_published, timeout=120, every=0.1)
    processes.kill("publish")  # kill -9 mid-way: uploads and posts in flight
    done_at_kill = sum(p.status == "published" for p in await publications(sessions, ids))
    assert done_at_kill < len(ids)  # the kill did land mid-way
    await asyncio.sleep(1)
    processes.start("publish")
    rows = await settled(sessions, ids)
    assert [p.status for p in rows] == ["published"] * len(ids), [p.last_error for p in rows]
    by_title = await titles(sessions, ids)
    one_each = Counter({title: 1 for title in by_title})
    assert await new_posts() == one_each
    assert {p.remote_id for p in rows} == {p["id"] for p in await wordpress.posts()} - before

    # WordPress stopped for longer than the retry budget: every article ends publish_failed, visibly ...
    await wordpress.stop()
    try:
        await client.post(f"{BASE}/content/bulk", json={"ids": ids[:4], "action": "publish"}, headers=headers)
        rows = await settled(sessions, ids[:4], timeout=120)
        assert [p.status for p in rows] == ["failed"] * 4
        assert all("attempts" in (p.last_error or "") for p in rows), [p.last_error for p in rows]
        detail = (await client.get(f"{BASE}/content/{ids[0]}", headers=headers)).json()
        assert detail["status"] == "publish_failed" and detail["publications"][0]["error"]
    finally:
        await wordpress.start()
    # ... and publishing them again once it is back updates the same posts
    retried = (await client.post(f"{BASE}/content/bulk", json={"ids": ids[:4], "action": "publish"},
                                 headers=headers)).json()
    assert retried["changed"] == 4
    rows = await settled(sessions, ids[:4])
    assert [p.status for p in rows] == ["published"] * 4
    assert await new_posts() == one_each

    # a short outage, within the retry budget: the retries carry it
    await wordpress.stop()
    await client.post(f"{BASE}/content/bulk", json={"ids": ids[4:6], "action": "publish"}, headers=headers)
    await asyncio.sleep(1.0)
    await wordpress.start()
    rows = await settled(sessions, ids[4:6])
    assert [p.status for p in rows] == ["published"] * 2, [p.last_error for p in rows]
    assert all(p.attempts >= 2 for p in rows)
    assert await new_posts() == one_each


async def test_a_wrong_password_ends_in_publish_failed_with_wordpress_message_and_is_never_logged(
        publishing_fleet, client, sessions, make_site, wordpress, output_dir):
    site_id, headers, ids = await site_in_review(publishing_fleet, sessions, make_site)
    wrong = "WrOng " + uuid.uuid4().hex[:4] + " pAss wOrd"
    refused = await add_target(client, headers, site_id, wordpress, password=wrong)
    assert refused.status_code == 422 and "refused these credentials" in refused.json()["detail"]
    saved = await add_target(client, headers, site_id, wordpress, password=wrong, verify=False)
    assert saved.status_code == 201
    await client.post(f"{BASE}/content/{ids[0]}/approve", headers=headers)
    await client.post(f"{BASE}/content/{ids[0]}/publish", headers=headers)
    [row] = await settled(sessions, ids[:1], timeout=60)
    assert row.status == "failed" and row.attempts == 1  # not retried: the password will not get better
    detail = (await client.get(f"{BASE}/content/{ids[0]}", headers=headers)).json()
    assert detail["status"] == "publish_failed"
    assert "application password" in detail["publications"][0]["error"].lower()  # WordPress's own words

    leaked = []
    for secret in (wrong, wordpress.site.application_password):
        for variant in {secret, secret.replace(" ", "")}:
            for path in output_dir.rglob("*"):
                if path.is_file() and path.suffix in {".log", ".txt", ".jsonl", ""} and variant.encode() in \
                        path.read_bytes():
                    leaked.append(str(path))
            for answer in (refused, saved):
                assert variant not in answer.text
    assert leaked == []
