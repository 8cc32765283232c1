"""The notify consumer (`automation consume notify`): tells people when a run needs them.

Two queues. `<prefix>.notify` takes the events worth telling (a run completed, failed or paused; stage 7's
completion, which means content is ready for review; a publication failed for good; a start refused for
credits) and turns each into one `notifications` row with the body every channel receives, plus one
`notification_deliveries` row and one `notify.deliver` message per matching channel, all in one transaction
(the outbox relays the messages). The row is keyed by its source (`dedupe_key`), so a redelivered event
notifies nobody twice; the notification's `event_id` is derived from that key and is the same on every
retry. After a completed run, a start refused for credits, and every `AUTOMATION_NOTIFY_CREDITS_CHECK_SECONDS`
for every site with scheduled runs (the scheduler skips a slot short of credits without any event), it checks
the site's next scheduled run against the balance, and warns once per day and site when it falls short
(`credits.low`).

`<prefix>.notify.deliver` takes one message per notification and channel, so a slow or failing receiver
holds up no other. A delivery is worked on by one consumer at a time: a PostgreSQL advisory lock on the
connection the attempt uses, as the publish consumer does; a consumer killed mid-way loses the lock with its
connection and the broker hands its unacknowledged message to another one, which sends again with the same
`event_id` (at-least-once: receivers dedupe). Failures are retried with backoff through the delay queues
for `AUTOMATION_NOTIFY_MAX_ATTEMPTS` tries (5xx, 408/429, timeouts, a receiver that is down) or end at once
(another 4xx, a refused address); either way the delivery log shows each attempt's status, code and latency.

Nothing in the pipeline waits for this process: it only reads the run's state, and its failures are routed
by its own failure hooks, which never touch a run.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import exists, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from consumers.deps import Deps
from shared.automation_logger import RESUMED_FROM
from shared.credits import estimate_for_site
from shared.db import advisory_locked
from shared.events import (
    DeliverNotification,
    PublicationChanged,
    RunRejected,
    RunStateChanged,
    StageCompleted,
)
from shared.messaging import PoisonMessage
from shared.models import (
    Account,
    AutomationConfig,
    AutomationRun,
    Content,
    Notification,
    NotificationChannel,
    NotificationDelivery,
    PublishTarget,
    RunLogLine,
    RunStage,
    Site,
)
from shared.notifications import ContentRef, Counts, Credits, RunInfo, SiteRef
from shared.notifications import Notification as Body
from shared.notify_delivery import Attempt, DeliveryError, Target, deliver, target_of
from shared.outbox import add_events
from shared.schedule import next_run_at, schedule_of
from shared.settings import Settings

log = logging.getLogger("automation.notify")
# Advisory lock keys of deliveries: the delivery id with a bit no other lock of the system uses (publish: 1 << 62).
LOCK_NAMESPACE = 1 << 61
CREDITS_SWEEP_LOCK = (1 << 61) - 1  # below every delivery's key
# Notification event ids are derived from their dedupe key in this namespace: the same source, the same id.
EVENT_NAMESPACE = uuid.UUID("6f1d7c1e-3b0a-4e55-9a57-2f7c4d0b9e11")

Sender = Callable[[Settings, Target, Body], Awaitable[Attempt]]
Sessions = Callable[[], AsyncSession]


def now() -> datetime:
    return datetime.now(UTC)


# --- from events to notifications ---------------------------------------------------------------


def dashboard_url(settings: Settings, site_id: int | None) -> str | None:
    if not settings.public_url:
        return None
    base = settings.public_url.rstrip("/") + "/automation"
    return f"{base}?site_id={site_id}" if site_id else base


def counts_of(run: AutomationRun) -> Counts:
    def out(stage: int, key: str = "items_out") -> int:
        result = run.stage_result(stage) or {}
        return int(result.get(key) or 0)

    return Counts(keywords=out(1, "items_in"), clusters=out(1), ideas=out(2), tasks=out(3), content=out(4),
                  images=out(6), in_review=out(7))


def run_info(run: AutomationRun) -> RunInfo:
    return RunInfo(run_id=run.run_id, status=run.status, trigger=run.trigger, current_stage=run.current_stage,
                   started_at=run.started_at, completed_at=run.completed_at, credits_used=run.total_credits_used,
                   estimated_credits=run.estimated_credits)


def reason_kind(reason: str | None) -> str:
    return "credits" if (reason or "").startswith("insufficient credits") else "manual"


async def _site_and_balance(session: AsyncSession, site_id: int) -> tuple[Site, int] | None:
    row = (await session.execute(select(Site, Account.credits_balance).join(Account, Account.id == Site.account_id)
                                 .where(Site.id == site_id))).first()
    return (row[0], int(row[1])) if row else None


Made = tuple[str, Body]  # (dedupe key, body): the key names the source, the event id is derived from it


def _body(settings: Settings, dedupe_key: str, type_: str, site: Site, balance: int, summary: str,
          **fields: Any) -> Made:
    body = Body(event_id=uuid.uuid5(EVENT_NAMESPACE, dedupe_key), type=type_,
                occurred_at=now(), account_id=site.account_id, site=SiteRef(id=site.id, name=site.name),
                credits=fields.pop("credits", None) or Credits(balance=balance), summary=summary,
                url=dashboard_url(settings, site.id), **fields)
    return dedupe_key, body


async def run_notification(session: AsyncSession, settings: Settings, event: RunStateChanged) -> Made | None:
    found = await _site_and_balance(session, event.site_id)
    run = await session.scalar(select(AutomationRun).where(AutomationRun.run_id == event.run_id))
    if found is None or run is None:
        log.warning("%s of an unknown run %s (site %s): nobody to tell", event.type, event.run_id, event.site_id)
        return None
    site, balance = found
    info, counts = run_info(run), counts_of(run)
    where = f"Run {run.run_id} on {site.name}"
    if event.type == "run.completed":
        summary = (f"{where} completed: {counts.content} articles and {counts.images} images, "
                   f"{run.total_credits_used} credits used; {counts.in_review} articles wait for review.")
        return _body(settings, f"{event.type}:{event.event_id}", event.type, site, balance, summary, run=info,
                     counts=counts)
    if event.type == "run.failed":
        reason = event.reason or run.error_message or "unknown error"
        summary = f"{where} failed at stage {run.current_stage}: {reason}"
        return _body(settings, f"{event.type}:{event.event_id}", event.type, site, balance, summary, run=info,
                     counts=counts, reason=reason, reason_kind="error")
    reason = event.reason or run.pause_reason or "paused"
    kind = reason_kind(reason)
    summary = (f"{where} paused at stage {run.current_stage} for credits: {reason}. Add credits, then resume it."
               if kind == "credits" else f"{where} was paused at stage {run.current_stage}: {reason}.")
    return _body(settings, f"{event.type}:{event.event_id}", event.type, site, balance, summary, run=info,
                 counts=counts, reason=reason, reason_kind=kind)


async def review_notification(session: AsyncSession, settings: Settings, event: StageCompleted) -> Made | None:
    """Once per run: the articles stage 7 left in review (none with skip review, or when there are none)."""
    run = await session.scalar(select(AutomationRun).where(AutomationRun.run_id == event.run_id))
    if run is None:
        return None
    found = await _site_and_balance(session, run.site_id)
    in_review = int(event.result.get("items_out") or 0)
    skip_review = await session.scalar(select(AutomationConfig.skip_review)
                                       .where(AutomationConfig.site_id == run.site_id))
    if found is None or in_review == 0 or skip_review:
        return None
    site, balance = found
    counts = counts_of(run).model_copy(update={"in_review": in_review})
    summary = f"{in_review} articles from run {run.run_id} on {site.name} are waiting for review."
    return _body(settings, f"content.ready_for_review:{run.run_id}", "content.ready_for_review", site, balance,
                 summary, run=run_info(run), counts=counts)


async def publish_failed_notification(session: AsyncSession, settings: Settings,
                                      event: PublicationChanged) -> Made | None:
    found = await _site_and_balance(session, event.site_id)
    content = await session.get(Content, event.content_id)
    target = await session.get(PublishTarget, event.target_id)
    if found is None or content is None:
        return None
    site, balance = found
    where = f" on {target.name}" if target else ""
    summary = f"\u201c{content.title}\u201d could not be published{where}: {event.error or 'unknown error'}"
    return _body(settings, f"content.publish_failed:{event.event_id}", "content.publish_failed", site, balance,
                 summary, reason=event.error, reason_kind="error",
                 content=ContentRef(id=content.id, title=content.title, target=target.name if target else None,
                                    error=event.error))


async def credits_low_notification(session: AsyncSession, settings: Settings, site_id: int) -> Made | None:
    """When the site's next scheduled run will be refused for credits: once per day (UTC) and site."""
    found = await _site_and_balance(session, site_id)
    config = await session.scalar(select(AutomationConfig).where(AutomationConfig.site_id == site_id))
    if found is None or config is None or not config.is_enabled:
        return None
    site, balance = found
    estimate = await estimate_for_site(session, site.id)
    required = estimate.required(settings.credit_buffer)
    if estimate.total == 0 or balance >= required:
        return None
    today = now()
    due = next_run_at(schedule_of(config, site.timezone), today)
    when = f" on {due:%Y-%m-%d at %H:%M} UTC" if due else ""
    summary = (f"The balance ({balance}) is below what the next scheduled run of {site.name}{when} needs "
               f"({required}: estimate {estimate.total} with the buffer); it will be refused unless credits are added.")
    return _body(settings, f"credits.low:{site.id}:{today:%Y-%m-%d}", "credits.low", site, balance, summary,
                 credits=Credits(balance=balance, required=required, estimate=estimate.total, next_run_at=due))


async def record(session: AsyncSession, body: Body, dedupe_key: str) -> int:
    """Store the notification once (by its key) and queue one delivery per matching channel; returns how many."""
    assert body.site is not None
    notification_id = await session.scalar(
        insert(Notification).values(event_id=str(body.event_id), dedupe_key=dedupe_key, type=body.type,
                                    account_id=body.account_id, site_id=body.site.id,
                                    payload=body.model_dump(mode="json"))
        .on_conflict_do_nothing().returning(Notification.id))
    if notification_id is None:
        return 0  # made before: this event was delivered again
    channels = (await session.scalars(select(NotificationChannel).where(
        NotificationChannel.account_id == body.account_id, NotificationChannel.enabled.is_(True),
        or_(NotificationChannel.site_id.is_(None), NotificationChannel.site_id == body.site.id))
        .order_by(NotificationChannel.id))).all()
    queued = 0
    for channel in channels:
        if body.type not in (channel.events or []):
            continue
        delivery = NotificationDelivery(notification_id=notification_id, channel_id=channel.id, status="queued",
                                        attempts=0)
        session.add(delivery)
        await session.flush()
        add_events(session, DeliverNotification(delivery_id=delivery.id, channel_id=channel.id,
                                                notification_event_id=body.event_id))
        queued += 1
    return queued


async def check_fact(session: AsyncSession, event: RunStateChanged | StageCompleted | PublicationChanged) -> None:
    """A fact is checked against the database before anyone is told of it: a schema-valid but forged
    `run.completed` naming a running run must not tell a customer the run finished. Completed is for
    good, so the run must be completed now; a pause or a failure may have been resumed since the event
    was sent, which the run's log records. A fact the database contradicts is poison (dead-lettered
    with the reason), and an unknown run tells nobody, as before."""
    if isinstance(event, PublicationChanged):
        site_id = await session.scalar(select(Content.site_id).where(Content.id == event.content_id))
        if site_id is not None and site_id != event.site_id:
            raise PoisonMessage(f"{event.type}: content {event.content_id} is not of site {event.site_id}")
        return
    run = await session.scalar(select(AutomationRun).where(AutomationRun.run_id == event.run_id))
    if run is None:
        return
    if isinstance(event, StageCompleted):
        stage = await session.get(RunStage, (run.id, event.stage))
        if stage is None or stage.status != "completed":
            raise PoisonMessage(f"{event.type} of run {event.run_id}, whose stage {event.stage} is "
                                f"{stage.status if stage else 'not planned'}: not a fact")
        return
    if run.site_id != event.site_id:
        raise PoisonMessage(f"{event.type}: run {event.run_id} is not of site {event.site_id}")
    claimed = event.type.removeprefix("run.")
    if claimed not in ("completed", "failed", "paused") or run.status == claimed:
        return
    if claimed in ("paused", "failed") and await session.scalar(select(exists().where(
            RunLogLine.run_id == run.id, RunLogLine.message.startswith(RESUMED_FROM.format(state=claimed))))):
        return  # it was, and has been resumed since
    raise PoisonMessage(f"{event.type} of run {event.run_id}, which is {run.status}: not a fact")


async def announce(deps: Deps, event: RunStateChanged | StageCompleted | PublicationChanged | RunRejected) -> int:
    """Turn one event into notifications and their deliveries (one transaction); returns deliveries queued."""
    settings = deps.settings
    queued = 0
    async with deps.sessions() as session, session.begin():
        if not isinstance(event, RunRejected):
            await check_fact(session, event)
        made: list[Made | None] = []
        if isinstance(event, RunStateChanged) and event.type in ("run.completed", "run.failed", "run.paused"):
            made.append(await run_notification(session, settings, event))
            if event.type == "run.completed":
                made.append(await credits_low_notification(session, settings, event.site_id))
        elif isinstance(event, StageCompleted) and event.stage == 7:
            made.append(await review_notification(session, settings, event))
        elif isinstance(event, PublicationChanged) and event.type == "content.publish_failed":
            made.append(await publish_failed_notification(session, settings, event))
        elif isinstance(event, RunRejected) and event.reason.startswith("insufficient credits"):
            made.append(await credits_low_notification(session, settings, event.site_id))
        for item in made:
            if item is not None:
                queued += await record(session, item[1], item[0])
    if queued:
        deps.relay.wake()
        log.info("%s: %d notification deliveries queued", event.type, queued)
    return queued


async def check_credits(deps: Deps) -> int:
    """One sweep over the sites with scheduled runs: `credits.low` where the next run cannot start (each at
    most once a day). One replica sweeps at a time (a transaction-level advisory lock)."""
    queued = 0
    async with deps.sessions() as session, session.begin():
        if not await session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": CREDITS_SWEEP_LOCK}):
            return 0
        site_ids = (await session.scalars(select(AutomationConfig.site_id).where(AutomationConfig.is_enabled.is_(True))
                                          .order_by(AutomationConfig.site_id))).all()
        for site_id in site_ids:
            made = await credits_low_notification(session, deps.settings, site_id)
            if made is not None:
                queued += await record(session, made[1], made[0])
    if queued:
        deps.relay.wake()
    return queued


async def check_credits_forever(deps: Deps) -> None:
    """`check_credits` every `notify_credits_check_seconds`; a failed sweep is logged and tried again."""
    while True:
        try:
            await check_credits(deps)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("credits sweep failed; will retry")
        await asyncio.sleep(deps.settings.notify_credits_check_seconds)


# --- delivering ---------------------------------------------------------------------------------


def delivery_lock(deps: Deps, delivery_id: int) -> AbstractAsyncContextManager[Sessions | None]:
    """Takes it (see the module's docstring): sessions on the lock's connection, or None when another
    consumer holds it."""
    return advisory_locked(deps.sessions, LOCK_NAMESPACE | delivery_id)


async def deliver_one(deps: Deps, command: DeliverNotification, send: Sender = deliver) -> Attempt | None:
    """Handle one `notify.deliver`: take the delivery, make one attempt, record it; a failed attempt raises
    `DeliveryError` for the failure routing (retry through the delay queues, or fail at once)."""
    async with delivery_lock(deps, command.delivery_id) as sessions:
        if sessions is None:
            log.info("delivery %d is being made by another consumer; this copy is dropped", command.delivery_id)
            return None
        async with sessions() as session, session.begin():
            row = (await session.execute(
                select(NotificationDelivery, Notification, NotificationChannel)
                .join(Notification, Notification.id == NotificationDelivery.notification_id)
                .join(NotificationChannel, NotificationChannel.id == NotificationDelivery.channel_id)
                .where(NotificationDelivery.id == command.delivery_id)
                .with_for_update(of=NotificationDelivery))).first()
            if row is None:
                log.info("delivery %d is gone (its channel was deleted); nothing to send", command.delivery_id)
                return None
            delivery, notification, channel = row
            if delivery.channel_id != command.channel_id or notification.event_id != str(command.notification_event_id):
                raise PoisonMessage(f"delivery {command.delivery_id} is not of channel {command.channel_id} and "
                                    f"notification {command.notification_event_id}")
            if delivery.status in ("delivered", "failed"):
                return None  # a duplicate or late message
            if not channel.enabled:
                delivery.status, delivery.error = "failed", "the channel was disabled before it was delivered"
                return None
            delivery.attempts += 1
            delivery.last_attempt_at = func.now()
            target = target_of(deps.settings, channel, now())
            body = Body.model_validate(notification.payload)
        attempt = await send(deps.settings, target, body)
        async with sessions() as session, session.begin():
            values: dict[str, Any] = {"response_code": attempt.response_code, "latency_ms": attempt.latency_ms,
                                      "response_excerpt": attempt.excerpt, "error": attempt.error}
            if attempt.ok:
                values.update(status="delivered", delivered_at=func.now())
            else:
                values.update(status="retrying")
            await session.execute(update(NotificationDelivery).where(NotificationDelivery.id == command.delivery_id)
                                  .values(**values))
    if not attempt.ok:
        raise DeliveryError(f"{channel.kind} channel {channel.id}: {attempt.error}", retryable=attempt.retryable)
    log.info("notification %s (%s) delivered to %s channel %d in %s ms", body.event_id, body.type, channel.kind,
             channel.id, attempt.latency_ms)
    return attempt


async def mark_failed(deps: Deps, payload: dict[str, Any], reason: str) -> None:
    """The last resort of a notify message: a delivery whose retries are used up (or that cannot succeed)
    ends `failed` with the reason. A dead-lettered event only leaves its dead letter: no run is touched."""
    delivery_id = payload.get("delivery_id")
    if payload.get("type") != "notify.deliver" or not isinstance(delivery_id, int):
        log.error("%s could not be turned into notifications: %s", payload.get("type"), reason)
        return
    async with deps.sessions() as session, session.begin():
        await session.execute(update(NotificationDelivery).where(
            NotificationDelivery.id == delivery_id, NotificationDelivery.status.in_(("queued", "retrying")))
            .values(status="failed", error=reason[:2000]))


async def note_retry(deps: Deps, payload: dict[str, Any], attempt: int, delay: float, reason: str) -> None:
    """Show the coming retry on the delivery, so the delivery log says what is going on while it waits."""
    delivery_id = payload.get("delivery_id")
    if payload.get("type") == "notify.deliver" and isinstance(delivery_id, int):
        note = f"attempt {attempt} failed, retrying in {delay:.1f} s: {reason}"
        async with deps.sessions() as session, session.begin():
            await session.execute(update(NotificationDelivery).where(
                NotificationDelivery.id == delivery_id, NotificationDelivery.status != "delivered")
                .values(error=note[:2000]))
