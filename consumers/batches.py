"""Planning a stage into batches, claiming a batch, and finishing it exactly once.

The batch row is the unit of idempotency. A batch is claimed only while pending (or its
lease has run out) and its run is `running`; the AI call happens outside any transaction;
then one transaction writes the outputs, the credit charge, the batch's `done` state, the
stage counters and, for the stage's last batch, the stage result and `stage.N.completed`.

Fairness: a run keeps at most `batch_window` of a stage's batch messages in the queue. Each
finished batch emits the next one in the same transaction, so runs of several sites sharing
a stage's queue take turns instead of one big run's backlog going first. A `sequential` stage
(stage 1) keeps a window of one: each batch sees what the batches before it wrote, so its result
is the same whatever the consumers' concurrency.

Every plan trigger is checked against the run's state (`check_trigger`): a stage is planned only
when the stage before it completed, and a command naming another state is poison.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, cast, func, insert, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from consumers.deps import BatchContext, Deps, StageWork
from shared.automation_logger import RunRef
from shared.credits import DEBIT_CTES, InsufficientCredits, charge_params, insufficient
from shared.db import analyze_if_stale, autocommit_session
from shared.events import ProcessBatch, RequestStage, RunStateChanged, StageCompleted, planned_stage
from shared.messaging import PoisonMessage
from shared.metrics import count_ai_calls
from shared.models import AutomationConfig, AutomationRun, RunStage, Site, StageBatch
from shared.outbox import add_events
from shared.seed_queries import eligible_ids

log = logging.getLogger("automation.batches")


def now() -> datetime:
    return datetime.now(UTC)


async def relaxed_commit(session: AsyncSession) -> None:
    """Skip the fsync wait for a transaction whose loss is harmless: losing a claim only
    hands the batch out again, and the next synchronous commit flushes it anyway."""
    await session.execute(text("SET LOCAL synchronous_commit = off"))


class ClaimLost(Exception):
    """The batch was handed to another consumer (our lease ran out) before we finished it."""


@dataclass(frozen=True)
class StageTotals:
    """A stage's counters at the moment its last batch finished."""

    stage: int
    batches_total: int
    items_in: int
    items_out: int
    credits: int
    ai_calls: int


@dataclass(frozen=True)
class Claim:
    batch_id: int
    token: str
    item_ids: list[int]
    ctx: BatchContext
    seq: int
    batches_total: int  # of its stage, for the progress line


async def lock_run(session: AsyncSession, run_id: str) -> tuple[AutomationRun, Site]:
    """The run (row-locked) and its site; an unknown run id is a poison message."""
    row = (await session.execute(
        select(AutomationRun, Site).join(Site, Site.id == AutomationRun.site_id)
        .where(AutomationRun.run_id == run_id).with_for_update(of=AutomationRun)
    )).first()
    if row is None:
        raise PoisonMessage(f"unknown run {run_id}")
    return row[0], row[1]


def reclaimable() -> ColumnElement[bool]:
    """Batches a planner may (re-)emit: pending, or claimed by a consumer whose lease ran out.
    Leases are set and compared on the database's clock only, never a host's."""
    return or_(StageBatch.status == "pending",
               (StageBatch.status == "claimed") & (StageBatch.lease_expires_at < func.now()))


async def check_trigger(session: AsyncSession, run: AutomationRun, trigger: RequestStage | StageCompleted) -> bool:
    """Whether `trigger` may plan its stage now (True), is a stale duplicate that changes nothing
    (False), or contradicts the run's state (PoisonMessage, dead-lettered with the reason).

    `stage.N.requested` (run start, resume, the watchdog) names the run's current stage; a request
    for an earlier stage that has completed is a late duplicate. `stage.N.completed` plans stage
    N+1 only if stage N really completed, and only once. Checked before the run's status, so a
    forged command is dead-lettered whether the run is running, paused or over."""
    stage = planned_stage(trigger)
    completed = set((await session.scalars(select(RunStage.stage).where(
        RunStage.run_id == run.id, RunStage.status == "completed"))).all())
    if isinstance(trigger, RequestStage):
        if stage == run.current_stage:
            return run.status == "running"
        if stage < run.current_stage and stage in completed:
            log.info("%s for run %s: stage %d completed already", trigger.type, run.run_id, stage)
            return False
        raise PoisonMessage(f"{trigger.type} contradicts run {run.run_id}: it is at stage {run.current_stage}"
                            f" (completed: {sorted(completed) or 'none'})")
    if trigger.stage not in completed:
        raise PoisonMessage(f"{trigger.type} contradicts run {run.run_id}: stage {trigger.stage} has not completed"
                            f" (it is at stage {run.current_stage})")
    planned = await session.get(RunStage, (run.id, stage))
    if planned is not None:
        log.info("%s for run %s: stage %d is planned already", trigger.type, run.run_id, stage)
        return False
    return run.status == "running"


EMIT_WINDOW = text("""
    UPDATE stage_batches SET emitted_at = now()
     WHERE id IN (SELECT id FROM stage_batches
                   WHERE run_id = :run_pk AND stage = :stage AND emitted_at IS NULL AND status = 'pending'
                   ORDER BY seq LIMIT :count FOR UPDATE SKIP LOCKED)
 RETURNING id
""")


async def emit_window(session: AsyncSession, *, run_pk: int, run_id: str, stage: int, count: int | None) -> int:
    """Queue the messages of the next `count` unemitted batches (all when None); returns how many.
    One prepared statement: it runs after every batch, so it is not rebuilt each time."""
    if count is not None and count <= 0:
        return 0
    emitted = (await session.scalars(EMIT_WINDOW, {"run_pk": run_pk, "stage": stage, "count": count})).all()
    add_events(session, *(ProcessBatch.for_stage(run_id, stage, bid) for bid in sorted(emitted)))
    return len(emitted)


def window_size(deps: Deps, work: StageWork) -> int | None:
    """Batch messages a run keeps queued per stage; None means no window (emit everything)."""
    if work.sequential:
        return 1
    return deps.settings.batch_window or None


async def insert_batches(session: AsyncSession, run_pk: int, work: StageWork, site_id: int, size: int
                         ) -> tuple[int, int]:
    """Chunk the stage's eligible ids into batch rows inside the database (no id list in
    memory, however big the stage); returns (batches, items)."""
    eligible = eligible_ids(work.stage.number, site_id).subquery()
    numbered = select(eligible.c.id, (func.row_number().over(order_by=eligible.c.id) - 1).label("n")).subquery()
    seq = cast(numbered.c.n // size, Integer)
    chunks = (select(literal(run_pk), literal(work.stage.number), seq,
                     cast(func.array_agg(aggregate_order_by(numbered.c.id, numbered.c.id)), ARRAY(Integer)),
                     literal("pending"), literal(0), literal(0), literal(0))
              .group_by(seq))
    inserted = (insert(StageBatch)
                .from_select(["run_id", "stage", "seq", "item_ids", "status", "attempts", "items_out", "credits"],
                             chunks)
                .returning(func.cardinality(StageBatch.item_ids).label("item_count")).cte("inserted"))
    batches, items = (await session.execute(
        select(func.count(), func.coalesce(func.sum(inserted.c.item_count), 0)))).one()
    return int(batches), int(items)


def input_table(work: StageWork) -> str:
    """The table a stage's items live in (that of the ids its seed query selects)."""
    return str(eligible_ids(work.stage.number, 0).selected_columns[0].table.name)  # type: ignore[attr-defined]


async def plan_stage(deps: Deps, trigger: RequestStage | StageCompleted, work: StageWork) -> None:
    """Split the stage's eligible items into batches and queue the first window of them;
    asked again (resume, recovery), re-emit the open batches and top the window up."""
    stage = work.stage.number
    if planned_stage(trigger) != stage:
        raise PoisonMessage(f"{trigger.type} does not plan stage {stage}")
    run_id = trigger.run_id
    window = window_size(deps, work)
    table = input_table(work)
    if await analyze_if_stale(deps.sessions, table):
        log.info("stage %d: statistics of %s refreshed before planning", stage, table)
    async with deps.sessions() as session, session.begin():
        run, site = await lock_run(session, run_id)
        ref = RunRef.of(run, site.account_id)
        if not await check_trigger(session, run, trigger):
            log.info("run %s is %s at stage %d: %s changes nothing", run_id, run.status, run.current_stage,
                     trigger.type)
            return
        existing = await session.get(RunStage, (run.id, stage))
        if existing is not None:
            if existing.status == "completed":
                return
            open_ids = (await session.scalars(
                select(StageBatch.id).where(StageBatch.run_id == run.id, StageBatch.stage == stage,
                                            StageBatch.emitted_at.is_not(None), reclaimable())
                .order_by(StageBatch.seq))).all()
            add_events(session, *(ProcessBatch.for_stage(run_id, stage, bid) for bid in open_ids))
            topped_up = await emit_window(session, run_pk=run.id, run_id=run_id, stage=stage,
                                          count=None if window is None else window - len(open_ids))
            deps.logger.log_stage_progress(
                session, ref, stage, f"re-requested: {len(open_ids)} open batches emitted again, "
                                     f"{topped_up} more queued")
        else:
            config = await session.scalar(select(AutomationConfig).where(AutomationConfig.site_id == site.id))
            size = config.batch_size(stage) if config else 1
            batches, items = await insert_batches(session, run.id, work, site.id, size)
            stage_row = RunStage(run_id=run.id, stage=stage, status="planned", batches_total=batches,
                                 batches_done=0, items_in=items, items_out=0, credits=0, ai_calls=0)
            session.add(stage_row)
            run.current_stage = stage
            run.last_progress_at = now()
            deps.logger.log_stage_start(
                session, ref, stage, f"{items} {work.stage.input_name} in {batches} batches of up to {size}")
            await session.flush()
            if batches:
                await emit_window(session, run_pk=run.id, run_id=run_id, stage=stage, count=window)
            else:
                await complete_stage(deps, session, ref, StageTotals(stage, 0, items, 0, 0, 0), work)
    deps.relay.wake()


async def complete_stage(deps: Deps, session: AsyncSession, run: RunRef, stage_row: StageTotals,
                         work: StageWork) -> None:
    """Record the stage result and announce `stage.N.completed` (in the caller's transaction)."""
    stage = stage_row.stage
    result = {
        "input": work.stage.input_name, "output": work.stage.output_name,
        "items_in": stage_row.items_in, "items_out": stage_row.items_out,
        "batches": stage_row.batches_total, "credits": stage_row.credits, "ai_calls": stage_row.ai_calls,
    }
    finished = now()
    await session.execute(update(RunStage).where(RunStage.run_id == run.pk, RunStage.stage == stage)
                          .values(status="completed", completed_at=finished)
                          .execution_options(synchronize_session=False))
    await session.execute(update(AutomationRun).where(AutomationRun.id == run.pk)
                          .values({f"stage_{stage}_result": result, "current_stage": min(stage + 1, 7),
                                   "last_progress_at": finished})
                          .execution_options(synchronize_session=False))
    deps.logger.log_stage_complete(
        session, run, stage, f"{result['items_in']} {work.stage.input_name} in, {result['items_out']} "
                             f"{work.stage.output_name} out, {result['credits']} credits, {result['batches']} batches")
    add_events(session, StageCompleted.for_stage(run.run_id, stage, result))


CLAIM = text("""
    WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
    UPDATE stage_batches AS b
       SET status = 'claimed', claim_token = :token, claimed_by = :worker,
           lease_expires_at = now() + make_interval(secs => :lease), attempts = b.attempts + 1
      FROM automation_runs AS r, sites AS s, run_stages AS rs, relaxed
     WHERE b.id = :batch_id AND b.stage = :stage AND r.id = b.run_id AND r.run_id = :run_id
       AND s.id = r.site_id AND r.status = 'running' AND rs.run_id = b.run_id AND rs.stage = b.stage
       AND (b.status = 'pending' OR (b.status = 'claimed' AND b.lease_expires_at < now()))
 RETURNING b.item_ids, b.run_id AS run_pk, r.site_id, s.account_id, b.seq, rs.batches_total
""")


async def claim_batch(deps: Deps, command: ProcessBatch, session: AsyncSession) -> Claim | None:
    """Reserve the batch for this consumer, or None when there is nothing to do (done, held by a
    live claim, or its run is not running). One statement in an autocommit `session`, without
    waiting for fsync (a lost claim only hands the batch out again): concurrent claimers
    serialize on the row."""
    token = uuid.uuid4().hex
    row = (await session.execute(CLAIM, {
        "token": token, "worker": deps.worker_id, "lease": deps.settings.batch_lease_seconds,
        "batch_id": command.batch_id, "stage": command.stage, "run_id": command.run_id})).first()
    if row is None:
        known = (await session.execute(
            select(StageBatch.stage, AutomationRun.run_id)
            .join(AutomationRun, AutomationRun.id == StageBatch.run_id)
            .where(StageBatch.id == command.batch_id))).first()
        if known is None or tuple(known) != (command.stage, command.run_id):
            raise PoisonMessage(f"batch {command.batch_id} is not stage {command.stage} of run {command.run_id}")
        return None
    run = RunRef(pk=row.run_pk, run_id=command.run_id, site_id=row.site_id, account_id=row.account_id)
    ctx = BatchContext(run=run, batch_id=command.batch_id, stage=command.stage, settings=deps.settings)
    return Claim(batch_id=command.batch_id, token=token, item_ids=list(row.item_ids), ctx=ctx, seq=row.seq,
                 batches_total=row.batches_total)


async def release_claim(deps: Deps, claim: Claim, error: str) -> None:
    """Hand a batch back (after a failed attempt) so its retry can claim it at once."""
    async with deps.sessions() as session, session.begin():
        await session.execute(
            update(StageBatch).where(StageBatch.id == claim.batch_id, StageBatch.claim_token == claim.token)
            .values(status="pending", claim_token=None, lease_expires_at=None, error=error[:2000]))


FINISH = text(f"""
    WITH {DEBIT_CTES}, paid AS (
        SELECT WHERE CAST(:amount AS integer) = 0 OR EXISTS (SELECT FROM debit)
    ), batch AS (
        UPDATE stage_batches SET status = 'done', items_out = :items_out, credits = :amount,
               completed_at = now(), error = NULL
          FROM paid
         WHERE id = :batch_id AND status = 'claimed' AND claim_token = :token
     RETURNING run_id, stage
    ), counters AS (
        UPDATE run_stages AS rs
           SET batches_done = rs.batches_done + 1, items_out = rs.items_out + :items_out,
               credits = rs.credits + :amount, ai_calls = rs.ai_calls + :ai_calls
          FROM batch
         WHERE rs.run_id = batch.run_id AND rs.stage = batch.stage
     RETURNING rs.batches_done, rs.batches_total, rs.items_in, rs.items_out, rs.credits, rs.ai_calls
    ), run AS (
        UPDATE automation_runs AS r
           SET total_credits_used = r.total_credits_used + :amount, last_progress_at = now()
          FROM counters
         WHERE r.id = :run_pk
     RETURNING r.id
    )
    SELECT EXISTS (SELECT FROM paid) AS paid, counters.*, (SELECT count(*) FROM run) AS runs
      FROM (SELECT 1) AS one LEFT JOIN counters ON true
""")


async def finish_batch(deps: Deps, claim: Claim, work: StageWork, inputs: Any, outputs: Any, ai_calls: int = 0
                       ) -> bool:
    """The one transaction that makes a batch's effects real; False if the claim was lost.

    Everything that touches only this batch's rows goes first (outputs, the refill of the run's
    window, the log line); then one statement takes the rows every batch of the account and run
    shares (the account's balance, the stage counters, the run) and the commit follows at once,
    so those row locks are held for one statement instead of the whole transaction. The lock
    order is the same everywhere (outputs, account, batch, run stage, run): no deadlocks.
    """
    ctx, run = claim.ctx, claim.ctx.run
    try:
        async with deps.sessions() as session, session.begin():
            written = await work.write(session, ctx, inputs, outputs) if inputs else None
            items_out = written.items_out if written else 0
            credits = written.credits if written else 0
            refilled = await emit_window(session, run_pk=run.pk, run_id=run.run_id, stage=ctx.stage, count=1) \
                if window_size(deps, work) is not None else 0
            spec = work.stage
            deps.logger.log_stage_progress(
                session, run, ctx.stage, f"batch {claim.seq + 1}/{claim.batches_total} done: {len(claim.item_ids)} "
                                         f"{spec.input_name} -> {items_out} {spec.output_name}, {credits} credits")
            await session.flush()
            row = (await session.execute(FINISH, {
                **charge_params(account_id=run.account_id, amount=credits, run_pk=run.pk, batch_id=claim.batch_id,
                                stage=ctx.stage),
                "token": claim.token, "items_out": items_out, "ai_calls": ai_calls,
            })).one()
            if not row.paid:
                raise await insufficient(session, run.account_id, credits)
            if row.batches_done is None:
                raise ClaimLost
            last = row.batches_done == row.batches_total
            if last:
                totals = StageTotals(stage=ctx.stage, batches_total=row.batches_total, items_in=row.items_in,
                                     items_out=row.items_out, credits=row.credits, ai_calls=row.ai_calls)
                await complete_stage(deps, session, run, totals, work)
    except ClaimLost:
        log.warning("batch %s: claim lost before finishing; outputs discarded", claim.batch_id)
        return False
    if refilled or last:
        deps.relay.wake()
    return True


async def pause_for_credits(deps: Deps, claim: Claim, error: InsufficientCredits) -> None:
    """Credits ran out mid-run: hand the batch back and pause the run with the reason."""
    async with deps.sessions() as session, session.begin():
        await session.execute(
            update(StageBatch).where(StageBatch.id == claim.batch_id, StageBatch.claim_token == claim.token)
            .values(status="pending", claim_token=None, lease_expires_at=None, error=str(error)))
        run, site = await lock_run(session, claim.ctx.run.run_id)
        if run.status == "running":
            run.status = "paused"
            run.pause_reason = "insufficient credits"
            deps.logger.run_event(session, claim.ctx.run, f"Run paused: insufficient credits ({error})",
                                  level="WARNING")
            add_events(session, RunStateChanged(type="run.paused", run_id=run.run_id, site_id=site.id,
                                                status="paused", reason="insufficient credits"))
    deps.relay.wake()


async def keep_lease(deps: Deps, claim: Claim) -> None:
    """Renew the claim's lease while the batch is worked on, so a short lease is safe for long
    AI calls and a dead consumer's batch is handed out again soon (by the watchdog)."""
    lease = deps.settings.batch_lease_seconds
    while True:
        await asyncio.sleep(lease / 3)
        try:
            async with deps.sessions() as session, session.begin():
                await relaxed_commit(session)
                renewed = await session.execute(
                    update(StageBatch).where(StageBatch.id == claim.batch_id, StageBatch.claim_token == claim.token,
                                             StageBatch.status == "claimed")
                    .values(lease_expires_at=func.now() + timedelta(seconds=lease)))
            if renewed.rowcount == 0:  # type: ignore[attr-defined]
                return
        except Exception:  # database away for a moment: the next renewal tries again
            log.warning("could not renew the lease of batch %s", claim.batch_id, exc_info=True)


async def process_batch(deps: Deps, command: ProcessBatch, work: StageWork) -> None:
    """Claim, load, call the AI, finish. Errors hand the batch back and go to the retry path."""
    claim: Claim | None = None
    try:
        async with autocommit_session(deps.sessions) as session:
            claim = await claim_batch(deps, command, session)
            if claim is None:
                return
            inputs = await work.load(session, claim.ctx.site_id, claim.item_ids)
    except Exception as error:
        # Released outside the block above: a handler never holds two pooled connections at once.
        if claim is not None:
            await release_claim(deps, claim, f"{type(error).__name__}: {error}")
        raise
    heartbeat = asyncio.create_task(keep_lease(deps, claim))
    try:
        with count_ai_calls() as calls:
            outputs = await work.generate(deps, inputs) if inputs else None
        await finish_batch(deps, claim, work, inputs, outputs, ai_calls=calls.count)
    except InsufficientCredits as error:
        await pause_for_credits(deps, claim, error)
    except Exception as error:
        await release_claim(deps, claim, f"{type(error).__name__}: {error}")
        raise
    finally:
        heartbeat.cancel()
