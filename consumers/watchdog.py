"""The watchdog, run by the control process: recovers batches whose consumer died, re-requests
the stage of runs that have nothing in flight, fails runs that stopped making progress, and
re-sends publish requests and notification deliveries that have been waiting too long.
Every action is written to the run's log. Every time is the database's clock.

Why the re-request: a message whose retries ran out is dead-lettered and its run failed, but
failing the run needs the database. When the database itself was away longer than the retry
budget, the run stayed `running` with no message left anywhere, holding the site's lock until
the 6-hour timeout. Re-requesting the current stage is safe because planning is idempotent
(it plans a stage not yet planned, or re-emits the open batches of one that is) and every
trigger is checked against the run's state.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import exists, func, or_, select, update

from consumers.deps import Deps
from consumers.planning import now
from shared.automation_logger import RunRef
from shared.events import DeliverNotification, ProcessBatch, PublishContent, RequestStage, RunStateChanged
from shared.models import AutomationRun, Notification, NotificationDelivery, Publication, Site, StageBatch
from shared.outbox import add_events

log = logging.getLogger("automation.watchdog")


async def reissue_expired_batches(deps: Deps) -> int:
    """Hand out again every batch whose claim expired (its consumer died or hung)."""
    async with deps.sessions() as session, session.begin():
        expired = (await session.execute(
            select(StageBatch.id, StageBatch.stage, StageBatch.seq, StageBatch.claimed_by, AutomationRun,
                   Site.account_id)
            .join(AutomationRun, AutomationRun.id == StageBatch.run_id).join(Site, Site.id == AutomationRun.site_id)
            .where(StageBatch.status == "claimed", StageBatch.lease_expires_at < func.now(),
                   AutomationRun.status == "running")
            .with_for_update(of=StageBatch, skip_locked=True))).all()
        for batch_id, stage, seq, holder, run, account_id in expired:
            await session.execute(update(StageBatch).where(StageBatch.id == batch_id).values(
                status="pending", claim_token=None, lease_expires_at=None, error=f"lease of {holder} expired"))
            add_events(session, ProcessBatch.for_stage(run.run_id, stage, batch_id))
            deps.logger.log_stage_progress(
                session, RunRef.of(run, account_id), stage,
                f"watchdog: batch {seq + 1} re-issued, the lease of {holder} expired")
    if expired:
        deps.relay.wake()
        log.warning("re-issued %d batches with expired leases", len(expired))
    return len(expired)


async def fail_stale_runs(deps: Deps) -> int:
    """Fail running runs without progress for `stale_run_seconds`, releasing the site's lock."""
    limit = deps.settings.stale_run_seconds
    async with deps.sessions() as session, session.begin():
        stale = (await session.execute(
            select(AutomationRun, Site.account_id).join(Site, Site.id == AutomationRun.site_id)
            .where(AutomationRun.status == "running",
                   AutomationRun.last_progress_at < func.now() - timedelta(seconds=limit))
            .with_for_update(of=AutomationRun, skip_locked=True))).all()
        for run, account_id in stale:
            message = f"watchdog: no progress for {limit} s at stage {run.current_stage}; run failed"
            run.status = "failed"
            run.error_message = message
            run.completed_at = now()
            deps.logger.run_event(session, RunRef.of(run, account_id), message, level="ERROR")
            add_events(session, RunStateChanged(type="run.failed", run_id=run.run_id, site_id=run.site_id,
                                                status="failed", reason=message))
    if stale:
        deps.relay.wake()
        log.error("failed %d stale runs", len(stale))
    return len(stale)


async def nudge_stalled_runs(deps: Deps) -> int:
    """Re-request the current stage of running runs without progress for `stall_seconds` and with
    no live claim, at most once per `stall_seconds` each."""
    stall = timedelta(seconds=deps.settings.stall_seconds)
    live_claim = exists().where(StageBatch.run_id == AutomationRun.id, StageBatch.status == "claimed",
                                StageBatch.lease_expires_at >= func.now())
    async with deps.sessions() as session, session.begin():
        stalled = (await session.execute(
            select(AutomationRun, Site.account_id).join(Site, Site.id == AutomationRun.site_id)
            .where(AutomationRun.status == "running", AutomationRun.last_progress_at < func.now() - stall,
                   or_(AutomationRun.watchdog_nudged_at.is_(None),
                       AutomationRun.watchdog_nudged_at < func.now() - stall),
                   ~live_claim)
            .with_for_update(of=AutomationRun, skip_locked=True))).all()
        for run, account_id in stalled:
            run.watchdog_nudged_at = func.now()
            add_events(session, RequestStage.for_stage(run.run_id, run.current_stage))
            deps.logger.run_event(session, RunRef.of(run, account_id),
                                  f"watchdog: no progress for {deps.settings.stall_seconds} s and nothing in flight "
                                  f"at stage {run.current_stage}; stage re-requested", level="WARNING")
    if stalled:
        deps.relay.wake()
        log.warning("re-requested the stage of %d stalled runs", len(stalled))
    return len(stalled)


async def resend_stalled_publications(deps: Deps) -> int:
    """Re-send `content.publish` for publications still queued `stall_seconds` after their request.

    Their message is gone when the last resort could not mark them failed (the database was away when
    the retries ran out). A copy sent while the original is still being worked on is harmless: it
    finds the publication locked, or already published, and does nothing."""
    stall = timedelta(seconds=deps.settings.stall_seconds)
    async with deps.sessions() as session, session.begin():
        stalled = (await session.scalars(
            select(Publication).where(Publication.status == "queued", Publication.requested_at < func.now() - stall)
            .with_for_update(skip_locked=True).limit(1000))).all()
        for publication in stalled:
            publication.requested_at = func.now()
            add_events(session, PublishContent(publication_id=publication.id, content_id=publication.content_id,
                                               revision=publication.revision))
    if stalled:
        deps.relay.wake()
        log.warning("re-sent %d publish requests queued for more than %d s", len(stalled), stall.seconds)
    return len(stalled)


async def resend_stalled_deliveries(deps: Deps) -> int:
    """Re-send `notify.deliver` for deliveries not finished and not attempted for `stall_seconds` (more than
    the longest retry delay plus a timeout): their message is gone when the last resort could not mark them
    failed (the database was away when the retries ran out). A copy of a message still queued (the notify
    consumer stopped) or in flight sends nothing twice: the delivery is locked, or already done."""
    stall = timedelta(seconds=deps.settings.stall_seconds)
    quiet_since = func.greatest(NotificationDelivery.created_at, NotificationDelivery.last_attempt_at,
                                NotificationDelivery.resent_at)
    async with deps.sessions() as session, session.begin():
        stalled = (await session.execute(
            select(NotificationDelivery, Notification.event_id).join(Notification)
            .where(NotificationDelivery.status.in_(("queued", "retrying")), quiet_since < func.now() - stall)
            .with_for_update(of=NotificationDelivery, skip_locked=True).limit(1000))).all()
        for delivery, event_id in stalled:
            delivery.resent_at = func.now()
            add_events(session, DeliverNotification(delivery_id=delivery.id, channel_id=delivery.channel_id,
                                                    notification_event_id=event_id))
    if stalled:
        deps.relay.wake()
        log.warning("re-sent %d notification deliveries waiting for more than %d s", len(stalled), stall.seconds)
    return len(stalled)


async def watch_forever(deps: Deps) -> None:
    """One pass every `watchdog_interval_seconds`; a failed pass is logged and retried."""
    while True:
        await asyncio.sleep(deps.settings.watchdog_interval_seconds)
        try:
            await reissue_expired_batches(deps)
            await fail_stale_runs(deps)
            await nudge_stalled_runs(deps)
            await resend_stalled_publications(deps)
            await resend_stalled_deliveries(deps)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("watchdog pass failed; will retry")
