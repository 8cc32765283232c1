"""The /automation dashboard in headless Chromium (Playwright), against the API served by uvicorn.

The consumers run as real processes on a queue prefix of their own, with the simulated AI provider and a few
milliseconds of latency so runs finish in seconds. Every test saves a screenshot named after it under the
test run's output folder (`<output_dir>/screenshots/`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from shared.api_keys import create_api_key
from shared.catalogue import STAGES
from shared.settings import Settings
from tests.e2e.conftest import api_server, fleet_with, wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BASE = "/api/v1/automation"

pytestmark = pytest.mark.e2e
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: run scripts/setup-browser (Debian's chromium)", allow_module_level=True)

from playwright import async_api as playwright_api  # noqa: E402  (installed by scripts/setup-browser)

expect = playwright_api.expect


@pytest.fixture(scope="module")
async def dash_settings(settings: Settings, sessions, output_dir) -> AsyncIterator[Settings]:
    """The consumers running as processes on the module's own queue prefix; yields their settings."""
    async with fleet_with(settings, output_dir, ai_latency_ms=20) as (_fleet, own):
        yield own


@pytest.fixture(scope="module")
async def server(dash_settings: Settings, output_dir) -> AsyncIterator[str]:
    """`automation api` in a background process on a free port; yields its base URL."""
    async with api_server(dash_settings, output_dir) as base:
        yield base


@pytest.fixture(scope="module")
async def browser():
    async with playwright_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        await chromium.close()


@pytest.fixture(scope="module")
def shots(output_dir) -> Path:
    """Where the screenshots go: `<output_dir>/screenshots/<test name>.png`."""
    folder = output_dir / "screenshots"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
async def page(browser, request, shots):
    """A fresh browser context per test (empty sessionStorage); its screenshot is saved afterwards."""
    context = await browser.new_context(viewport={"width": 1440, "height": 1000})
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    await tab.screenshot(path=shots / f"{request.node.name}.png", full_page=True)
    await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
async def api(server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{server}{BASE}", timeout=30) as http:
        yield http


async def new_site(sessions, make_module_site, keywords: int = 16, credits: int = 100_000, **config):
    site = await make_module_site(keywords=keywords, credits=credits, synthetic=True, **config)
    async with sessions() as session, session.begin():
        key = await create_api_key(session, site.account_id)
    return site, key


async def sign_in(page, server: str, key: str) -> None:
    await page.goto(f"{server}/automation")
    await expect(page.locator("#key-form")).to_be_visible()
    await page.fill("#key-input", key)
    await page.click("#key-form button[type=submit]")
    await expect(page.locator("#app")).to_be_visible()
    await expect(page.locator("#key-screen")).to_be_hidden()


async def run_to_completion(api: httpx.AsyncClient, site_id: int, key: str, timeout: float = 90) -> str:
    started = await api.post("/run_now/", params={"site_id": site_id}, headers={"X-API-Key": key})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]

    async def done() -> bool:
        answer = await api.get(f"/runs/{run_id}", headers={"X-API-Key": key})
        return answer.json()["status"] == "completed"

    await wait_for(done, timeout=timeout)
    return str(run_id)


async def test_the_api_key_is_asked_once_and_kept_in_session_storage(page, server, sessions, make_module_site):
    site, key = await new_site(sessions, make_module_site, keywords=8)
    await page.goto(f"{server}/automation")
    await expect(page.locator("#key-form")).to_be_visible()
    await expect(page.locator("#app")).to_be_hidden()
    await page.fill("#key-input", "ak_not-a-key")
    await page.click("#key-form button[type=submit]")
    await expect(page.locator("#key-error")).to_contain_text("not accepted")
    assert await page.evaluate("sessionStorage.length") == 0

    await page.fill("#key-input", key)
    await page.click("#key-form button[type=submit]")
    await expect(page.locator("#app")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('automation.apiKey')") == key
    await expect(page.locator("#site-select option")).to_have_count(1)
    await expect(page.locator("#site-select")).to_have_value(str(site.id))
    await expect(page.locator("#credits")).to_have_text("100,000")
    await expect(page.locator("#run-now")).to_be_enabled()
    await expect(page.locator("#pause")).to_be_disabled()
    await expect(page.locator("#resume")).to_be_disabled()
    await expect(page.locator(".stage-card")).to_have_count(7)
    # the stage names come from the API's catalogue (GET /stages), not from the page
    await expect(page.locator(".stage-card .stage-name")).to_have_text([s.name[0].upper() + s.name[1:] for s in STAGES])
    await expect(page.locator("#run-log-stage option")).to_have_count(len(STAGES) + 1)

    await page.reload()  # same tab: the key is not asked again
    await expect(page.locator("#app")).to_be_visible()
    await expect(page.locator("#key-screen")).to_be_hidden()
    await expect(page.locator("#site-select")).to_have_value(str(site.id))


async def test_run_now_shows_the_estimate_and_the_seven_stage_cards_reach_complete(page, server, sessions,
                                                                                   make_module_site, api):
    site, key = await new_site(sessions, make_module_site, keywords=16)
    await sign_in(page, server, key)
    estimate = (await api.get("/estimate/", params={"site_id": site.id}, headers={"X-API-Key": key})).json()
    await page.click("#run-now")
    await expect(page.locator("#estimate-modal")).to_be_visible()
    await expect(page.locator("#estimate-total")).to_have_text(f"{estimate['total']:,}")
    await expect(page.locator("#estimate-required")).to_have_text(f"{estimate['required']:,}")
    await page.click("#estimate-start")
    await expect(page.locator("#estimate-modal")).to_be_hidden()
    await expect(page.locator("#run-now")).to_be_disabled()

    cards = page.locator(".stage-card")
    await expect(page.locator('.stage-card[data-status="completed"]')).to_have_count(7, timeout=90_000)
    for number in range(7):
        await expect(cards.nth(number).locator(".stage-icon")).to_have_text("✅")
    await expect(page.locator("#run-status")).to_have_text("completed")
    await expect(page.locator("#run-now")).to_be_enabled()
    await expect(page.locator("#pause")).to_be_disabled()
    await expect(page.locator("#log")).to_contain_text("Run completed", timeout=10_000)
    await expect(page.locator("#history-body tr")).to_have_count(1)
    await expect(page.locator("#history-body tr .badge")).to_have_text("completed")
    detail = (await api.get("/credits/", headers={"X-API-Key": key})).json()
    await expect(page.locator("#credits")).to_have_text(f"{detail['credits_balance']:,}", timeout=10_000)

    await page.click("#history-body tr")  # a run's logs and per-stage detail
    await expect(page.locator("#run-modal")).to_be_visible()
    await expect(page.locator('#run-stages tr[data-status="completed"]')).to_have_count(7)
    await page.select_option("#run-log-stage", "4")
    await expect(page.locator("#run-log")).to_contain_text("Stage 4 started")
    await page.click("#run-close")

    # the log's line selector, every line shown (per-batch detail too)
    await page.select_option("#log-level", "all")
    await page.select_option("#log-lines", "50")
    await expect(page.locator("#log .log-line")).to_have_count(50, timeout=10_000)


async def test_run_now_without_enough_credits_explains_the_figures(page, server, sessions, make_module_site):
    _site, key = await new_site(sessions, make_module_site, keywords=16, credits=10)
    await sign_in(page, server, key)
    await page.click("#run-now")
    await expect(page.locator("#estimate-message")).to_contain_text("Not enough credits")
    await expect(page.locator("#estimate-message")).to_contain_text("balance is 10")
    await expect(page.locator("#estimate-start")).to_be_disabled()


async def test_a_run_is_paused_and_resumed_from_the_page(page, server, sessions, make_module_site, api, shots):
    site, key = await new_site(sessions, make_module_site, keywords=96)
    await sign_in(page, server, key)
    await page.click("#run-now")
    await expect(page.locator("#estimate-start")).to_be_enabled()
    await page.click("#estimate-start")
    await expect(page.locator("#pause")).to_be_enabled(timeout=15_000)
    await page.click("#pause")
    await expect(page.locator("#run-status")).to_have_text("paused", timeout=15_000)
    await expect(page.locator("#resume")).to_be_enabled()
    await expect(page.locator("#pause")).to_be_disabled()
    await expect(page.locator("#run-now")).to_be_disabled()
    run = (await api.get("/current_run/", params={"site_id": site.id}, headers={"X-API-Key": key})).json()["run"]
    assert run["status"] == "paused"
    await page.screenshot(path=shots / "test_a_run_is_paused_and_resumed_from_the_page-paused.png", full_page=True)

    await page.click("#resume")
    await expect(page.locator('.stage-card[data-status="completed"]')).to_have_count(7, timeout=90_000)
    await expect(page.locator("#run-status")).to_have_text("completed")
    answer = (await api.get(f"/runs/{run['run_id']}", headers={"X-API-Key": key})).json()
    assert answer["status"] == "completed"


async def test_an_invalid_configuration_shows_the_api_error_beside_the_field_and_saves_nothing(
        page, server, sessions, make_module_site, api, shots, request):
    site, key = await new_site(sessions, make_module_site, keywords=8)
    before = (await api.get("/config/", params={"site_id": site.id}, headers={"X-API-Key": key})).json()
    await sign_in(page, server, key)
    await page.click("#configure")
    await expect(page.locator("#config-modal")).to_be_visible()
    await expect(page.locator("#cfg-times input")).to_have_count(1)
    await expect(page.locator("#cfg-times input")).to_have_value(before["scheduled_time"])
    await page.check("#cfg-is_enabled")
    await page.select_option("#cfg-frequency", "weekly")
    await page.fill("#cfg-stage_2_batch_size", "0")
    await page.fill("#cfg-times input", "25:00")
    await page.click("#config-save")

    batch_error = page.locator('[data-error-for="stage_2_batch_size"]')
    await expect(batch_error).to_have_text("must be at least 1: a batch holds 1\u20131000 items")  # in plain words
    await expect(page.locator('[data-error-for="scheduled_times"]')).to_have_text(
        "time 1: use a 24-hour time as HH:MM, e.g. 09:30")
    await expect(page.locator('[data-error-for="stage_1_batch_size"]')).to_have_text("")
    await expect(page.locator("#cfg-stage_2_batch_size")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#config-modal")).to_be_visible()
    after = (await api.get("/config/", params={"site_id": site.id}, headers={"X-API-Key": key})).json()
    assert after == before  # nothing saved
    await page.screenshot(path=shots / f"{request.node.name}-errors.png", full_page=True)

    await page.fill("#cfg-stage_2_batch_size", "3")
    await page.fill("#cfg-times input", "06:30")
    await page.click("#config-save")
    await expect(page.locator("#config-modal")).to_be_hidden()
    saved = (await api.get("/config/", params={"site_id": site.id}, headers={"X-API-Key": key})).json()
    assert saved["stage_2_batch_size"] == 3 and saved["scheduled_time"] == "06:30"
    assert saved["is_enabled"] and saved["frequency"] == "weekly" and saved["next_run_at"]


@pytest.fixture(scope="module")
async def reviewed_site(server, sessions, make_module_site):
    """A site whose run has completed: content waiting in review, with generated images."""
    site, key = await new_site(sessions, make_module_site, keywords=8)
    async with httpx.AsyncClient(base_url=f"{server}{BASE}", timeout=30) as http:
        await run_to_completion(http, site.id, key)
    return site, key


async def test_an_article_in_review_is_previewed_with_its_images(page, server, api, reviewed_site):
    site, key = reviewed_site
    review = (await api.get("/review/", params={"site_id": site.id}, headers={"X-API-Key": key})).json()
    assert review["total"] > 0 and review["items"][0]["images"] > 0
    first = review["items"][0]
    await sign_in(page, server, key)
    await expect(page.locator(".review-item")).to_have_count(review["total"])
    await page.click(f'.review-item[data-content-id="{first["id"]}"]')
    await expect(page.locator("#article-modal")).to_be_visible()
    await expect(page.locator("#article-title")).to_have_text(first["title"])
    await expect(page.locator("#article-body .article-html h1")).to_have_text(first["title"])
    images = page.locator("#article-body figure img")
    await expect(images).to_have_count(first["images"])
    await page.wait_for_function("[...document.querySelectorAll('#article-body figure img')].every("
                                 "i => i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:'))", timeout=10_000)
    widths = await images.evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
    assert len(widths) == first["images"] and all(w > 0 for w in widths), widths
    assert await page.locator("#article-body figure.featured img").count() == 1


async def test_the_dashboard_endpoints_show_only_the_callers_account(api, sessions, make_module_site, reviewed_site):
    site, key = reviewed_site
    owner = {"X-API-Key": key}
    assert (await api.get("/sites/", headers=owner)).json()["sites"] == [
        {"id": site.id, "name": site.name, "timezone": site.timezone}]
    content_id = (await api.get("/review/", params={"site_id": site.id}, headers=owner)).json()["items"][0]["id"]
    content = (await api.get(f"/content/{content_id}", headers=owner)).json()
    assert content["status"] == "review" and content["html"] and content["images"]
    image = content["images"][0]
    png = await api.get(f"/content/{content_id}/images/{image['id']}", headers=owner)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"

    _other_site, stranger_key = await new_site(sessions, make_module_site, keywords=8)
    stranger = {"X-API-Key": stranger_key}
    assert site.id not in [s["id"] for s in (await api.get("/sites/", headers=stranger)).json()["sites"]]
    answers = [await api.get("/review/", params={"site_id": site.id}, headers=stranger),
               await api.get(f"/content/{content_id}", headers=stranger),
               await api.get(f"/content/{content_id}/images/{image['id']}", headers=stranger)]
    assert [a.status_code for a in answers] == [404, 404, 404]
    assert (await api.get(f"/content/{content_id}/images/{image['id']}")).status_code == 401
    # an image id of another content (even the owner's own) is not served under this content
    other = (await api.get("/review/", params={"site_id": site.id}, headers=owner)).json()["items"][-1]["id"]
    if other != content_id:
        assert (await api.get(f"/content/{other}/images/{image['id']}", headers=owner)).status_code == 404
