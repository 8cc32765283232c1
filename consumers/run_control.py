"""Run control: start (per-site lock, credit check), pause and resume.

The lock is the database's: a partial unique index allows one running-or-paused run per
site, so even 50 simultaneous starts create one run. Every refusal is announced as a
`run.rejected` event and logged with its reason.
"""

from __future__ import annotations

import logging
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from consumers.deps import Deps
from consumers.planning import lock_run, now
from shared.accounts import get_or_create_config
from shared.automation_logger import RESUMED_FROM, RunRef
from shared.credits import estimate_for_site
from shared.events import PauseRun, RequestStage, ResumeRun, RunRejected, RunStateChanged, StartRun
from shared.models import ACTIVE_RUN_STATUSES, Account, AutomationRun, RunRejection, Site
from shared.outbox import add_events
from shared.start_policy import start_refusal

log = logging.getLogger("automation.control")


def new_run_id() -> str:
    return f"run_{now():%Y%m%d_%H%M%S}_{secrets.token_hex(3)}"


def _reject(session: AsyncSession, command: StartRun, reason: str, **details: object) -> RunRejected:
    """Record the refusal and its `run.rejected` event in the caller's transaction: a second
    session would need a second pooled connection while this one is held, and concurrent starts
    would then wait on each other's connections."""
    rejected = RunRejected(site_id=command.site_id, reason=reason, idempotency_key=command.idempotency_key,
                           **details)
    add_events(session, rejected)
    session.add(RunRejection(site_id=command.site_id, idempotency_key=command.idempotency_key, reason=reason,
                             details={k: v for k, v in details.items() if v is not None}))
    return rejected


async def start_run(deps: Deps, command: StartRun) -> AutomationRun | RunRejected | None:
    """Create the run and request stage 1, or refuse with the reason (None: duplicate command)."""
    async with deps.sessions() as session:
        outcome = await _start_or_reject(deps, session, command)
    if isinstance(outcome, RunRejected):
        log.warning("run.start for site %s rejected: %s", command.site_id, outcome.reason)
    elif outcome is not None:
        log.info("run %s started for site %s", outcome.run_id, outcome.site_id)
    deps.relay.wake()
    return outcome


async def _start_or_reject(deps: Deps, session: AsyncSession, command: StartRun
                           ) -> AutomationRun | RunRejected | None:
    async with session.begin():
        site = await session.get(Site, command.site_id)
        if site is None:
            return _reject(session, command, f"unknown site {command.site_id}")
        account = await session.get(Account, site.account_id)
        assert account is not None
        if command.idempotency_key and await session.scalar(select(AutomationRun.run_id).where(
                AutomationRun.site_id == site.id, AutomationRun.idempotency_key == command.idempotency_key)):
            log.info("run.start %s for site %s already handled", command.idempotency_key, site.id)
            return None
        config = await get_or_create_config(session, site.id)
        if command.trigger == "scheduled" and not config.is_enabled:
            return _reject(session, command, "automation is disabled for this site")
        refusal = await start_refusal(session, site.id, account.credits_balance, deps.settings.credit_buffer)
        if refusal is not None:
            return _reject(session, command, refusal.reason, **refusal.details)
        estimate = await estimate_for_site(session, site.id)
    try:
        async with session.begin():
            run = AutomationRun(run_id=new_run_id(), site_id=site.id, status="running", current_stage=1,
                                trigger=command.trigger, requested_by=command.requested_by,
                                idempotency_key=command.idempotency_key, estimated_credits=estimate.total,
                                total_credits_used=0)
            session.add(run)
            await session.flush()
            config = await get_or_create_config(session, site.id)
            config.last_run_at = run.started_at
            deps.logger.start_run(session, RunRef.of(run, site.account_id), run.trigger,
                                  f"estimate {estimate.total} credits, balance {account.credits_balance}")
            add_events(session, RequestStage.for_stage(run.run_id, 1),
                       RunStateChanged(type="run.started", run_id=run.run_id, site_id=site.id, status="running"))
        return run
    except IntegrityError:
        # Lost the race for the site's lock (or the idempotency key) to a concurrent start.
        async with session.begin():
            active = await session.scalar(select(AutomationRun.run_id).where(
                AutomationRun.site_id == command.site_id, AutomationRun.status.in_(ACTIVE_RUN_STATUSES)))
            return _reject(session, command, "site has an active run", active_run_id=active)


async def pause_run(deps: Deps, command: PauseRun) -> str:
    """Pause a running run; returns the status it ends in (an unknown run is a poison message)."""
    async with deps.sessions() as session, session.begin():
        run, site = await lock_run(session, command.run_id)
        if run.status != "running":
            log.info("pause of %s ignored: run is %s", run.run_id, run.status)
            return run.status
        run.status = "paused"
        run.pause_reason = command.reason
        deps.logger.run_event(session, RunRef.of(run, site.account_id), f"Run paused at stage {run.current_stage}: "
                                                               f"{command.reason}")
        add_events(session, RunStateChanged(type="run.paused", run_id=run.run_id, site_id=site.id,
                                            status="paused", reason=command.reason))
    deps.relay.wake()
    return "paused"


async def resume_run(deps: Deps, command: ResumeRun) -> str:
    """Resume a paused or failed run at its current stage; planning re-emits its open batches."""
    async with deps.sessions() as session:
        try:
            async with session.begin():
                run, site = await lock_run(session, command.run_id)
                if run.status not in ("paused", "failed"):
                    log.info("resume of %s ignored: run is %s", run.run_id, run.status)
                    return run.status
                previous = run.status
                run.status = "running"
                run.pause_reason = None
                run.error_message = None
                run.last_progress_at = now()
                deps.logger.run_event(session, RunRef.of(run, site.account_id),
                                      RESUMED_FROM.format(state=previous) + f" at stage {run.current_stage}")
                add_events(session, RequestStage.for_stage(run.run_id, run.current_stage),
                           RunStateChanged(type="run.resumed", run_id=run.run_id, site_id=site.id,
                                           status="running"))
        except IntegrityError:
            log.warning("resume of %s refused: the site has another active run", command.run_id)
            return "failed"
    deps.relay.wake()
    return "running"


async def fail_run_for_message(deps: Deps, payload: dict[str, object], reason: str) -> None:
    """A message used up its retries: fail its run with the stage, batch and cause, releasing the lock."""
    run_id = payload.get("run_id")
    kind = str(payload.get("type", "?"))
    if not isinstance(run_id, str):
        log.error("%s gave up without a run to fail: %s", kind, reason)
        return
    stage = int(kind.split(".")[1]) if kind.startswith("stage.") else 0
    where = f"stage {stage} batch {payload['batch_id']}" if "batch_id" in payload else f"{kind}"
    message = f"{where} failed: {reason}"
    async with deps.sessions() as session, session.begin():
        run, site = await lock_run(session, run_id)
        if run.status not in ACTIVE_RUN_STATUSES:
            return
        run.status = "failed"
        run.error_message = message[:4000]
        run.completed_at = now()
        if stage:
            deps.logger.log_stage_error(session, RunRef.of(run, site.account_id), stage, message)
        deps.logger.run_event(session, RunRef.of(run, site.account_id), f"Run failed: {message}", level="ERROR")
        add_events(session, RunStateChanged(type="run.failed", run_id=run.run_id, site_id=site.id,
                                            status="failed", reason=message[:500]))
    deps.relay.wake()


async def log_retry(deps: Deps, payload: dict[str, object], attempt: int, delay: float, reason: str) -> None:
    """Write a failed attempt and its backoff into the run's log, so editors see it."""
    run_id, kind = payload.get("run_id"), str(payload.get("type", ""))
    if not isinstance(run_id, str) or not kind.startswith("stage."):
        return
    stage = int(kind.split(".")[1])
    async with deps.sessions() as session, session.begin():
        row = (await session.execute(select(AutomationRun, Site.account_id).join(Site, Site.id == AutomationRun.site_id)
                                     .where(AutomationRun.run_id == run_id))).first()
        if row is None:
            return
        where = f"batch {payload['batch_id']}" if "batch_id" in payload else "planning"
        deps.logger.log_stage_error(session, RunRef.of(row[0], row[1]), stage,
                                    f"{where} attempt {attempt} failed ({reason}); retrying in {delay:.1f}s")
