"""Notification channels through the API, and the notify consumer's logic, against the real database and a
real local receiver: a webhook's secret is shown once and never again, rotation signs with both secrets for
the overlap, a test event lands in the delivery log, private addresses are refused when saved and when
delivered to, another account's channel is a 404; one notification per source event, credits low once a day."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import delete, func, select, update

from consumers import notify
from consumers.watchdog import resend_stalled_deliveries
from producers.api.app import create_app
from shared.api_keys import create_api_key
from shared.automation_logger import RESUMED_FROM
from shared.events import DeliverNotification, RunRejected, RunStateChanged, StageCompleted
from shared.messaging import PoisonMessage
from shared.models import (
    AutomationConfig,
    AutomationRun,
    Notification,
    NotificationDelivery,
    OutboxMessage,
    RunLogLine,
)
from shared.notifications import verify_signature
from shared.settings import Settings
from tests.notify_receivers import Receiver, verify

BASE = "/api/v1/automation"
SECRET = "notify-secret-key-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def notify_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"secret_key": SecretStr(SECRET), "notify_allow_private_targets": True,
                                       "public_url": "https://automation.example.test"})


@pytest.fixture(scope="module")
async def app(notify_settings: Settings, sessions):
    app = create_app(notify_settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api", timeout=30) as http:
        yield http


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver(answer_size=2000)
    await receiver.start()
    yield receiver
    await receiver.stop()


async def account_with_site(sessions, make_site, **config) -> tuple[int, dict[str, str]]:
    site = await make_site(keywords=8, synthetic=True, **config)
    async with sessions() as session, session.begin():
        key = await create_api_key(session, site.account_id)
    return site.id, {"X-API-Key": key}


async def add_webhook(client, headers, url: str, **fields) -> httpx.Response:
    return await client.post(f"{BASE}/notification_channels/", headers=headers,
                             json={"name": fields.pop("name", "hook"), "kind": "webhook", "url": url, **fields})


async def test_a_webhook_secret_is_shown_once_and_a_test_event_is_signed_and_logged(
        client, sessions, make_site, receiver) -> None:
    site_id, headers = await account_with_site(sessions, make_site)
    created = await add_webhook(client, headers, receiver.url("/hook/a"), site_id=site_id)
    assert created.status_code == 201, created.text
    channel = created.json()
    secret = channel["secret"]
    assert secret.startswith("whsec_") and channel["has_secret"] and channel["events"][0] == "run.completed"
    receiver.secrets = [secret]
    listed = await client.get(f"{BASE}/notification_channels/", params={"site_id": site_id}, headers=headers)
    one = await client.get(f"{BASE}/notification_channels/{channel['id']}", headers=headers)
    for answer in (listed, one):
        assert answer.status_code == 200 and secret not in answer.text and "secret" not in answer.json()
    assert [c["id"] for c in listed.json()["channels"]] == [channel["id"]]

    tested = await client.post(f"{BASE}/notification_channels/{channel['id']}/test", headers=headers)
    assert tested.status_code == 200, tested.text
    delivery = tested.json()
    assert delivery["status"] == "delivered" and delivery["response_code"] == 200 and delivery["attempts"] == 1
    assert delivery["latency_ms"] is not None and len(delivery["response_excerpt"]) == 500  # of a 2,000-byte answer
    [request] = receiver.accepted
    body = request.json()
    assert body["type"] == "notification.test" and body["event_id"] == delivery["event_id"]
    assert body["version"] == 1 and body["site"]["id"] == site_id and body["url"].endswith("/automation")
    assert verify_signature(secret, request.headers["automation-signature"], request.body)

    log = (await client.get(f"{BASE}/notification_channels/{channel['id']}/deliveries", headers=headers)).json()
    assert log["total"] == 1 and log["deliveries"][0]["id"] == delivery["id"]
    assert (await client.post(f"{BASE}/notification_deliveries/{delivery['id']}/redeliver",
                              headers=headers)).status_code == 409  # a test is not redelivered


async def test_rotation_signs_with_both_secrets_during_the_overlap(client, sessions, make_site, receiver) -> None:
    _, headers = await account_with_site(sessions, make_site)
    channel = (await add_webhook(client, headers, receiver.url("/hook/rotate"))).json()
    old = channel["secret"]
    rotated = await client.post(f"{BASE}/notification_channels/{channel['id']}/rotate_secret", headers=headers,
                                json={"overlap_minutes": 60})
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new != old and rotated.json()["previous_secret_valid_until"]
    shown = (await client.get(f"{BASE}/notification_channels/{channel['id']}", headers=headers)).json()
    assert shown["previous_secret_valid_until"] and shown["secret_rotated_at"] and new not in str(shown)

    receiver.secrets = [old]  # a receiver not yet switched still verifies ...
    assert (await client.post(f"{BASE}/notification_channels/{channel['id']}/test", headers=headers)
            ).json()["status"] == "delivered"
    header = receiver.accepted[-1].headers["automation-signature"]
    assert header.count("v1=") == 2
    assert verify(header, receiver.accepted[-1].body, [new]) and verify(header, receiver.accepted[-1].body, [old])

    # ... until the overlap is ended by a rotation without one
    await client.post(f"{BASE}/notification_channels/{channel['id']}/rotate_secret", headers=headers,
                      json={"overlap_minutes": 0})
    failed = (await client.post(f"{BASE}/notification_channels/{channel['id']}/test", headers=headers)).json()
    assert failed["status"] == "failed" and failed["response_code"] == 400
    assert "bad signature" in failed["response_excerpt"]
    assert receiver.accepted[-1].headers["automation-signature"].count("v1=") == 2  # the earlier one


async def test_private_addresses_are_refused_when_saved_and_when_delivered(
        app, client, sessions, make_site, receiver, notify_settings) -> None:
    _, headers = await account_with_site(sessions, make_site)
    allowed = await add_webhook(client, headers, receiver.url("/hook/private"), name="allowed-then")
    assert allowed.status_code == 201
    app.state.settings = notify_settings.model_copy(update={"notify_allow_private_targets": False})
    try:
        for url in ("http://127.0.0.1:9/x", "http://localhost/x", "http://169.254.169.254/latest/meta-data",
                    "http://10.1.2.3/", "http://[::1]/", "http://192.168.0.10/", "http://[::ffff:127.0.0.1]/",
                    "ftp://example.com/", "http://user:pw@example.com/"):
            for kind in ("webhook", "slack"):
                refused = await client.post(f"{BASE}/notification_channels/", headers=headers,
                                            json={"name": f"n{uuid.uuid4().hex[:6]}", "kind": kind, "url": url})
                assert refused.status_code == 422, (url, refused.text)
        # saved while allowed, refused at delivery once it is not
        tested = (await client.post(f"{BASE}/notification_channels/{allowed.json()['id']}/test",
                                    headers=headers)).json()
        assert tested["status"] == "failed" and "private" in tested["error"] and tested["response_code"] is None
        assert receiver.requests == []
    finally:
        app.state.settings = notify_settings


async def test_another_accounts_channel_is_not_found_and_slack_urls_and_emails_are_kept_private(
        client, sessions, make_site, receiver) -> None:
    site_id, headers = await account_with_site(sessions, make_site)
    _, stranger = await account_with_site(sessions, make_site)
    channel = (await add_webhook(client, headers, receiver.url("/hook/mine"))).json()
    cid = channel["id"]
    for method, path, body in (("GET", f"notification_channels/{cid}", None),
                               ("PUT", f"notification_channels/{cid}", {"enabled": False}),
                               ("DELETE", f"notification_channels/{cid}", None),
                               ("POST", f"notification_channels/{cid}/test", None),
                               ("POST", f"notification_channels/{cid}/rotate_secret", {}),
                               ("GET", f"notification_channels/{cid}/deliveries", None)):
        answer = await client.request(method, f"{BASE}/{path}", headers=stranger, json=body)
        assert answer.status_code == 404, (method, path, answer.text)
    assert (await client.get(f"{BASE}/notification_channels/", headers=stranger)).json()["channels"] == []
    assert (await client.post(f"{BASE}/notification_channels/", headers=stranger, json={
        "name": "x", "kind": "email", "emails": ["a@example.com"], "site_id": site_id})).status_code == 404
    assert (await client.get(f"{BASE}/notification_channels/{cid}", headers=headers)).json()["enabled"] is True

    slack_url = receiver.url("/slack/T000/B000/" + uuid.uuid4().hex)
    slack = await client.post(f"{BASE}/notification_channels/", headers=headers,
                              json={"name": "slack", "kind": "slack", "url": slack_url})
    assert slack.status_code == 201 and slack.json()["url"] is None and slack.json()["secret"] is None
    listed = await client.get(f"{BASE}/notification_channels/", headers=headers)
    assert slack_url not in listed.text and slack_url not in slack.text
    assert listed.json()["channels"][1]["url_hint"].endswith(slack_url[-4:])
    bad = await client.post(f"{BASE}/notification_channels/", headers=headers,
                            json={"name": "mail", "kind": "email", "emails": ["not an address"]})
    assert bad.status_code == 422
    duplicate = await add_webhook(client, headers, receiver.url("/hook/again"))
    assert duplicate.status_code == 409


# --- the consumer's logic, in process -------------------------------------------------------------


async def webhook_channel(client, headers, receiver, site_id=None, **fields) -> dict:
    answer = await add_webhook(client, headers, receiver.url(f"/hook/{uuid.uuid4().hex[:6]}"), site_id=site_id,
                               name=f"hook-{uuid.uuid4().hex[:6]}", **fields)
    assert answer.status_code == 201, answer.text
    receiver.secrets.append(answer.json()["secret"])
    return answer.json()


async def fake_run(sessions, site_id: int, status: str, **values) -> AutomationRun:
    async with sessions() as session, session.begin():
        run = AutomationRun(run_id=f"run_test_{uuid.uuid4().hex[:8]}", site_id=site_id, status=status,
                            current_stage=values.pop("current_stage", 7), trigger="scheduled", **values)
        session.add(run)
    return run


async def deliveries_of(sessions, channel_id: int) -> list[tuple[NotificationDelivery, Notification]]:
    async with sessions() as session:
        return list((await session.execute(
            select(NotificationDelivery, Notification).join(Notification)
            .where(NotificationDelivery.channel_id == channel_id).order_by(NotificationDelivery.id))).all())


async def test_one_notification_per_source_event_delivered_once_and_matched_to_its_channels(
        deps, client, sessions, make_site, receiver, notify_settings) -> None:
    site_id, headers = await account_with_site(sessions, make_site)
    everything = await webhook_channel(client, headers, receiver)
    only_failures = await webhook_channel(client, headers, receiver, site_id=site_id, events=["run.failed"])
    run = await fake_run(sessions, site_id, "paused", pause_reason="insufficient credits: stages 4-7 need 90",
                         total_credits_used=12, estimated_credits=100, current_stage=4)
    event = RunStateChanged(type="run.paused", run_id=run.run_id, site_id=site_id, status="paused",
                            reason="insufficient credits: stages 4-7 need about 90 (9 tasks), balance 3")
    own = replace(deps, settings=notify_settings)
    assert await notify.announce(own, event) == 1  # the run.failed-only channel is not told
    assert await notify.announce(own, event) == 0  # redelivered: nobody is told twice
    [(delivery, notification)] = await deliveries_of(sessions, everything["id"])
    assert await deliveries_of(sessions, only_failures["id"]) == []
    body = notification.payload
    assert body["type"] == "run.paused" and body["reason_kind"] == "credits" and "balance 3" in body["reason"]
    assert body["run"]["run_id"] == run.run_id and body["url"].endswith(f"/automation?site_id={site_id}")
    async with sessions() as session:
        messages = (await session.scalars(select(OutboxMessage.payload).where(
            OutboxMessage.routing_key == "notify.deliver"))).all()
    command = DeliverNotification.model_validate(next(m for m in messages if m["delivery_id"] == delivery.id))

    attempt = await notify.deliver_one(own, command)
    assert attempt is not None and attempt.ok
    assert await notify.deliver_one(own, command) is None  # a duplicate message sends nothing
    assert len(receiver.accepted) == 1 and receiver.accepted[0].json()["event_id"] == notification.event_id
    [(delivery, _)] = await deliveries_of(sessions, everything["id"])
    assert delivery.status == "delivered" and delivery.attempts == 1 and delivery.response_code == 200


async def test_a_failing_receiver_is_retried_then_the_delivery_fails_with_its_answer(
        deps, client, sessions, make_site, receiver, notify_settings) -> None:
    site_id, headers = await account_with_site(sessions, make_site)
    channel = await webhook_channel(client, headers, receiver)
    receiver.secrets = ["not-the-secret"]  # the receiver answers 400: not retryable
    run = await fake_run(sessions, site_id, "failed", error_message="stage 4 batch 9 failed: boom")
    own = replace(deps, settings=notify_settings)
    await notify.announce(own, RunStateChanged(type="run.failed", run_id=run.run_id, site_id=site_id,
                                               status="failed", reason="stage 4 batch 9 failed: boom"))
    [(delivery, notification)] = await deliveries_of(sessions, channel["id"])
    command = DeliverNotification(delivery_id=delivery.id, channel_id=channel["id"],
                                  notification_event_id=uuid.UUID(notification.event_id))
    with pytest.raises(Exception, match="answered 400") as raised:
        await notify.deliver_one(own, command)
    assert getattr(raised.value, "retryable", None) is False
    await notify.mark_failed(own, command.model_dump(mode="json"), "not retryable: the receiver answered 400")
    [(delivery, _)] = await deliveries_of(sessions, channel["id"])
    assert delivery.status == "failed" and delivery.response_code == 400
    assert delivery.response_excerpt == "bad signature"
    await receiver.stop()  # down: retryable
    redelivered = await client.post(f"{BASE}/notification_deliveries/{delivery.id}/redeliver", headers=headers)
    assert redelivered.status_code == 202 and redelivered.json()["status"] == "queued"
    with pytest.raises(Exception, match="ConnectError") as raised:
        await notify.deliver_one(own, command)
    assert getattr(raised.value, "retryable", None) is True
    await notify.note_retry(own, command.model_dump(mode="json"), 2, 1.0, "ConnectError")
    [(delivery, _)] = await deliveries_of(sessions, channel["id"])
    assert delivery.status == "retrying" and delivery.attempts == 2 and "retrying in 1.0 s" in delivery.error


async def test_credits_low_is_told_once_a_day_when_the_next_scheduled_run_cannot_start(
        deps, client, sessions, make_site, receiver, notify_settings) -> None:
    site_id, headers = await account_with_site(sessions, make_site, credits=5)
    channel = await webhook_channel(client, headers, receiver, events=["credits.low"])
    own = replace(deps, settings=notify_settings)
    run = await fake_run(sessions, site_id, "completed")
    completed = RunStateChanged(type="run.completed", run_id=run.run_id, site_id=site_id, status="completed")
    assert await notify.announce(own, completed) == 0  # scheduling is off: no next run to warn about
    async with sessions() as session, session.begin():
        await session.execute(update(AutomationConfig).where(AutomationConfig.site_id == site_id).values(
            is_enabled=True, frequency="daily", scheduled_time=time(3, 0)))
    assert await notify.announce(own, completed) == 1
    refused = RunRejected(site_id=site_id, reason="insufficient credits: need 40 (estimate 33 + 20% buffer), "
                                                  "balance 5", balance=5, required=40)
    assert await notify.announce(own, refused) == 0  # the same day: told once
    [(_, notification)] = await deliveries_of(sessions, channel["id"])
    body = notification.payload
    assert body["type"] == "credits.low" and body["credits"]["balance"] == 5
    assert body["credits"]["required"] > 5 and body["credits"]["next_run_at"]
    assert datetime.fromisoformat(body["credits"]["next_run_at"]) > datetime.now(UTC)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Notification).where(
            Notification.site_id == site_id, Notification.type == "credits.low")) == 1


async def test_the_watchdog_resends_a_delivery_whose_message_was_lost(
        deps, client, sessions, make_site, receiver, notify_settings) -> None:
    site_id, headers = await account_with_site(sessions, make_site)
    channel = await webhook_channel(client, headers, receiver)
    run = await fake_run(sessions, site_id, "failed", error_message="boom")
    own = replace(deps, settings=notify_settings)
    await notify.announce(own, RunStateChanged(type="run.failed", run_id=run.run_id, site_id=site_id,
                                               status="failed", reason="boom"))
    [(delivery, notification)] = await deliveries_of(sessions, channel["id"])
    async with sessions() as session, session.begin():
        await session.execute(delete(OutboxMessage))  # the message is lost ...
        await session.execute(update(NotificationDelivery).where(NotificationDelivery.id == delivery.id).values(
            status="retrying", attempts=20, created_at=func.now() - timedelta(hours=1),
            last_attempt_at=func.now() - timedelta(hours=1)))  # ... and the last resort never marked it failed
    assert await resend_stalled_deliveries(own) == 1
    assert await resend_stalled_deliveries(own) == 0  # not again before another stall period
    async with sessions() as session:
        [payload] = (await session.scalars(select(OutboxMessage.payload).where(
            OutboxMessage.routing_key == "notify.deliver"))).all()
    assert payload["delivery_id"] == delivery.id and payload["notification_event_id"] == notification.event_id
    assert (await notify.deliver_one(own, DeliverNotification.model_validate(payload))).ok  # type: ignore[union-attr]
    [(delivery, _)] = await deliveries_of(sessions, channel["id"])
    assert delivery.status == "delivered"


async def test_the_credits_sweep_warns_before_a_scheduled_slot_is_skipped(
        deps, client, sessions, make_site, receiver, notify_settings) -> None:
    site_id, headers = await account_with_site(sessions, make_site, credits=3)
    channel = await webhook_channel(client, headers, receiver, events=["credits.low"])
    own = replace(deps, settings=notify_settings)
    await notify.check_credits(own)
    assert await deliveries_of(sessions, channel["id"]) == []  # no scheduled runs: nothing to warn about
    async with sessions() as session, session.begin():
        await session.execute(update(AutomationConfig).where(AutomationConfig.site_id == site_id).values(
            is_enabled=True))
    await notify.check_credits(own)
    await notify.check_credits(own)  # the next sweep the same day tells nobody again
    [(_, notification)] = await deliveries_of(sessions, channel["id"])
    assert notification.type == "credits.low" and notification.payload["credits"]["balance"] == 3


async def test_a_forged_fact_is_poison_and_tells_nobody(
        deps, client, sessions, make_site, receiver, notify_settings) -> None:
    """Schema-valid events naming a real run that the database contradicts: nobody is told, and each is
    dead-lettered with the reason. A pause that was resumed since is still a fact."""
    site_id, headers = await account_with_site(sessions, make_site)
    channel = await webhook_channel(client, headers, receiver)
    own = replace(deps, settings=notify_settings)
    running = await fake_run(sessions, site_id, "running", current_stage=3)
    forged = [RunStateChanged(type=kind, run_id=running.run_id, site_id=site_id, status=kind.removeprefix("run."))
              for kind in ("run.completed", "run.failed", "run.paused")]
    forged.append(StageCompleted.for_stage(running.run_id, 7, {"items_in": 99, "items_out": 99}))
    completed = await fake_run(sessions, site_id, "completed")
    forged.append(RunStateChanged(type="run.completed", run_id=completed.run_id, site_id=site_id + 1,
                                  status="completed"))  # another site's
    for event in forged:
        with pytest.raises(PoisonMessage, match=r"not a fact|is not of site"):
            await notify.announce(own, event)
    assert await deliveries_of(sessions, channel["id"]) == []

    async with sessions() as session, session.begin():
        session.add(RunLogLine(run_id=running.id, stage=0, level="INFO",
                               message=RESUMED_FROM.format(state="paused") + " at stage 3"))
    assert await notify.announce(own, forged[2]) == 1  # it was paused, and has been resumed since
