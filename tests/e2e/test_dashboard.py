"""The /automation dashboard in headless Chromium (Playwright), against the API served by uvicorn.

The consumers run as real processes on a queue prefix of their own, with the simulated AI provider and a few
milliseconds of latency so runs finish in seconds. Every test saves a screenshot named after it under the
test run's output folder (`<output_dir>/screenshots/`).

The dashboard as a daily tool (the last tests): the configure dialog's schedule forms (a weekly schedule at two
times, a cron schedule) with the next five runs shown as they are typed, in the site's timezone with its label,
refusals beside their field in plain words, saved and found again after a reload; the Credits panel after a
real run (uPlot's charts, figures equal to the API's, CSV downloads equal to the API's CSV); during a run the
header's balance and the history row following it within one poll, a credit pause (WARNING standing out, what
to do next, Resume without credits saying to add credits), a paused stage card without spinner, a run that
started and ended between two polls; and a 390x844 phone with no horizontal scroll and every control tappable.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import update

from automation.supervisor import ConsumerFleet
from shared.api_keys import create_api_key
from shared.catalogue import STAGES
from shared.models import Account, AutomationRun, RunStage
from shared.settings import Settings
from tests.e2e.conftest import CHROMIUM, api_server, fleet_with, wait_for

BASE = "/api/v1/automation"
ZONE = "America/New_York"
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.e2e
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: run scripts/setup-browser (Debian's chromium)", allow_module_level=True)

from playwright import async_api as playwright_api  # noqa: E402  (installed by scripts/setup-browser)

expect = playwright_api.expect


@pytest.fixture(scope="module")
async def dash_fleet(settings: Settings, sessions, output_dir) -> AsyncIterator[tuple[ConsumerFleet, Settings]]:
    """The consumers running as processes on the module's own queue prefix; yields them and their settings."""
    async with fleet_with(settings, output_dir, ai_latency_ms=20) as (fleet, own):
        yield fleet, own


@pytest.fixture(scope="module")
def dash_settings(dash_fleet: tuple[ConsumerFleet, Settings]) -> Settings:
    return dash_fleet[1]


@pytest.fixture(scope="module")
async def server(dash_settings: Settings, output_dir) -> AsyncIterator[str]:
    """`automation api` in a background process on a free port; yields its base URL."""
    async with api_server(dash_settings, output_dir) as base:
        yield base


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
    """A site (in America/New_York, scheduled daily) whose run has completed: content waiting in review, with
    generated images, credits used."""
    site, key = await new_site(sessions, make_module_site, keywords=8, timezone=ZONE, is_enabled=True)
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


# ---------- the dashboard as a daily tool: schedules, credits, live figures that stay true, a phone ----------

@contextlib.contextmanager
def frozen(fleet: ConsumerFleet, name: str) -> Iterator[None]:
    """One consumer process stopped (SIGSTOP) while the block runs: a run waits at its stage, as a slow one would."""
    process = fleet.processes[name][0]
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


@pytest.fixture
async def open_page(browser, request, shots):
    """`await open_page(viewport)`: a fresh context (empty sessionStorage); screenshots saved afterwards; no
    JavaScript error may happen on the page."""
    contexts, errors = [], []

    async def opener(viewport: dict[str, int] = DESKTOP):
        context = await browser.new_context(viewport=viewport, accept_downloads=True)
        tab = await context.new_page()
        tab.on("pageerror", lambda error: errors.append(str(error)))
        contexts.append((context, tab))
        return tab

    yield opener
    for index, (context, tab) in enumerate(contexts):
        await tab.screenshot(path=shots / f"{request.node.name}-{index}.png", full_page=True)
        await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


async def downloaded(download) -> str:
    """A download's bytes as text (line ends kept, as the API sent them)."""
    data = await asyncio.to_thread(Path(await download.path()).read_bytes)
    return data.decode("utf-8")


def shown(at: str, zone: str = ZONE) -> str:
    """A time as the page shows it: "Tue 2025-03-04 09:00 EST"."""
    local = datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(ZoneInfo(zone))
    return local.strftime("%a %Y-%m-%d %H:%M %Z")


async def test_schedule_forms_preview_the_next_five_runs_and_save(open_page, server, api, reviewed_site, shots,
                                                                  request):
    site, key = reviewed_site
    headers = {"X-API-Key": key}
    page = await open_page()
    await sign_in(page, server, key)
    await expect(page.locator("#site-zone")).to_have_text(ZONE)
    await page.click("#configure")
    await expect(page.locator("#cfg-next-runs li")).to_have_count(5)  # the saved daily schedule, previewed

    # weekly, Tuesday and Thursday, at two times
    await page.select_option("#cfg-frequency", "weekly")
    await expect(page.locator("#cfg-weekdays-field")).to_be_visible()
    for day in ("mon", "tue", "thu"):
        await page.locator(f'#cfg-weekdays input[value="{day}"]').set_checked(day != "mon")
    await page.locator("#cfg-times input").first.fill("09:00")
    await page.click("#cfg-time-add")
    await page.locator("#cfg-times input").nth(1).fill("25:00")  # refused, in plain words beside the times
    times_error = page.locator('[data-error-for="scheduled_times"]')
    await expect(times_error).to_contain_text("use a 24-hour time as HH:MM")
    await expect(page.locator("#cfg-times input").nth(1)).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#cfg-next-runs li")).to_have_count(0)
    await page.locator("#cfg-times input").nth(1).fill("17:30")
    await expect(times_error).to_have_text("")
    body = {"frequency": "weekly", "scheduled_times": ["09:00", "17:30"], "weekdays": ["tue", "thu"], "timezone": ZONE}
    await expect(page.locator("#cfg-schedule-words")).to_contain_text("Tue, Thu at 09:00 and 17:30 (America/New_York)")
    preview = (await api.post("/schedule_preview/", params={"site_id": site.id}, json=body, headers=headers)).json()
    await expect(page.locator("#cfg-next-runs li")).to_have_text([shown(at) for at in preview["next_runs"]])
    await page.click("#config-save")
    await expect(page.locator("#config-modal")).to_be_hidden()
    saved = (await api.get("/config/", params={"site_id": site.id}, headers=headers)).json()
    assert (saved["frequency"], saved["scheduled_times"], saved["weekdays"]) == ("weekly", ["09:00", "17:30"],
                                                                                 ["tue", "thu"])

    await page.reload()
    await expect(page.locator("#configure")).to_be_enabled()
    await page.click("#configure")
    await expect(page.locator("#cfg-frequency")).to_have_value("weekly")
    await expect(page.locator("#cfg-times input")).to_have_count(2)
    assert await page.locator("#cfg-times input").evaluate_all("xs => xs.map(x => x.value)") == ["09:00", "17:30"]
    weekdays = await page.locator("#cfg-weekdays input:checked").evaluate_all("xs => xs.map(x => x.value)")
    assert weekdays == ["tue", "thu"]
    await expect(page.locator("#cfg-next-runs li")).to_have_text([shown(at) for at in saved["next_runs"]])

    # cron: a refused expression is explained beside the field, then weekdays at 06:30
    await page.select_option("#cfg-frequency", "cron")
    await expect(page.locator("#cfg-cron-field")).to_be_visible()
    await expect(page.locator("#cfg-times-field")).to_be_hidden()
    await page.fill("#cfg-cron", "*/5 * * * *")
    cron_error = page.locator('[data-error-for="cron"]')
    await expect(cron_error).to_contain_text("less than 15 minutes apart")
    await page.fill("#cfg-cron", "30 6 * * 1-5")
    await expect(cron_error).to_have_text("")
    await expect(page.locator("#cfg-schedule-words")).to_contain_text("cron '30 6 * * 1-5' (America/New_York)")
    preview = (await api.post("/schedule_preview/", params={"site_id": site.id}, headers=headers,
                              json={"frequency": "cron", "cron": "30 6 * * 1-5", "timezone": ZONE})).json()
    await expect(page.locator("#cfg-next-runs li")).to_have_text([shown(at) for at in preview["next_runs"]])
    assert all(" 06:30 E" in shown(at) for at in preview["next_runs"])
    await page.locator("#config-modal .modal").screenshot(path=shots / f"{request.node.name}-cron.png")
    await page.click("#config-save")
    await expect(page.locator("#config-modal")).to_be_hidden()
    saved = (await api.get("/config/", params={"site_id": site.id}, headers=headers)).json()
    assert (saved["frequency"], saved["cron"]) == ("cron", "30 6 * * 1-5")
    assert saved["scheduled_times"] == ["09:00", "17:30"]  # kept for when the site leaves cron

    await page.reload()
    await expect(page.locator("#configure")).to_be_enabled()
    await page.click("#configure")
    await expect(page.locator("#cfg-frequency")).to_have_value("cron")
    await expect(page.locator("#cfg-cron")).to_have_value("30 6 * * 1-5")
    await expect(page.locator("#cfg-next-runs li")).to_have_count(5)
    await page.click("#config-save")  # saving a cron site unchanged keeps it as it is
    await expect(page.locator("#config-modal")).to_be_hidden()
    again = (await api.get("/config/", params={"site_id": site.id}, headers=headers)).json()
    assert {k: again[k] for k in ("frequency", "cron", "scheduled_times", "weekdays")} == \
        {k: saved[k] for k in ("frequency", "cron", "scheduled_times", "weekdays")}


async def test_the_credits_panel_charts_a_real_run_and_its_csv_matches_the_api(open_page, server, api, reviewed_site):
    site, key = reviewed_site
    headers = {"X-API-Key": key}
    run_id = (await api.get("/history/", params={"site_id": site.id}, headers=headers)).json()["runs"][0]["run_id"]
    page = await open_page()
    await sign_in(page, server, key)
    by_day = (await api.get("/credits/usage/", params={"group": "day", "days": 30}, headers=headers)).json()
    by_stage = (await api.get("/credits/usage/", params={"group": "stage", "days": 30}, headers=headers)).json()
    by_run = (await api.get("/credits/usage/", params={"group": "run", "days": 30}, headers=headers)).json()
    balance = (await api.get("/credits/balance/", params={"days": 30}, headers=headers)).json()
    forecast = (await api.get("/credits/forecast/", headers=headers)).json()
    assert by_day["total"] > 0 and [r["key"] for r in by_run["rows"]] == [run_id]

    panel = page.locator("#credits-panel")
    await panel.scroll_into_view_if_needed()  # read when it comes into view
    for chart in ("usage-day", "usage-stage", "balance"):  # drawn by uPlot, one point a day or stage
        await expect(panel.locator(f"#chart-{chart} canvas")).to_have_count(1)
    await expect(panel.locator("#chart-usage-day")).to_have_attribute("data-points", str(len(balance["points"])))
    await expect(panel.locator("#chart-balance")).to_have_attribute("data-points", "30")
    await expect(panel.locator("#credits-summary")).to_contain_text(f"{by_day['total']:,} credits used")
    await expect(panel.locator("#table-usage-day tr")).to_have_text(
        [f"{r['key']}{r['credits']:,}{r['charges']:,}" for r in by_day["rows"]])
    assert await panel.locator("#table-usage-stage tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.stage, r.cells[1].textContent])") == \
        [[r["key"], f"{r['credits']:,}"] for r in by_stage["rows"]]
    await expect(panel.locator("#table-balance tr").last).to_contain_text(f"{balance['points'][-1]['balance']:,}")
    await expect(panel.locator("#table-usage-run tr")).to_have_text([f"{run_id}{by_run['total']:,}"
                                                                      f"{by_run['rows'][0]['charges']:,}"])
    await expect(panel.locator("#fc-balance")).to_have_text(f"{forecast['balance']:,}")
    for figure, field in (("#fc-spend-7", "spend_7_days"), ("#fc-spend-30", "spend_30_days")):
        # the forecast integrates keyword arrivals up to each slot from "now": a second later, a credit may differ
        on_page = int((await panel.locator(figure).text_content() or "").replace(",", ""))
        assert abs(on_page - forecast[field]) <= max(2, forecast[field] // 100), (figure, on_page, forecast[field])
    await expect(panel.locator("#forecast-slots tr")).to_have_count(min(40, len(forecast["slots"])))
    first = forecast["slots"][0]
    await expect(panel.locator("#forecast-slots tr").first).to_contain_text(shown(first["at"]))
    await expect(panel.locator("#forecast-slots tr").first).to_have_attribute("data-affordable",
                                                                               str(first["affordable"]).lower())

    for name, path, params in [("usage-day", "/credits/usage/", {"group": "day", "days": 30}),
                               ("balance", "/credits/balance/", {"days": 30}), ("forecast", "/credits/forecast/", {})]:
        async with page.expect_download() as waiting:
            await panel.locator(f'button.csv[data-csv="{name}"]').click()
        download = await waiting.value
        saved = await downloaded(download)
        expected = (await api.get(path, params={**params, "format": "csv"}, headers=headers)).text
        if name == "forecast":  # the balance after each slot moves with time only through "now": same rows
            assert next(csv.reader(io.StringIO(saved))) == next(csv.reader(io.StringIO(expected)))
            assert len(saved.splitlines()) == len(expected.splitlines())
        else:
            assert saved == expected
        assert download.suggested_filename.endswith(".csv")
    await expect(panel.locator("#csv-message")).to_contain_text("downloaded")
    # at 1366x900 too, nothing wider than the window and every control in reach
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert await page.evaluate(NOT_TAPPABLE, 0) == []


async def _set_balance(sessions, account_id: int, credits: int) -> None:
    async with sessions() as session, session.begin():
        await session.execute(update(Account).where(Account.id == account_id).values(credits_balance=credits))


async def test_a_live_run_keeps_balance_history_and_cards_true_through_a_credit_pause(
        open_page, server, dash_fleet, api, sessions, make_module_site, shots, request):
    fleet, _settings = dash_fleet
    site, key = await new_site(sessions, make_module_site, keywords=16)
    headers = {"X-API-Key": key}
    page = await open_page()
    await sign_in(page, server, key)
    await expect(page.locator("#credits")).to_have_text("100,000")
    await page.click("#run-now")
    await expect(page.locator("#estimate-start")).to_be_enabled()
    with frozen(fleet, "stage6"):  # the run waits at stage 6 (images) with stages 1-5 charged
        await page.click("#estimate-start")
        await expect(page.locator("#run-status")).to_have_text("running", timeout=15_000)
        # during the run: the balance in the header and the history row follow it (within one 3 s poll)
        await page.wait_for_function("document.getElementById('credits').textContent !== '100,000'"
                                     " && document.getElementById('run-status').textContent === 'running'",
                                     timeout=30_000)
        row = page.locator("#history-body tr").first
        await expect(row.locator(".badge")).to_have_text("running")
        await expect(page.locator('.stage-card[data-stage="5"]')).to_have_attribute("data-status", "completed",
                                                                                   timeout=15_000)
        run = (await api.get("/current_run/", params={"site_id": site.id}, headers=headers)).json()["run"]
        balance = (await api.get("/credits/", headers=headers)).json()["credits_balance"]
        await expect(page.locator("#credits")).to_have_text(f"{balance:,}")
        await expect(row.locator(".credits-used")).to_have_text(f"{run['total_credits_used']:,}")
        await expect(row.locator(".stage-of")).to_have_text("6/7")
        await expect(page.locator("#run-credits")).to_have_text(f"{run['total_credits_used']:,}")
        await expect(page.locator("#run-progress-text")).to_contain_text("elapsed")
        await _set_balance(sessions, site.account_id, 0)  # credits run out: stage 6's first charge fails

    await expect(page.locator("#run-status")).to_have_text("paused", timeout=30_000)
    run = (await api.get("/current_run/", params={"site_id": site.id}, headers=headers)).json()["run"]
    assert run["status"] == "paused" and "credits" in run["pause_reason"]
    await expect(page.locator(".stage-card.active")).to_have_count(0)  # paused before stage 6: nothing spins
    await expect(page.locator("#run-notice")).to_contain_text("Add credits to the account")
    await expect(page.locator("#credits")).to_have_text("0")
    await expect(row.locator(".badge")).to_have_text("paused", timeout=6_000)
    await expect(row.locator(".credits-used")).to_have_text(f"{run['total_credits_used']:,}")
    await expect(row.locator(".stage-of")).to_have_text(f"{run['current_stage']}/7")
    warning = page.locator("#log .log-line.warning")  # the pause stands out in the log
    await expect(warning.first).to_contain_text("insufficient credits")
    colours = await warning.first.evaluate("e => getComputedStyle(e).backgroundColor")
    plain = await page.locator("#log .log-line.info").first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colours != plain
    await page.screenshot(path=shots / f"{request.node.name}-paused.png", full_page=True)

    await page.click("#resume")  # no credits: not "running", but what to do
    await expect(page.locator("#notice")).to_contain_text("Add credits to the account")
    await expect(page.locator("#run-status")).to_have_text("paused")

    await _set_balance(sessions, site.account_id, 100_000)
    await page.click("#resume")
    await expect(page.locator("#run-status")).to_have_text("completed", timeout=60_000)
    await expect(page.locator("#run-notice")).to_contain_text("Run completed")
    final = (await api.get(f"/runs/{run['run_id']}", headers=headers)).json()
    balance = (await api.get("/credits/", headers=headers)).json()["credits_balance"]
    await expect(row.locator(".badge")).to_have_text("completed")
    await expect(row.locator(".credits-used")).to_have_text(f"{final['total_credits_used']:,}")
    await expect(page.locator("#credits")).to_have_text(f"{balance:,}")
    await expect(page.locator("#log .log-line", has_text="Run completed")).to_have_count(1)
    await page.select_option("#log-level", "problems")
    assert set(await page.locator("#log .log-line").evaluate_all("xs => xs.map(x => x.dataset.level)")) <= {"WARNING",
                                                                                                            "ERROR"}
    async with page.expect_download() as waiting:
        await page.click("#log-download")
    text = await downloaded(await waiting.value)
    assert "insufficient credits" in text and "Run completed" in text


async def _add_run(sessions, site_id: int, run_id: str, ago: timedelta, status: str = "completed", stage: int = 7
                   ) -> None:
    """A run written as the pipeline leaves it: completed, or paused for credits in the middle of `stage`."""
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        run = AutomationRun(run_id=run_id, site_id=site_id, status=status, trigger="scheduled", current_stage=stage,
                            started_at=now - ago - timedelta(seconds=2), total_credits_used=40, estimated_credits=90,
                            completed_at=now - ago if status == "completed" else None,
                            pause_reason="insufficient credits" if status == "paused" else None)
        session.add(run)
        await session.flush()
        for number in range(1, stage + 1):
            done = number < stage or status == "completed"
            session.add(RunStage(run_id=run.id, stage=number, status="completed" if done else "planned",
                                 batches_total=5, batches_done=5 if done else 2, items_in=10,
                                 items_out=10 if done else 4, credits=10 if done else 4))


async def test_a_run_between_two_polls_is_shown_and_a_paused_stage_says_paused(open_page, server, sessions,
                                                                              make_module_site, request, shots):
    site, key = await new_site(sessions, make_module_site, keywords=8, credits=0)
    suffix = str(int(time.time() * 1000))
    await _add_run(sessions, site.id, f"older-{suffix}", timedelta(minutes=5))
    page = await open_page()
    await sign_in(page, server, key)
    await expect(page.locator("#run-summary code")).to_have_text(f"older-{suffix}")
    await asyncio.sleep(0.5)
    await _add_run(sessions, site.id, f"newer-{suffix}", timedelta(seconds=0))  # started and ended between two polls
    await expect(page.locator("#run-summary code")).to_have_text(f"newer-{suffix}", timeout=7_000)
    await expect(page.locator("#history-body tr")).to_have_count(2)
    await expect(page.locator("#history-body tr").first).to_have_attribute("data-run-id", f"newer-{suffix}")

    # a run paused for credits in the middle of stage 3 (the API calls that stage "active")
    await _add_run(sessions, site.id, f"paused-{suffix}", timedelta(seconds=0), status="paused", stage=3)
    await expect(page.locator("#run-status")).to_have_text("paused", timeout=7_000)
    card = page.locator('.stage-card[data-stage="3"]')
    await expect(card).to_have_attribute("data-status", "paused")
    await expect(card.locator(".stage-label")).to_have_text("paused")
    await expect(page.locator(".stage-card.active")).to_have_count(0)
    assert await card.locator(".stage-icon").evaluate("e => getComputedStyle(e).animationName") == "none"
    await expect(page.locator("#run-notice")).to_contain_text("Run paused at stage 3: insufficient credits")
    await expect(page.locator("#run-notice .next-action")).to_contain_text("Add credits to the account (balance 0)")
    await expect(page.locator("#history-body tr").first.locator(".badge")).to_have_text("paused")
    await page.click("#resume")  # nothing to pay with: no resume, and what to do instead
    await expect(page.locator("#notice")).to_contain_text("Add credits to the account, then press Resume")
    await expect(page.locator("#run-status")).to_have_text("paused")
    await page.screenshot(path=shots / f"{request.node.name}-paused.png")


NOT_TAPPABLE = """(minHeight) => {
  const width = document.documentElement.clientWidth;
  const bad = [];
  const controls = [...document.querySelectorAll('#app button, #app select, #app input, #app summary, #app a[href]')]
    .filter(e => e.offsetParent !== null && getComputedStyle(e).visibility !== 'hidden');
  for (const e of controls) {
    e.scrollIntoView({block: 'center', inline: 'nearest'});
    const r = e.getBoundingClientRect();
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    const reachable = hit && (hit === e || e.contains(hit) || (e.labels && [...e.labels].some(l => l.contains(hit)))
      || (hit.tagName === 'LABEL' && hit.control === e) || (e.type === 'checkbox' && e.parentElement.contains(hit)));
    if (r.left < -1 || r.right > width + 1 || !reachable || (r.height < minHeight && e.type !== 'checkbox'))
      bad.push(`${e.tagName}#${e.id}.${e.className} ${Math.round(r.left)}-${Math.round(r.right)}`
        + ` h${Math.round(r.height)} hit=${hit && hit.tagName}`);
  }
  window.scrollTo(0, 0);
  return bad;
}"""


async def test_a_phone_sees_the_whole_page_without_horizontal_scroll(open_page, server, reviewed_site):
    _site, key = reviewed_site
    page = await open_page(PHONE)
    await sign_in(page, server, key)
    await expect(page.locator("#run-status")).to_have_text("completed")
    await expect(page.locator("#history-body tr")).to_have_count(1)
    await page.locator("#credits-panel").scroll_into_view_if_needed()
    await expect(page.locator("#credits-panel #chart-balance canvas")).to_have_count(1)
    await expect(page.locator(".review-item").first).to_be_visible()
    overflow = "document.documentElement.scrollWidth <= window.innerWidth"
    assert await page.evaluate(overflow), await page.evaluate("document.documentElement.scrollWidth")
    assert await page.evaluate(NOT_TAPPABLE, 24) == []  # in the screen, on top, at least 24 px high
    columns = await page.locator("#stages").evaluate("e => getComputedStyle(e).gridTemplateColumns.split(' ').length")
    assert columns <= 2

    await page.click("#configure")  # the dialog fits too, its controls in reach
    await expect(page.locator("#cfg-next-runs li")).to_have_count(5)
    assert await page.evaluate(overflow)
    box = await page.locator("#config-modal .modal").bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    await page.click("#config-close")

    await page.locator("#history-body tr").first.click()
    await expect(page.locator('#run-stages tr[data-status="completed"]')).to_have_count(7)
    await expect(page.locator("#run-stages .stage-duration").first).not_to_have_text("…")
    assert await page.evaluate(overflow)
    await page.click("#run-close")
    await page.locator(".review-item").first.click()
    await expect(page.locator("#article-body .article-html")).to_be_visible()
    assert await page.evaluate(overflow)
    await page.click("#article-close")
