"""Streamed stages: an item moves on as soon as the batch that made it commits.

Asserted as a user and an operator see it: articles in review while stage 2 is still working, the
same site as a stage-by-stage run gives, every `stage.N.completed` once and in order, progress that
adds up at every step (each stage's totals are its batch rows), every item in exactly one batch of
its stage, and the guarantees under hostile delivery: duplicated messages, a pause in the middle of
the stream, and concurrent finishes of batches of neighbouring stages on the real database.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import replace
from typing import Any

from sqlalchemy import func, select, text

from ai.simulated import SimulatedProvider
from consumers.batches import process_batch
from consumers.deps import Deps
from consumers.registry import STAGE_WORK
from shared.catalogue import STAGE_NUMBERS
from shared.events import PauseRun, ProcessBatch, ResumeRun, StartRun
from shared.models import AutomationRun, Content, RunStage
from tests.support import Bus, drain_outbox, site_outcome, stage_batches, until_a_statement_waits_for_a_lock

SAME = ("clusters", "ideas", "tasks", "content", "content_in_review", "images", "images_generated", "credits_used")

# Per stage of a run: its counters next to what its batch rows say.
PROGRESS_CHECK = text("""
    SELECT rs.stage, rs.batches_total, rs.batches_done, rs.items_in,
           count(b.id) AS batches, count(b.id) FILTER (WHERE b.status = 'done') AS done,
           coalesce(sum(cardinality(b.item_ids)), 0) AS items
      FROM run_stages AS rs LEFT JOIN stage_batches AS b ON b.run_id = rs.run_id AND b.stage = rs.stage
     WHERE rs.run_id = :run_pk GROUP BY rs.stage, rs.batches_total, rs.batches_done, rs.items_in
""")
# An item in two batches of one stage of a run would be worked (and counted) twice.
ITEMS_IN_TWO_BATCHES = text("""
    SELECT count(*) FROM (SELECT b.stage, i FROM stage_batches AS b, unnest(b.item_ids) AS i
                           WHERE b.run_id = :run_pk GROUP BY b.stage, i HAVING count(*) > 1) AS twice
""")


def streamed(deps: Deps, on: bool = True, window: int = 2) -> Deps:
    return replace(deps, settings=deps.settings.model_copy(update={"stream_stages": on, "batch_window": window}),
                   provider=SimulatedProvider(0))


async def run_pk_of(deps: Deps, site_id: int) -> int:
    async with deps.sessions() as session:
        return int(await session.scalar(select(AutomationRun.id).where(AutomationRun.site_id == site_id)
                                        .order_by(AutomationRun.id.desc()).limit(1)) or 0)


async def assert_progress_adds_up(deps: Deps, run_pk: int) -> None:
    async with deps.sessions() as session:
        for row in (await session.execute(PROGRESS_CHECK, {"run_pk": run_pk})).all():
            if row.stage == 7:
                continue
            assert (row.batches_total, row.batches_done, row.items_in) == (row.batches, row.done, row.items), row
        assert await session.scalar(ITEMS_IN_TWO_BATCHES, {"run_pk": run_pk}) == 0


async def test_articles_reach_review_while_stage_2_is_still_working(deps, make_site):
    fast = streamed(deps)
    site = await make_site(keywords=160, synthetic=True, stage_2_batch_size=1, stage_6_batch_size=5)
    bus = Bus(fast)
    await bus.send(StartRun(site_id=site.id))
    queue: deque[tuple[str, dict[str, Any]]] = deque(await drain_outbox(fast))
    run_pk, completed, first_review_with_stage_2_open = 0, [], None
    while queue:  # one FIFO queue, as one consumer of every stage would take them
        key, payload = queue.popleft()
        await bus.deliver(key, payload)
        queue.extend(await drain_outbox(fast))
        if key.startswith("stage.") and key.endswith(".completed"):
            completed.append(int(key.split(".")[1]))
        run_pk = run_pk or await run_pk_of(fast, site.id)
        await assert_progress_adds_up(fast, run_pk)
        async with fast.sessions() as session:
            in_review = await session.scalar(select(func.count()).select_from(Content).where(
                Content.site_id == site.id, Content.status == "review"))
            stage_2 = await session.scalar(select(RunStage.status).where(RunStage.run_id == run_pk,
                                                                         RunStage.stage == 2))
        if in_review and first_review_with_stage_2_open is None:
            first_review_with_stage_2_open = stage_2 != "completed"
    assert first_review_with_stage_2_open is True
    assert completed == list(STAGE_NUMBERS)  # each stage's completion once, in order
    outcome = await site_outcome(fast, site.id)
    assert outcome["content_in_review"] == outcome["tasks"] > 0 and outcome["review_with_pending_images"] == 0
    assert outcome["credits_used"] == outcome["ledger_charged"]


async def test_a_streamed_run_makes_the_same_site_as_a_stage_by_stage_run(deps, make_site):
    outcomes = []
    for on in (True, False):
        site = await make_site(keywords=40, synthetic=True, stage_2_batch_size=1, stage_4_batch_size=2)
        bus = Bus(streamed(deps, on))
        await bus.send(StartRun(site_id=site.id))
        await bus.pump()
        async with deps.sessions() as session:
            run = await session.scalar(select(AutomationRun).where(AutomationRun.site_id == site.id))
            stages = (await session.scalars(select(RunStage).where(RunStage.run_id == run.id)
                                            .order_by(RunStage.stage))).all()
        assert run.status == "completed"
        assert [(s.stage, s.streamed) for s in stages] == [(n, on and 3 <= n <= 6) for n in STAGE_NUMBERS]
        await assert_progress_adds_up(deps, run.id)
        outcomes.append((await site_outcome(deps, site.id), [run.stage_result(n)["items_in"] for n in STAGE_NUMBERS]))
    (streamed_outcome, streamed_items), (staged_outcome, staged_items) = outcomes
    assert {k: streamed_outcome[k] for k in SAME} == {k: staged_outcome[k] for k in SAME}
    assert streamed_items == staged_items


async def test_duplicated_messages_and_a_pause_mid_stream_change_nothing(deps, make_site):
    fast = streamed(deps)
    reference_site = await make_site(keywords=120, synthetic=True, stage_2_batch_size=1)
    bus = Bus(fast)
    await bus.send(StartRun(site_id=reference_site.id))
    await bus.pump()
    reference = await site_outcome(fast, reference_site.id)

    site = await make_site(keywords=120, synthetic=True, stage_2_batch_size=1)
    bus = Bus(fast)
    await bus.send(StartRun(site_id=site.id))
    run_pk = 0
    while True:  # until stages 2 to 4 all have work done and stage 2 is not over: the stream is full
        for key, payload in await drain_outbox(fast):
            await bus.deliver(key, payload)
            await bus.deliver(key, payload, allow_failures=True) if key.endswith(".batch") else None
        run_pk = run_pk or await run_pk_of(fast, site.id)
        async with fast.sessions() as session:
            done = dict((await session.execute(select(RunStage.stage, RunStage.batches_done)
                                               .where(RunStage.run_id == run_pk))).all())
            stage_2 = await session.scalar(select(RunStage.status).where(RunStage.run_id == run_pk,
                                                                         RunStage.stage == 2))
        if done.get(4, 0) > 0:
            break
    assert stage_2 == "planned", "stage 2 finished before stage 4 started: nothing streamed"
    run_id = (await session_run(fast, run_pk)).run_id
    await bus.send(PauseRun(run_id=run_id))
    for key, payload in await drain_outbox(fast):  # what arrives while paused is claimed by nobody
        await bus.deliver(key, payload)
    async with fast.sessions() as session:
        claimed = await session.scalar(text(
            "SELECT count(*) FROM stage_batches WHERE run_id = :r AND status = 'claimed'"), {"r": run_pk})
    assert (await session_run(fast, run_pk)).status == "paused" and claimed == 0
    await bus.send(ResumeRun(run_id=run_id))
    await bus.pump(duplicate_batches=True)
    run = await session_run(fast, run_pk)
    assert run.status == "completed"
    await assert_progress_adds_up(fast, run_pk)
    outcome = await site_outcome(fast, site.id)
    assert {k: outcome[k] for k in SAME} == {k: reference[k] for k in SAME}
    assert outcome["tasks_without_one_content"] == 0 and outcome["credits_used"] == outcome["ledger_charged"]
    completions = [int(k.split(".")[1]) for k, p in bus.seen if k.startswith("stage.") and k.endswith(".completed")
                   and p["run_id"] == run_id]
    assert completions == list(STAGE_NUMBERS)


async def session_run(deps: Deps, run_pk: int) -> AutomationRun:
    async with deps.sessions() as session:
        run = await session.get(AutomationRun, run_pk)
        assert run is not None
        return run


async def test_concurrent_finishes_of_neighbouring_stages_neither_deadlock_nor_lose_work(deps, make_site):
    """Every batch message queued at a moment is worked at once, so a stage's batches finish beside
    those of the stage before it (which hand on to it) and after it, on the real database; a deadlock
    or a lost hand-on would fail a batch, miss an article or stall the run."""
    fast = streamed(deps, window=4)
    site = await make_site(keywords=64, synthetic=True, stage_2_batch_size=1, stage_4_batch_size=1,
                           stage_6_batch_size=1)
    bus = Bus(fast)
    await bus.send(StartRun(site_id=site.id))
    overlapped = 0
    while messages := await drain_outbox(fast):
        batches = [ProcessBatch.model_validate(p) for k, p in messages if k.endswith(".batch")]
        overlapped = max(overlapped, len({b.stage for b in batches}))
        await asyncio.gather(*(process_batch(fast, b, STAGE_WORK[b.stage]) for b in batches))
        for key, payload in messages:
            if not key.endswith(".batch"):
                await bus.deliver(key, payload)
    run_pk = await run_pk_of(fast, site.id)
    assert (await session_run(fast, run_pk)).status == "completed"
    assert overlapped >= 3  # batches of three stages or more were worked side by side
    await assert_progress_adds_up(fast, run_pk)
    outcome = await site_outcome(fast, site.id)
    assert outcome["content_in_review"] == outcome["tasks"] > 0 and outcome["tasks_without_one_content"] == 0
    assert outcome["credits_used"] == outcome["ledger_charged"]


async def test_a_finish_that_waited_for_the_run_lock_sees_the_stage_before_it_completed(deps, make_site):
    """A streamed finish that waited for the run's lock behind another finish must see what that one
    committed. Here the other finish (held open by hand) completes stage 3 while stage 4's last batch
    waits for the lock: stage 4 must complete all the same, or no finish would ever complete it."""
    fast = streamed(deps, window=0)
    site = await make_site(keywords=16, synthetic=True, stage_4_batch_size=100)
    _, batches = await stage_batches(fast, site.id, stage=4)
    last = batches[0]
    run_pk = await run_pk_of(fast, site.id)
    async with fast.sessions() as session, session.begin():  # every other batch of stages 3 and 4 done
        await session.execute(text(
            "UPDATE stage_batches SET status = 'done' WHERE run_id = :run_pk AND stage IN (3, 4) AND id <> :last"),
            {"run_pk": run_pk, "last": last.batch_id})
        await session.execute(text(
            "UPDATE run_stages AS rs SET status = 'planned', batches_done = (SELECT count(*) FROM stage_batches AS b"
            " WHERE b.run_id = rs.run_id AND b.stage = rs.stage AND b.status = 'done')"
            " WHERE rs.run_id = :run_pk AND rs.stage IN (3, 4)"), {"run_pk": run_pk})
    async with fast.sessions() as other, other.begin():  # another finish of the run holds its lock
        await other.execute(text("SELECT FROM automation_runs WHERE id = :run_pk FOR NO KEY UPDATE"),
                            {"run_pk": run_pk})
        finishing = asyncio.create_task(process_batch(fast, last, STAGE_WORK[4]))
        await until_a_statement_waits_for_a_lock(fast, "%FROM automation_runs%FOR NO KEY UPDATE%")
        await other.execute(text("UPDATE run_stages SET status = 'completed' WHERE run_id = :run_pk AND stage = 3"),
                            {"run_pk": run_pk})
    await finishing
    async with fast.sessions() as session:
        status = await session.scalar(select(RunStage.status).where(RunStage.run_id == run_pk, RunStage.stage == 4))
    assert status == "completed"


async def test_a_streamed_finish_holds_the_run_lock_before_it_waits_for_the_account(deps, make_site):
    """The lock order of every finish of a streamed run is the run's row first, then the account's: a
    finish that found the account locked must already hold the run, or it could deadlock with one that
    holds the run and waits for the account."""
    fast = streamed(deps, window=0)
    site = await make_site(keywords=16, synthetic=True)
    _, batches = await stage_batches(fast, site.id, stage=4)
    run_pk = await run_pk_of(fast, site.id)
    async with fast.sessions() as other, other.begin():  # a payment of the same account in progress
        await other.execute(text("SELECT FROM accounts WHERE id = :id FOR UPDATE"), {"id": site.account_id})
        finishing = asyncio.create_task(process_batch(fast, batches[0], STAGE_WORK[4]))
        await until_a_statement_waits_for_a_lock(fast, "%WITH done AS%")  # the finish statement
        async with fast.sessions() as probe, probe.begin():
            held = (await probe.execute(text(
                "SELECT id FROM automation_runs WHERE id = :run_pk FOR NO KEY UPDATE SKIP LOCKED"),
                {"run_pk": run_pk})).first() is None
    await finishing
    assert held, "the finish waited for the account without holding the run's lock"
