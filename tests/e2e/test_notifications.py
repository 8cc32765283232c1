"""Notifications with every consumer a process (the notify consumer among them) and real local receivers: an
HTTP server that verifies every webhook signature with the documented recipe, aiosmtpd for email, and a
receiver that checks Slack's incoming-webhook format.

Asserted: a completed run reaches a webhook, two mailboxes and Slack with its figures; a run paused for
credits says so; a receiver down for a while, then up, gets every notification (once per event_id after
dedupe, none lost); kill -9 of the notify consumer mid-delivery loses none; and a run's totals are the same
with the notify consumer stopped (its notifications follow once it is back).
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select, update

from producers.api.app import create_app
from shared.api_keys import create_api_key
from shared.models import Account, AutomationRun, Notification, NotificationDelivery, Site, StageBatch
from shared.notifications import signature_header
from shared.settings import Settings
from tests.e2e.conftest import fleet_with, wait_for
from tests.e2e.test_resilience import deps_for, start_and_wait_for_id, wait_status
from tests.notify_receivers import Mailbox, Receiver, smtp_server, verify
from tests.support import site_outcome

pytestmark = pytest.mark.e2e
BASE = "/api/v1/automation"
PUBLIC_URL = "http://dashboard.example.test"
# retries at about 0.5, 1, 2, 4, 8, 8 ... s: a receiver down for several seconds is carried by the retries
NOTIFYING = {"retry_base_seconds": 0.5, "max_attempts": 6, "stall_seconds": 30, "notify_max_attempts": 10,
             "notify_allow_private_targets": True, "notify_timeout_seconds": 5.0, "smtp_tls": "none",
             "public_url": PUBLIC_URL}
OUTAGE_SECONDS = 6.0


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Mailbox, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture(scope="module")
async def notifying_fleet(settings: Settings, output_dir: Path, smtp):
    _, smtp_port = smtp
    async with fleet_with(settings, output_dir, secret_key=SecretStr(uuid.uuid4().hex * 2), smtp_host="127.0.0.1",
                          smtp_port=smtp_port, **NOTIFYING) as (processes, own):
        yield processes, own


@pytest.fixture(scope="module")
async def client(notifying_fleet) -> AsyncIterator[httpx.AsyncClient]:
    _, own = notifying_fleet
    app = create_app(own)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                     timeout=30) as http:
            yield http


async def new_site(sessions, make_module_site, **config) -> tuple[Site, dict[str, str]]:
    site = await make_module_site(keywords=16, synthetic=True, **config)
    async with sessions() as session, session.begin():
        key = await create_api_key(session, site.account_id)
    return site, {"X-API-Key": key}


async def add_channel(client, headers, receiver: Receiver | None, **body) -> dict:
    answer = await client.post(f"{BASE}/notification_channels/", headers=headers,
                               json={"name": f"{body['kind']}-{uuid.uuid4().hex[:6]}", **body})
    assert answer.status_code == 201, answer.text
    channel = answer.json()
    if channel["secret"] and receiver is not None:
        receiver.secrets.append(channel["secret"])
    return channel


async def hooks(client, headers, receiver: Receiver, site_id: int, count: int, **body) -> list[tuple[dict, str]]:
    """`count` webhook channels of the site on `receiver`, each on its own path: [(channel, path)]."""
    made = []
    for _ in range(count):
        path = f"/hook/{uuid.uuid4().hex[:8]}"
        made.append((await add_channel(client, headers, receiver, kind="webhook", site_id=site_id,
                                       url=receiver.url(path), **body), path))
    return made


async def deliveries(sessions, channel_ids: list[int]) -> list[tuple[NotificationDelivery, str]]:
    async with sessions() as session:
        return list((await session.execute(
            select(NotificationDelivery, Notification.event_id).join(Notification)
            .where(NotificationDelivery.channel_id.in_(channel_ids)).order_by(NotificationDelivery.id))).all())


async def settled(sessions, channel_ids: list[int], each: int, timeout: float = 90) -> list[NotificationDelivery]:
    """Waits until every channel has `each` deliveries, all delivered or failed."""
    async def done() -> list[NotificationDelivery] | None:
        rows = [d for d, _ in await deliveries(sessions, channel_ids)]
        per = Counter(d.channel_id for d in rows)
        finished = all(d.status in ("delivered", "failed") for d in rows)
        return rows if finished and all(per[c] == each for c in channel_ids) else None

    return await wait_for(done, timeout=timeout, every=0.3)  # type: ignore[return-value]


async def completed_run(own: Settings, sessions, site_id: int) -> AutomationRun:
    run_id = await start_and_wait_for_id(own, sessions, site_id)
    run = await wait_status(sessions, run_id, "completed", "failed", "paused", timeout=120)
    assert run.status == "completed", run.error_message or run.pause_reason
    return run


def live(processes, name: str) -> int:
    return next(i for i, p in enumerate(processes.processes[name]) if p.poll() is None)


async def test_a_completed_run_reaches_a_signed_webhook_two_mailboxes_and_slack(
        notifying_fleet, client, sessions, make_module_site, receiver, smtp) -> None:
    _, own = notifying_fleet
    mailbox, _ = smtp
    site, headers = await new_site(sessions, make_module_site)
    [(hook, path)] = await hooks(client, headers, receiver, site.id, 1)
    mail = await add_channel(client, headers, None, kind="email", site_id=site.id,
                             emails=["ops@example.com", "editor@example.com"])
    slack_path = f"/slack/T0/B0/{uuid.uuid4().hex}"
    slack = await add_channel(client, headers, None, kind="slack", site_id=site.id, url=receiver.url(slack_path))
    run = await completed_run(own, sessions, site.id)
    rows = await settled(sessions, [hook["id"], mail["id"], slack["id"]], each=2)
    assert [d.status for d in rows] == ["delivered"] * 6, [d.error for d in rows]

    # the webhook: verified, one run.completed and one content.ready_for_review, with the run's figures
    bodies = {b["type"]: b for b in receiver.bodies(path)}
    assert set(bodies) == {"run.completed", "content.ready_for_review"}
    assert not [r for r, _ in receiver.refused if r.path == path]
    done, ready = bodies["run.completed"], bodies["content.ready_for_review"]
    stage_4, stage_7 = run.stage_result(4) or {}, run.stage_result(7) or {}
    assert done["run"]["run_id"] == run.run_id and done["run"]["status"] == "completed"
    assert done["run"]["credits_used"] == run.total_credits_used > 0
    assert done["counts"]["content"] == stage_4["items_out"] > 0
    assert ready["counts"]["in_review"] == stage_7["items_out"] > 0
    assert done["site"] == {"id": site.id, "name": site.name} and done["account_id"] == site.account_id
    assert done["url"] == f"{PUBLIC_URL}/automation?site_id={site.id}" and done["version"] == 1
    assert isinstance(done["credits"]["balance"], int)

    # the recipe refuses a tampered body and an old timestamp
    request = next(r for r in receiver.accepted if r.path == path)
    header = request.headers["automation-signature"]
    assert verify(header, request.body, receiver.secrets)
    assert not verify(header, request.body.replace(b'"status":"completed"', b'"status":"failed"'), receiver.secrets)
    assert not verify(header, request.body + b" ", receiver.secrets)
    assert not verify(header, request.body, receiver.secrets, now=time.time() + 600)  # replayed 10 minutes later
    stale = signature_header([hook["secret"]], request.body, timestamp=int(time.time()) - 600)
    assert not verify(stale, request.body, receiver.secrets)
    assert not verify(header, request.body, ["whsec_someone-else"])

    # email: one message per notification to both addresses, plain text with an HTML alternative
    event_ids = {done["event_id"], ready["event_id"]}
    ours = [m for m in mailbox.messages if m["Automation-Event-Id"] in event_ids]
    assert len(ours) == 2
    for message in ours:
        assert set(message["To"].addresses[i].addr_spec for i in range(2)) == {"ops@example.com", "editor@example.com"}
        assert message.get_content_type() == "multipart/alternative"
        text = message.get_body(preferencelist=("plain",)).get_content()
        html = message.get_body(preferencelist=("html",)).get_content()
        assert run.run_id in text and site.name in message["Subject"] and "<table>" in html
        assert f"{PUBLIC_URL}/automation?site_id={site.id}" in text
    subjects = sorted(m["Subject"] for m in ours)
    assert subjects == sorted([f"Run completed on {site.name}",
                               f"{stage_7['items_out']} articles ready for review on {site.name}"])

    # Slack: blocks with the figures and a button to the dashboard
    messages = receiver.bodies(slack_path)
    assert len(messages) == 2
    for message in messages:
        kinds = [b["type"] for b in message["blocks"]]
        assert kinds[0] == "header" and "actions" in kinds
        button = next(b for b in message["blocks"] if b["type"] == "actions")["elements"][0]
        assert button["url"] == f"{PUBLIC_URL}/automation?site_id={site.id}"
        fields = " ".join(f["text"] for b in message["blocks"] if b["type"] == "section" for f in b.get("fields", []))
        assert run.run_id in fields and "Credits" in fields

    # the delivery log, through the API
    log = (await client.get(f"{BASE}/notification_channels/{hook['id']}/deliveries", headers=headers)).json()
    assert log["total"] == 2 and {d["type"] for d in log["deliveries"]} == set(bodies)
    assert all(d["status"] == "delivered" and d["response_code"] == 200 and d["latency_ms"] >= 0
               for d in log["deliveries"])


async def test_a_run_paused_for_credits_is_announced_with_the_reason(
        notifying_fleet, client, sessions, make_module_site, receiver, smtp) -> None:
    _, own = notifying_fleet
    mailbox, _ = smtp
    site, headers = await new_site(sessions, make_module_site)
    [(_, path)] = await hooks(client, headers, receiver, site.id, 1, events=["run.paused"])
    await add_channel(client, headers, None, kind="email", site_id=site.id, emails=["ops@example.com"],
                      events=["run.paused"])
    # The account's row is held while the first batch runs; the balance is then emptied, so the batch's
    # charge finds nothing to take and the run pauses for credits (a real out-of-credits pause).
    async with sessions() as holder:
        async with holder.begin():
            await holder.execute(select(Account.id).where(Account.id == site.account_id).with_for_update())
            run_id = await start_and_wait_for_id(own, sessions, site.id)

            async def claimed() -> bool:
                async with sessions() as session:
                    return bool(await session.scalar(
                        select(func.count()).select_from(StageBatch).join(AutomationRun)
                        .where(AutomationRun.run_id == run_id, StageBatch.status == "claimed")))

            await wait_for(claimed, timeout=60, every=0.05)
            await holder.execute(update(Account).where(Account.id == site.account_id).values(credits_balance=0))
    run = await wait_status(sessions, run_id, "paused", "completed", "failed", timeout=60)
    assert run.status == "paused" and run.pause_reason == "insufficient credits"

    async def told() -> list[dict]:
        return receiver.bodies(path)

    [body] = await wait_for(told, timeout=60)  # type: ignore[misc]
    assert body["type"] == "run.paused" and body["reason_kind"] == "credits"
    assert body["reason"] == "insufficient credits" and body["run"]["run_id"] == run_id
    assert body["credits"]["balance"] == 0 and "Add credits" in body["summary"]

    async def mailed() -> list:
        return [m for m in mailbox.messages if m["Automation-Event-Id"] == body["event_id"]]

    [message] = await wait_for(mailed, timeout=30)  # type: ignore[misc]
    assert message["Subject"] == f"Run paused on {site.name}: insufficient credits"
    assert "insufficient credits" in message.get_body(preferencelist=("plain",)).get_content()


async def test_a_receiver_down_for_a_while_then_up_gets_every_notification_once_per_event_id(
        notifying_fleet, client, sessions, make_module_site) -> None:
    _, own = notifying_fleet
    receiver = Receiver()
    site, headers = await new_site(sessions, make_module_site)
    made = await hooks(client, headers, receiver, site.id, 3)
    ids = [c["id"] for c, _ in made]
    # down: nothing listens on its port
    await completed_run(own, sessions, site.id)

    async def retried() -> bool:
        return any(d.attempts >= 2 for d, _ in await deliveries(sessions, ids))

    await wait_for(retried, timeout=60, every=0.2)
    down_since = time.monotonic()
    await asyncio.sleep(OUTAGE_SECONDS)
    assert not [d for d, _ in await deliveries(sessions, ids) if d.status != "retrying"]  # all waiting, none lost
    await receiver.start()
    try:
        rows = await settled(sessions, ids, each=2, timeout=90)
    finally:
        await receiver.stop()
    assert time.monotonic() - down_since >= OUTAGE_SECONDS
    assert [d.status for d in rows] == ["delivered"] * 6, [d.error for d in rows]
    assert all(d.attempts >= 2 for d in rows)
    expected = {(path, event_id) for (channel, path) in made for d, event_id in await deliveries(
        sessions, [channel["id"]])}
    received = Counter((r.path, r.json()["event_id"]) for r in receiver.accepted)
    assert set(received) == expected  # after dedupe on event_id: each exactly once, none lost
    assert receiver.refused == []


async def test_kill_9_of_notify_mid_delivery_loses_no_notification(
        notifying_fleet, client, sessions, make_module_site) -> None:
    processes, own = notifying_fleet
    receiver = Receiver(delay=1.5)  # answers slowly: deliveries are in flight when the consumer dies
    await receiver.start()
    try:
        site, headers = await new_site(sessions, make_module_site)
        made = await hooks(client, headers, receiver, site.id, 4)
        ids = [c["id"] for c, _ in made]
        await completed_run(own, sessions, site.id)

        async def in_flight() -> bool:
            return len(receiver.requests) >= 2

        await wait_for(in_flight, timeout=60, every=0.05)
        processes.kill("notify", live(processes, "notify"))  # SIGKILL while requests wait for their answers
        delivered_at_kill = sum(d.status == "delivered" for d, _ in await deliveries(sessions, ids))
        assert delivered_at_kill < 8
        await asyncio.sleep(0.5)
        processes.start("notify")
        rows = await settled(sessions, ids, each=2, timeout=90)
    finally:
        await receiver.stop()
    assert [d.status for d in rows] == ["delivered"] * 8, [d.error for d in rows]
    expected = {(path, event_id) for (channel, path) in made for d, event_id in await deliveries(
        sessions, [channel["id"]])}
    received = Counter((r.path, r.json()["event_id"]) for r in receiver.accepted)
    assert set(received) == expected  # at least once each; once per event_id after dedupe
    assert receiver.refused == []


async def test_a_runs_totals_are_the_same_with_notify_stopped_and_its_notifications_follow(
        notifying_fleet, client, sessions, make_module_site, receiver) -> None:
    processes, own = notifying_fleet
    with_notify, headers_a = await new_site(sessions, make_module_site)
    without, headers_b = await new_site(sessions, make_module_site)
    [(hook_a, _)] = await hooks(client, headers_a, receiver, with_notify.id, 1)
    [(hook_b, path_b)] = await hooks(client, headers_b, receiver, without.id, 1)
    await completed_run(own, sessions, with_notify.id)
    await settled(sessions, [hook_a["id"]], each=2)

    processes.kill("notify", live(processes, "notify"), sig=signal.SIGTERM)
    try:
        started = time.monotonic()
        run_b = await completed_run(own, sessions, without.id)
        assert time.monotonic() - started < 60
        async with sessions() as session:  # nobody made its notifications: they wait in the queue
            assert await session.scalar(select(func.count()).select_from(Notification)
                                        .where(Notification.site_id == without.id)) == 0
        deps = deps_for(own, sessions)
        assert await site_outcome(deps, without.id) == await site_outcome(deps, with_notify.id)
    finally:
        processes.start("notify")
    rows = await settled(sessions, [hook_b["id"]], each=2)
    assert [d.status for d in rows] == ["delivered"] * 2
    assert {b["run"]["run_id"] for b in receiver.bodies(path_b)} == {run_b.run_id}
