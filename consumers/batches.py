"""Planning a stage into batches, claiming a batch, and finishing it exactly once.

The batch row is the unit of idempotency. A batch is claimed only while pending (or its
lease has run out) and its run is `running`; the AI call happens outside any transaction;
then one transaction writes the outputs, the credit charge, the batch's `done` state, the
stage counters and, for the stage's last batch, the stage result and `stage.N.completed`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from consumers.deps import BatchContext, Deps, StageWork
from shared.automation_logger import RunRef
from shared.credits import InsufficientCredits, charge
from shared.events import ProcessBatch, RunStateChanged, StageCompleted
from shared.messaging import PoisonMessage
from shared.models import AutomationConfig, AutomationRun, RunStage, Site, StageBatch
from shared.outbox import add_events

log = logging.getLogger("automation.batches")


def now() -> datetime:
    return datetime.now(UTC)


async def relaxed_commit(session: AsyncSession) -> None:
    """Skip the fsync wait for a transaction whose loss is harmless: losing a claim only
    hands the batch out again, and the next synchronous commit flushes it anyway."""
    await session.execute(text("SET LOCAL synchronous_commit = off"))


@dataclass(frozen=True)
class Claim:
    batch_id: int
    token: str
    item_ids: list[int]
    ctx: BatchContext


async def lock_run(session: AsyncSession, run_id: str) -> tuple[AutomationRun, Site]:
    """The run (row-locked) and its site; an unknown run id is a poison message."""
    row = (await session.execute(
        select(AutomationRun, Site).join(Site, Site.id == AutomationRun.site_id)
        .where(AutomationRun.run_id == run_id).with_for_update(of=AutomationRun)
    )).first()
    if row is None:
        raise PoisonMessage(f"unknown run {run_id}")
    return row[0], row[1]


def reclaimable(at: datetime) -> Any:
    """Batches a planner may (re-)emit: pending, or claimed by a consumer whose lease ran out."""
    return or_(StageBatch.status == "pending",
               (StageBatch.status == "claimed") & (StageBatch.lease_expires_at < at))


async def plan_stage(deps: Deps, run_id: str, work: StageWork) -> None:
    """Split the stage's eligible items into batches; asked again, re-emit the open batches."""
    stage = work.number
    async with deps.sessions() as session, session.begin():
        run, site = await lock_run(session, run_id)
        ref = RunRef.of(run, site.account_id)
        if run.status != "running":
            log.info("run %s is %s: stage %d not planned now", run_id, run.status, stage)
            return
        existing = await session.get(RunStage, (run.id, stage))
        if existing is not None:
            if existing.status == "completed":
                return
            open_ids = (await session.scalars(
                select(StageBatch.id).where(StageBatch.run_id == run.id, StageBatch.stage == stage,
                                            reclaimable(now())).order_by(StageBatch.seq))).all()
            add_events(session, *(ProcessBatch.for_stage(run_id, stage, bid) for bid in open_ids))
            deps.logger.log_stage_progress(session, ref, stage,
                                           f"re-requested: {len(open_ids)} open batches emitted again")
        else:
            config = await session.scalar(select(AutomationConfig).where(AutomationConfig.site_id == site.id))
            size = config.batch_size(stage) if config else 1
            item_ids = list((await session.scalars(work.eligible_ids(site.id))).all())
            chunks = [item_ids[i:i + size] for i in range(0, len(item_ids), size)]
            stage_row = RunStage(run_id=run.id, stage=stage, status="planned", batches_total=len(chunks),
                                 batches_done=0, items_in=len(item_ids), items_out=0, credits=0, ai_calls=0)
            session.add(stage_row)
            run.current_stage = stage
            run.last_progress_at = now()
            deps.logger.log_stage_start(
                session, ref, stage, f"{len(item_ids)} {work.input_name} in {len(chunks)} batches of up to {size}")
            if chunks:
                batch_ids = (await session.scalars(
                    insert(StageBatch).returning(StageBatch.id),
                    [{"run_id": run.id, "stage": stage, "seq": seq, "item_ids": chunk, "status": "pending",
                      "attempts": 0, "items_out": 0, "credits": 0} for seq, chunk in enumerate(chunks)],
                )).all()
                add_events(session, *(ProcessBatch.for_stage(run_id, stage, bid) for bid in batch_ids))
            else:
                await session.flush()
                await complete_stage(deps, session, ref, stage_row, work)
    deps.relay.wake()


async def complete_stage(deps: Deps, session: AsyncSession, run: RunRef, stage_row: RunStage,
                         work: StageWork) -> None:
    """Record the stage result and announce `stage.N.completed` (in the caller's transaction)."""
    stage = stage_row.stage
    result = {
        "input": work.input_name, "output": work.output_name,
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
        session, run, stage, f"{result['items_in']} {work.input_name} in, {result['items_out']} "
                             f"{work.output_name} out, {result['credits']} credits, {result['batches']} batches")
    add_events(session, StageCompleted.for_stage(run.run_id, stage, result))


CLAIM = text("""
    UPDATE stage_batches AS b
       SET status = 'claimed', claim_token = :token, claimed_by = :worker,
           lease_expires_at = now() + make_interval(secs => :lease), attempts = b.attempts + 1
      FROM automation_runs AS r, sites AS s
     WHERE b.id = :batch_id AND b.stage = :stage AND r.id = b.run_id AND r.run_id = :run_id
       AND s.id = r.site_id AND r.status = 'running'
       AND (b.status = 'pending' OR (b.status = 'claimed' AND b.lease_expires_at < now()))
 RETURNING b.item_ids, b.run_id AS run_pk, r.site_id, s.account_id
""")


async def claim_batch(deps: Deps, command: ProcessBatch) -> Claim | None:
    """Reserve the batch for this consumer, or None when there is nothing to do (done, held by a
    live claim, or its run is not running). One statement: concurrent claimers serialize on the row."""
    token = uuid.uuid4().hex
    async with deps.sessions() as session, session.begin():
        await relaxed_commit(session)
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
    return Claim(batch_id=command.batch_id, token=token, item_ids=list(row.item_ids), ctx=ctx)


async def release_claim(deps: Deps, claim: Claim, error: str) -> None:
    """Hand a batch back (after a failed attempt) so its retry can claim it at once."""
    async with deps.sessions() as session, session.begin():
        await session.execute(
            update(StageBatch).where(StageBatch.id == claim.batch_id, StageBatch.claim_token == claim.token)
            .values(status="pending", claim_token=None, lease_expires_at=None, error=error[:2000]))


async def finish_batch(deps: Deps, claim: Claim, work: StageWork, inputs: Any, outputs: Any) -> bool:
    """The one transaction that makes a batch's effects real; False if the claim was lost.

    Rows are locked in one order everywhere (batch, outputs, account, run stage, run) so
    concurrent batches of a run queue up instead of deadlocking.
    """
    ctx, run = claim.ctx, claim.ctx.run
    async with deps.sessions() as session, session.begin():
        seq = await session.scalar(
            select(StageBatch.seq).where(StageBatch.id == claim.batch_id, StageBatch.status == "claimed",
                                         StageBatch.claim_token == claim.token).with_for_update())
        if seq is None:
            log.warning("batch %s: claim lost before finishing; outputs discarded", claim.batch_id)
            return False
        written = await work.write(session, ctx, inputs, outputs) if inputs else None
        items_out = written.items_out if written else 0
        credits = written.credits if written else 0
        await charge(session, account_id=run.account_id, amount=credits, run_pk=run.pk, batch_id=claim.batch_id,
                     stage=ctx.stage)
        await session.execute(
            update(StageBatch).where(StageBatch.id == claim.batch_id)
            .values(status="done", items_out=items_out, credits=credits, completed_at=now(), error=None))
        stage_row = (await session.scalars(
            update(RunStage).where(RunStage.run_id == run.pk, RunStage.stage == ctx.stage)
            .values(batches_done=RunStage.batches_done + 1, items_out=RunStage.items_out + items_out,
                    credits=RunStage.credits + credits, ai_calls=RunStage.ai_calls + (1 if inputs else 0))
            .returning(RunStage).execution_options(populate_existing=True))).one()
        await session.execute(
            update(AutomationRun).where(AutomationRun.id == run.pk)
            .values(total_credits_used=AutomationRun.total_credits_used + credits, last_progress_at=now())
            .execution_options(synchronize_session=False))
        deps.logger.log_stage_progress(
            session, run, ctx.stage, f"batch {seq + 1}/{stage_row.batches_total} done: {len(claim.item_ids)} "
                                     f"{work.input_name} -> {items_out} {work.output_name}, {credits} credits")
        if stage_row.batches_done == stage_row.batches_total:
            await complete_stage(deps, session, run, stage_row, work)
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
                    .values(lease_expires_at=now() + timedelta(seconds=lease)))
            if renewed.rowcount == 0:  # type: ignore[attr-defined]
                return
        except Exception:  # database away for a moment: the next renewal tries again
            log.warning("could not renew the lease of batch %s", claim.batch_id, exc_info=True)


async def process_batch(deps: Deps, command: ProcessBatch, work: StageWork) -> None:
    """Claim, load, call the AI, finish. Errors hand the batch back and go to the retry path."""
    claim = await claim_batch(deps, command)
    if claim is None:
        return
    heartbeat = asyncio.create_task(keep_lease(deps, claim))
    try:
        async with deps.sessions() as session:
            inputs = await work.load(session, claim.ctx.site_id, claim.item_ids)
        outputs = await work.generate(deps, inputs) if inputs else None
        await finish_batch(deps, claim, work, inputs, outputs)
    except InsufficientCredits as error:
        await pause_for_credits(deps, claim, error)
    except Exception as error:
        await release_claim(deps, claim, f"{type(error).__name__}: {error}")
        raise
    finally:
        heartbeat.cancel()
