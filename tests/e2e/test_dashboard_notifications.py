"""The dashboard's Notifications panel in headless Chromium, against `automation api` served by uvicorn and a
real local webhook receiver: add a webhook (its secret shown once), send a test that the receiver verifies,
read the delivery log, rotate the secret, delete the channel."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from shared.api_keys import create_api_key
from shared.settings import Settings
from tests.e2e.conftest import CHROMIUM, api_server
from tests.notify_receivers import Receiver

pytestmark = pytest.mark.e2e
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: run scripts/setup-browser (Debian's chromium)", allow_module_level=True)

from playwright import async_api as playwright_api  # noqa: E402  (installed by scripts/setup-browser)

expect = playwright_api.expect


@pytest.fixture(scope="module")
async def server(settings: Settings, sessions, output_dir) -> AsyncIterator[str]:
    own = settings.model_copy(update={"secret_key": SecretStr(uuid.uuid4().hex * 2),
                                      "notify_allow_private_targets": True})
    async with api_server(own, output_dir) as base:
        yield base


@pytest.fixture
async def page(browser, shots):
    context = await browser.new_context(viewport={"width": 1440, "height": 1000})
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    await tab.screenshot(path=shots / "notifications-panel.png", full_page=True)
    await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


async def test_the_notifications_panel_adds_a_webhook_tests_it_rotates_its_secret_and_deletes_it(
        page, server, sessions, make_module_site) -> None:
    site = await make_module_site(keywords=8, synthetic=True)
    async with sessions() as session, session.begin():
        key = await create_api_key(session, site.account_id)
    receiver = Receiver()
    await receiver.start()
    try:
        await page.goto(f"{server}/automation")
        await page.fill("#key-input", key)
        await page.click("#key-form button[type=submit]")
        await expect(page.locator("#app")).to_be_visible()
        await expect(page.locator("#site-select")).to_have_value(str(site.id))  # the site's channels by default
        await page.click("#notifications")
        await expect(page.locator("#notifications-modal")).to_be_visible()
        await expect(page.locator("#nc-empty")).to_be_visible()

        await page.select_option("#nc-kind", "email")  # the form asks for what the kind needs
        await expect(page.locator("#nc-emails-field")).to_be_visible()
        await expect(page.locator("#nc-url-field")).to_be_hidden()
        await page.select_option("#nc-kind", "webhook")
        await page.fill("#nc-name", "ops hook")
        await page.fill("#nc-url", receiver.url("/hook/dashboard"))
        await page.click("#nc-add")
        await expect(page.locator("#nc-secret")).to_contain_text("whsec_")
        secret = (await page.locator("#nc-secret code").text_content() or "").strip()
        receiver.secrets = [secret]
        row = page.locator("#nc-channels tr")
        await expect(row).to_have_count(1)
        await expect(row).to_contain_text("ops hook")
        await expect(row).to_contain_text(site.name)

        await row.get_by_role("button", name="Send test").click()
        await expect(page.locator("#notice")).to_contain_text("Test delivered")
        await expect(page.locator("#nc-deliveries-body tr")).to_have_count(1)
        await expect(page.locator("#nc-deliveries-body tr")).to_contain_text("delivered")
        await expect(page.locator("#nc-deliveries-body tr")).to_contain_text("notification.test")
        assert len(receiver.accepted) == 1 and receiver.refused == []

        page.once("dialog", lambda dialog: dialog.accept("1"))
        await row.get_by_role("button", name="Rotate secret").click()
        await expect(page.locator("#nc-secret")).to_contain_text("the old one signs too until")
        rotated = (await page.locator("#nc-secret code").text_content() or "").strip()
        assert re.fullmatch(r"whsec_[\w-]+", rotated) and rotated != secret
        await page.click("#nc-close")  # the secret is not kept on the page
        await page.click("#notifications")
        await expect(page.locator("#nc-secret")).to_be_hidden()
        assert rotated not in (await page.content())

        page.once("dialog", lambda dialog: dialog.accept())
        await page.locator("#nc-channels tr").get_by_role("button", name="Delete").click()
        await expect(page.locator("#nc-channels tr")).to_have_count(0)
    finally:
        await receiver.stop()
