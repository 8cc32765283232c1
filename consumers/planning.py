"""Planning a stage into batches, the run's state machine, and a stage's completion.

A stage is planned once per run: its eligible items are chunked into batch rows inside the
database and the first window of them is queued. Asked again (resume, the watchdog), planning
re-emits the open batches and tops the window up instead of planning twice.

Fairness: a run keeps at most `batch_window` of a stage's batch messages in the queue. Each
finish tops the window up in the same transaction (`consumers.batches`), so runs of several sites
sharing a stage's queue take turns instead of one big run's backlog going first. The window grows to
the run's share of what the stage's consumers hold at once (`Deps.consumer_slots`: their prefetch over
every replica, split evenly between the runs running): a run alone fills every consumer, and the last
runs of a crowd are not held back by it either. When another run starts, the runs had no more out than
the consumers hold, so nothing waits in the queue ahead of the newcomer's first batch, and their
finishes queue nothing until each is back within its new share. A run bigger than its
stage's `sequential_above` (stage 1 beyond what its consolidation takes) keeps a window of one: each
batch sees what the batches before it wrote, so its result is the same whatever the consumers'
concurrency.

Streaming (`stream_stages`, on by default): planning stage 2 also opens stages 3-6 as *streamed*
stages, each with the batches of what is already waiting for it. From then on every batch that
finishes appends the items it made as batches of the next stage, in its own transaction
(`consumers.batches`, `HAND_ON`), so an idea becomes a task, an article, prompts and images, and
reaches review, while the rest of the run is still being worked on. A streamed stage completes when
the stage before it has completed and its own batches are done (`complete_ready_stages`); then
`stage.N.completed` fires as it always did. Every batch finish of a streamed run takes the run's
row lock first, so those finishes see each other's work and never deadlock.

Every plan trigger is checked against the run's state (`check_trigger`): a stage is planned only
when the stage before it completed, and a command naming another state is poison.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Integer, cast, func, insert, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from consumers.deps import Deps, StageWork
from shared.automation_logger import RunRef
from shared.catalogue import BATCH_STAGES, BY_NUMBER, LAST_STAGE
from shared.credits import estimate_for_site
from shared.db import analyze_if_stale
from shared.events import ProcessBatch, RequestStage, RunStateChanged, StageCompleted, planned_stage
from shared.messaging import PoisonMessage
from shared.models import Account, AutomationConfig, AutomationRun, RunStage, Site, StageBatch
from shared.outbox import add_events
from shared.seed_queries import eligible_ids

log = logging.getLogger("automation.planning")
# Planning this stage opens the batch stages after it as streamed stages (with `stream_stages` on): it is
# the first stage planned after stage 1's clusters are final (consolidated).
STREAMS_FROM = 2
STREAMED_STAGES = tuple(s for s in BATCH_STAGES if s > STREAMS_FROM)


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class StageTotals:
    """A stage's counters at the moment its last batch finished."""

    stage: int
    batches_total: int
    items_in: int
    items_out: int
    credits: int
    ai_calls: int


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


def emit_next(count: str) -> str:
    """SQL marking the next `count` (an SQL expression; NULL: all) unemitted batches of the run's stage
    (:run_pk, :stage) emitted. SKIP LOCKED: it never waits for a row lock, so it may run anywhere in a
    transaction's lock order. Shared by EMIT_WINDOW (planning) and the batch finish statement (FINISH in
    consumers/batches.py), which refills the window in the statement that finishes the batch."""
    return f"""
    UPDATE stage_batches SET emitted_at = now()
     WHERE id IN (SELECT id FROM stage_batches
                   WHERE run_id = :run_pk AND stage = :stage AND emitted_at IS NULL AND status = 'pending'
                   ORDER BY seq LIMIT {count} FOR UPDATE SKIP LOCKED)"""


EMIT_WINDOW = text(f"{emit_next(':count')} RETURNING id")

# The window of the run's stage right now: its share of what the stage's consumers hold (:slots split
# evenly between the runs running, which the partial index one_active_run_per_site counts), never less
# than :window; :window where the window never grows (:slots NULL).
WINDOW_NOW = """CASE WHEN CAST(:slots AS integer) IS NULL THEN CAST(:window AS integer)
                     ELSE greatest(CAST(:window AS integer), CAST(:slots AS integer) / greatest(1, (
                          SELECT count(*) FROM automation_runs AS running WHERE running.status = 'running'))) END"""
# How many more of the stage's batches a finish of `finished` (an SQL expression) of them may queue: the
# window now, less those out and not done but the finishing ones (the batches_in_flight index counts
# them); 0 without a window (every batch was queued when the stage was planned).
REFILL = f"""CASE WHEN CAST(:window AS integer) IS NULL THEN 0 ELSE greatest(0, {WINDOW_NOW} - (
                 SELECT count(*) FROM stage_batches AS out
                  WHERE out.run_id = :run_pk AND out.stage = :stage AND out.emitted_at IS NOT NULL
                    AND out.status <> 'done') + {{finished}}) END"""


def process_batch_payload_sql(batch_id: str) -> str:
    """SQL building, for the batch id expression `batch_id`, the JSON payload that
    `ProcessBatch.for_stage(:run_id, stage, id).model_dump_json()` makes, with the routing key in the
    parameter :batch_type (`ProcessBatch` type, `stage.N.batch`) and the run's id in :run_id: a fresh
    `event_id` per message and `occurred_at` in the ISO 8601 form pydantic writes (microseconds, `Z`).
    It lets the finish statement insert the window's next message itself, without a round trip of its
    own (tests/integration/test_batch_window.py checks it validates as `ProcessBatch`)."""
    return f"""jsonb_build_object(
        'event_id', gen_random_uuid(), 'version', 1,
        'occurred_at', to_char(statement_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'type', CAST(:batch_type AS text), 'run_id', CAST(:run_id AS text), 'batch_id', {batch_id})"""


async def emit_window(session: AsyncSession, *, run_pk: int, run_id: str, stage: int, count: int | None) -> int:
    """Queue the messages of the next `count` unemitted batches (all when None); returns how many.
    One prepared statement: it runs after every batch, so it is not rebuilt each time."""
    if count is not None and count <= 0:
        return 0
    emitted = (await session.scalars(EMIT_WINDOW, {"run_pk": run_pk, "stage": stage, "count": count})).all()
    add_events(session, *(ProcessBatch.for_stage(run_id, stage, bid) for bid in sorted(emitted)))
    return len(emitted)


def sequential(work: StageWork, items: int) -> bool:
    """A stage of `items` items whose batches go one at a time, each seeing what the ones before wrote."""
    return work.sequential_above is not None and items > work.sequential_above


def window_size(deps: Deps, work: StageWork, items: int) -> int | None:
    """Batch messages a run keeps queued at a stage of `items` items; None means no window (emit
    everything)."""
    return 1 if sequential(work, items) else streamed_window(deps)


def shared_slots(deps: Deps, work: StageWork, items: int) -> int | None:
    """What the stage's consumers hold at once (`Deps.consumer_slots`), which the windows of the runs
    running share (`WINDOW_NOW`), when that is more than the window; None where the window does not grow
    (no window, a sequential stage, consumers that hold no more than the window, or not counted yet)."""
    window = window_size(deps, work, items)
    if window is None or sequential(work, items) or deps.consumer_slots <= window:
        return None
    return deps.consumer_slots


def streamed_window(deps: Deps) -> int | None:
    """The window of a streamed stage (none of them ever works one batch at a time)."""
    return deps.settings.batch_window or None


async def insert_batches(session: AsyncSession, run_pk: int, stage: int, site_id: int, size: int
                         ) -> tuple[int, int]:
    """Chunk the stage's eligible ids into batch rows inside the database (no id list in
    memory, however big the stage); returns (batches, items)."""
    eligible = eligible_ids(stage, site_id).subquery()
    numbered = select(eligible.c.id, (func.row_number().over(order_by=eligible.c.id) - 1).label("n")).subquery()
    seq = cast(numbered.c.n // size, Integer)
    chunks = (select(literal(run_pk), literal(stage), seq,
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
    return str(eligible_ids(work.stage.number, 0).selected_columns[0].table.name)


async def plan_stage(deps: Deps, trigger: RequestStage | StageCompleted, work: StageWork) -> None:
    """Split the stage's eligible items into batches and queue the first window of them;
    asked again (resume, recovery), re-emit the open batches and top the window up."""
    stage = work.stage.number
    if planned_stage(trigger) != stage:
        raise PoisonMessage(f"{trigger.type} does not plan stage {stage}")
    run_id = trigger.run_id
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
            await emit_again(deps, session, ref, existing, window_size(deps, work, existing.items_in))
            streamed = (await session.scalars(
                select(RunStage).where(RunStage.run_id == run.id, RunStage.stage > stage, RunStage.streamed,
                                       RunStage.status == "planned").order_by(RunStage.stage))).all()
            for streamed_row in streamed:
                await emit_again(deps, session, ref, streamed_row, streamed_window(deps))
        else:
            prepare = getattr(work, "before_planning", None)  # stage 2: stage 1's clusters consolidated
            if prepare is not None:
                await prepare(deps, session, run, ref)
            if stage > 1 and await pause_if_unaffordable(deps, session, run, site, stage):
                return
            config = await session.scalar(select(AutomationConfig).where(AutomationConfig.site_id == site.id))
            size = config.batch_size(stage) if config else 1
            run.current_stage = stage
            run.last_progress_at = now()
            batches, items = await open_stage(session, ref, stage, size, deps=deps,
                                              window=lambda items: window_size(deps, work, items))
            if stage == STREAMS_FROM and deps.settings.stream_stages:
                for later in STREAMED_STAGES:
                    await open_stage(session, ref, later, config.batch_size(later) if config else 1, deps=deps,
                                     window=lambda _: streamed_window(deps), streamed=True)
            if not batches:
                await complete_stage(deps, session, ref, StageTotals(stage, 0, items, 0, 0, 0))
                await complete_ready_stages(deps, session, ref)
    deps.relay.wake()


async def open_stage(session: AsyncSession, run: RunRef, stage: int, size: int, *, deps: Deps,
                     window: Callable[[int], int | None], streamed: bool = False) -> tuple[int, int]:
    """Plan a stage of the run: batch rows for what is eligible now, its `run_stages` row and the
    first window of messages; returns (batches, items). A streamed stage starts with what was
    already waiting for it (left by an earlier run) and grows as the stage before it hands on."""
    batches, items = await insert_batches(session, run.pk, stage, run.site_id, size)
    session.add(RunStage(run_id=run.pk, stage=stage, status="planned", batches_total=batches, batches_done=0,
                         items_in=items, items_out=0, credits=0, ai_calls=0, streamed=streamed, batch_size=size))
    spec = BY_NUMBER[stage]
    deps.logger.log_stage_start(
        session, run, stage, f"{items} {spec.input_name} in {batches} batches of up to {size}"
        + (f"; streamed: more as stage {stage - 1} hands them on" if streamed else ""))
    await session.flush()
    if batches:
        await emit_window(session, run_pk=run.pk, run_id=run.run_id, stage=stage, count=window(items))
    return batches, items


async def emit_again(deps: Deps, session: AsyncSession, run: RunRef, stage_row: RunStage, window: int | None
                     ) -> None:
    """A stage asked for again (resume, the watchdog): re-emit its open batches and top its window up."""
    stage = stage_row.stage
    open_ids = (await session.scalars(
        select(StageBatch.id).where(StageBatch.run_id == run.pk, StageBatch.stage == stage,
                                    StageBatch.emitted_at.is_not(None), reclaimable())
        .order_by(StageBatch.seq))).all()
    add_events(session, *(ProcessBatch.for_stage(run.run_id, stage, bid) for bid in open_ids))
    topped_up = await emit_window(session, run_pk=run.pk, run_id=run.run_id, stage=stage,
                                  count=None if window is None else window - len(open_ids))
    deps.logger.log_stage_progress(
        session, run, stage, f"re-requested: {len(open_ids)} open batches emitted again, {topped_up} more queued")


async def pause_if_unaffordable(deps: Deps, session: AsyncSession, run: AutomationRun, site: Site, stage: int
                                ) -> bool:
    """Before stage `stage` is planned, check the balance against what the rest of the run will cost,
    now that the earlier stages' outputs are known (after stage 2 the ideas, after stage 3 the tasks
    exactly); pause the run with the figures if it falls short, so a run never stops halfway through
    a stage (its images) for credits. Resume re-checks: add credits first."""
    remaining = await estimate_for_site(session, site.id, from_stage=stage)
    balance = int(await session.scalar(select(Account.credits_balance).where(Account.id == site.account_id)) or 0)
    if balance >= remaining.total:
        return False
    counts = ", ".join(f"{n} {name}" for name, n in remaining.counts.items() if n)
    reason = (f"insufficient credits: stages {stage}-{LAST_STAGE} need about {remaining.total} "
              f"({counts}), balance {balance}")
    run.status = "paused"
    run.pause_reason = reason
    deps.logger.run_event(session, RunRef.of(run, site.account_id), f"Run paused before stage {stage}: {reason}",
                          level="WARNING")
    add_events(session, RunStateChanged(type="run.paused", run_id=run.run_id, site_id=site.id, status="paused",
                                        reason=reason))
    log.warning("run %s paused before stage %d: %s", run.run_id, stage, reason)
    return True


async def complete_stage(deps: Deps, session: AsyncSession, run: RunRef, stage_row: StageTotals) -> None:
    """Record the stage result and announce `stage.N.completed` (in the caller's transaction)."""
    stage = stage_row.stage
    spec = BY_NUMBER[stage]
    result = {
        "input": spec.input_name, "output": spec.output_name,
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
        session, run, stage, f"{result['items_in']} {spec.input_name} in, {result['items_out']} "
                             f"{spec.output_name} out, {result['credits']} credits, {result['batches']} batches")
    add_events(session, StageCompleted.for_stage(run.run_id, stage, result))


async def complete_ready_stages(deps: Deps, session: AsyncSession, run: RunRef) -> None:
    """After a stage completed, complete in order each streamed stage whose upstream has now completed
    and whose batches are all done (a streamed stage's last batch may have finished before the stage
    feeding it did). In the completing transaction, which holds the run's row lock, so a batch of the
    streamed stage finishing at the same time sees the upstream completed or is seen here as done."""
    rows = (await session.execute(
        select(RunStage.stage, RunStage.status, RunStage.streamed, RunStage.batches_done, RunStage.batches_total,
               RunStage.items_in, RunStage.items_out, RunStage.credits, RunStage.ai_calls)
        .where(RunStage.run_id == run.pk).order_by(RunStage.stage))).all()
    completed = {row.stage for row in rows if row.status == "completed"}
    for row in rows:
        if (row.streamed and row.stage not in completed and row.stage - 1 in completed
                and row.batches_done == row.batches_total):
            await complete_stage(deps, session, run, StageTotals(row.stage, row.batches_total, row.items_in,
                                                                 row.items_out, row.credits, row.ai_calls))
            completed.add(row.stage)
