"""The per-run batch window: at most `batch_window` of a run's batches are queued per stage,
each finished batch queues the next, and runs of several sites sharing a queue take turns.

Messages are delivered strictly first-in first-out, as one RabbitMQ queue would, so the
fairness figures here are message counts, not timings.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from ai.simulated import SimulatedProvider
from consumers.deps import Deps
from consumers.planning import process_batch_payload_sql
from consumers.registry import STAGE_WORK
from shared.automation_logger import log_file_name, run_log_dir
from shared.db import drop_database, make_engine, make_sessionmaker, upgrade_schema
from shared.events import ProcessBatch, ResumeRun, StartRun
from shared.models import AutomationRun, RunLogLine, StageBatch
from tests.conftest import SiteFactory, site_factory
from tests.support import Bus, drain_outbox, site_outcome


def with_window(deps: Deps, window: int) -> Deps:
    return replace(deps, settings=deps.settings.model_copy(update={"batch_window": window}),
                   provider=SimulatedProvider(0))


async def queued_open_batches(deps: Deps, site_id: int) -> int:
    """The most batches of one stage of the site's runs whose message is out and that are not done yet."""
    async with deps.sessions() as session:
        return max((await session.scalars(
            select(func.count()).select_from(StageBatch).join(AutomationRun)
            .where(AutomationRun.site_id == site_id, StageBatch.emitted_at.is_not(None),
                   StageBatch.status != "done").group_by(StageBatch.stage))).all(), default=0)


async def run_status(deps: Deps, site_id: int) -> str | None:
    async with deps.sessions() as session:
        return await session.scalar(select(AutomationRun.status).where(AutomationRun.site_id == site_id)
                                    .order_by(AutomationRun.id.desc()).limit(1))


async def deliver_fifo(deps: Deps, *commands: Any, watch: dict[str, int] | None = None,
                       each: Any = None) -> dict[str, int]:
    """Deliver every message in arrival order until none are left. Returns, for each site in
    `watch` (name -> site id), how many messages had been delivered when its run completed."""
    bus = Bus(deps)
    await bus.send(*commands)
    queue: deque[tuple[str, dict[str, Any]]] = deque(await drain_outbox(deps))
    delivered, completed_at = 0, {}
    while queue:
        key, payload = queue.popleft()
        await bus.deliver(key, payload)
        delivered += 1
        queue.extend(await drain_outbox(deps))
        if each is not None:
            await each()
        for name, site_id in (watch or {}).items():
            if name not in completed_at and await run_status(deps, site_id) == "completed":
                completed_at[name] = delivered
    return completed_at


async def test_a_run_never_has_more_than_the_window_queued_and_ends_with_the_same_totals(deps, make_site):
    windowed, unlimited = with_window(deps, 3), with_window(deps, 0)
    site_a = await make_site(keywords=40, synthetic=True)
    site_b = await make_site(keywords=40, synthetic=True)
    peaks: list[int] = []

    async def record() -> None:
        peaks.append(await queued_open_batches(deps, site_a.id))

    await deliver_fifo(windowed, StartRun(site_id=site_a.id), each=record)
    await deliver_fifo(unlimited, StartRun(site_id=site_b.id))

    assert await run_status(deps, site_a.id) == await run_status(deps, site_b.id) == "completed"
    assert max(peaks) == 3
    outcome_a, outcome_b = await site_outcome(deps, site_a.id), await site_outcome(deps, site_b.id)
    # 40 keywords in 5 synthetic groups; as many articles as the groups' distinct intents, 5 images each
    assert outcome_a["clusters"] == 5 and outcome_a["images_generated"] == 5 * outcome_a["content"] > 0
    for name in ("clusters", "ideas", "tasks", "content", "content_in_review", "images_generated", "credits_used"):
        assert outcome_a[name] == outcome_b[name], name
    assert outcome_a["credits_used"] == outcome_a["ledger_charged"]


@pytest.mark.parametrize(("streamed", "bound"), [(False, 0.35), (True, 0.5)], ids=["stage-by-stage", "streamed"])
async def test_a_small_run_is_not_stuck_behind_a_big_one(deps, make_site, streamed, bound):
    """Started after a big run, a small run finishes after a fraction of the messages: its own
    ~66 messages, interleaved 1:1 with the big run's window, instead of waiting behind the big run's
    whole backlog in each stage. Streamed, the big run has a window in each of its open stages, and this
    one queue stands for all the stages' queues, so the small run's share is bounded less tightly."""
    fair = replace(with_window(deps, 4), settings=deps.settings.model_copy(
        update={"batch_window": 4, "stream_stages": streamed}))
    big = await make_site(keywords=160, synthetic=True)
    small = await make_site(keywords=16, synthetic=True)
    completed_at = await deliver_fifo(fair, StartRun(site_id=big.id), StartRun(site_id=small.id),
                                      watch={"big": big.id, "small": small.id})
    share = completed_at["small"] / completed_at["big"]
    print(f"window 4: small done after {completed_at['small']} messages, big after {completed_at['big']}")
    assert share < bound, completed_at


async def test_resume_tops_the_window_up_again(deps, make_site):
    """Messages consumed while a run is paused are dropped; resume must queue the window again."""
    fair = with_window(deps, 2)
    site = await make_site(keywords=24, synthetic=True)
    bus = Bus(fair)
    await bus.send(StartRun(site_id=site.id))
    # deliver up to stage 4's first batches, then pause by hand, drop what is queued, resume
    queue: deque[tuple[str, dict[str, Any]]] = deque(await drain_outbox(fair))
    while queue:
        key, payload = queue.popleft()
        if key == "stage.4.batch":
            break
        await bus.deliver(key, payload)
        queue.extend(await drain_outbox(fair))
    async with fair.sessions() as session, session.begin():
        run = await session.scalar(select(AutomationRun).where(AutomationRun.site_id == site.id))
        run.status = "paused"
        run_id = run.run_id
    queue.clear()  # the queued stage-4 messages are consumed while paused: dropped
    await drain_outbox(fair)
    await bus.send(ResumeRun(run_id=run_id))
    await bus.pump()
    assert await run_status(fair, site.id) == "completed"
    outcome = await site_outcome(fair, site.id)
    assert outcome["content"] == outcome["tasks"] > 0 and outcome["images_generated"] == outcome["images"]


async def test_the_refill_message_built_in_sql_is_the_one_python_builds(deps):
    """The finish statement builds the window's next `stage.N.batch` payload in SQL
    (`consumers.planning.process_batch_payload_sql`): it must validate as `ProcessBatch`, from the
    JSON the broker carries as from the stored row, and equal `ProcessBatch.for_stage(...)` but for a
    fresh `event_id` per message and its `occurred_at`."""
    sql = text(f"SELECT {process_batch_payload_sql('b.id')} AS payload "
               "FROM unnest(CAST(:ids AS bigint[])) AS b(id) ORDER BY b.id")
    before = datetime.now(UTC)
    async with deps.sessions() as session:
        payloads = (await session.scalars(sql, {"ids": [7, 2**40], "batch_type": ProcessBatch.type_for(3),
                                                "run_id": "run_x-1.2:3"})).all()
    after = datetime.now(UTC)
    messages = [ProcessBatch.model_validate_json(json.dumps(p)) for p in payloads]
    assert [ProcessBatch.model_validate(p) for p in payloads] == messages
    assert len({m.event_id for m in messages}) == 2
    for message, batch_id in zip(messages, [7, 2**40], strict=True):
        assert before - timedelta(seconds=1) <= message.occurred_at <= after + timedelta(seconds=1)
        assert message.occurred_at.utcoffset() == timedelta(0)
        expected = ProcessBatch.for_stage("run_x-1.2:3", 3, batch_id)
        assert message.model_dump(exclude={"event_id", "occurred_at"}) == \
            expected.model_dump(exclude={"event_id", "occurred_at"})
        assert message.routing_key() == expected.routing_key() == ProcessBatch.type_for(3)
    # the same keys and value types as the Python-built payload (the form `add_events` stores)
    python_built = json.loads(ProcessBatch.for_stage("run_x-1.2:3", 3, 7).model_dump_json())
    assert {k: type(v) for k, v in payloads[0].items()} == {k: type(v) for k, v in python_built.items()}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", payloads[0]["occurred_at"])


async def test_each_finished_batch_refills_the_window_and_logs_its_line_once(deps, make_site):
    """One finish statement does the refill, its outbox row and the log line: every batch has one
    progress row and one line in each of its two log files, and every batch message was queued once."""
    fair = with_window(deps, 2)
    site = await make_site(keywords=24, synthetic=True)
    bus = Bus(fair)
    await bus.send(StartRun(site_id=site.id))
    await bus.pump()
    assert await run_status(fair, site.id) == "completed"
    async with fair.sessions() as session:
        run = await session.scalar(select(AutomationRun).where(AutomationRun.site_id == site.id))
        batches = (await session.execute(select(StageBatch.id, StageBatch.stage).where(
            StageBatch.run_id == run.id))).all()
        lines = (await session.scalars(select(RunLogLine.message).where(
            RunLogLine.run_id == run.id, RunLogLine.message.like("Stage % progress: batch %")))).all()
    assert len(lines) == len(batches) > 0
    sent = sorted(p["batch_id"] for key, p in bus.seen if key.endswith(".batch"))
    assert sent == sorted(b.id for b in batches)
    folder = run_log_dir(fair.settings.log_dir, site.account_id, site.id, run.run_id)
    main_log = (folder / log_file_name(0)).read_text(encoding="utf-8")
    for stage in {b.stage for b in batches}:
        stage_lines = [line for line in lines if line.startswith(f"Stage {stage} ")]
        stage_log = (folder / log_file_name(stage)).read_text(encoding="utf-8")
        assert all(stage_log.count(f"INFO {line}\n") == 1 for line in stage_lines)
        assert all(main_log.count(f"INFO {line}\n") == 1 for line in stage_lines)


async def open_batches_by_stage(deps: Deps, site_id: int) -> dict[int, int]:
    """Per stage of the site's latest run, its batches whose message is out and that are not done yet."""
    async with deps.sessions() as session:
        run_pk = await session.scalar(select(AutomationRun.id).where(AutomationRun.site_id == site_id)
                                      .order_by(AutomationRun.id.desc()).limit(1))
        return dict((await session.execute(
            select(StageBatch.stage, func.count()).where(StageBatch.run_id == run_pk,
                                                         StageBatch.emitted_at.is_not(None),
                                                         StageBatch.status != "done")
            .group_by(StageBatch.stage))).all())  # type: ignore[arg-type]


@pytest.fixture
async def alone(deps: Deps) -> AsyncIterator[tuple[Deps, SiteFactory]]:
    """Deps and a site factory over a database of their own: a run is alone only while no other run is
    running, and the test database holds runs that other tests left running."""
    url = f"{deps.settings.database_url}_alone_{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(upgrade_schema, url)
    settings = deps.settings.model_copy(update={"database_url": url})
    engine = make_engine(settings, pool_size=5)
    try:
        sessions = make_sessionmaker(engine)
        yield replace(deps, settings=settings, sessions=sessions), site_factory(sessions)
    finally:
        await engine.dispose()
        await drop_database(url)


async def test_the_runs_running_share_the_consumers_as_their_windows(alone):
    """Alone, a run keeps as many batches out per stage as the stage's consumers hold (6 here), not the
    window (2). Once two more sites' runs are running, each finish of it queues nothing until it is back
    within its share (6 / 3 = 2), and it stays there; when one of them is done, its share is 3 again.
    It ends as a run with the plain window would."""
    deps, make_site = alone
    grown = replace(with_window(deps, 2), consumer_slots=6)
    big = await make_site(keywords=120, synthetic=True)
    smalls = [await make_site(keywords=16, synthetic=True), await make_site(keywords=48, synthetic=True)]
    bus = Bus(grown)
    await bus.send(StartRun(site_id=big.id))
    queue: deque[tuple[str, dict[str, Any]]] = deque(await drain_outbox(grown))
    alone: list[int] = []  # the big run's most open batches of a stage, per delivery, while it is alone
    beside: dict[int, list[int]] = {2: [], 1: []}  # the same while 2, then 1, of the small runs are running
    while queue:
        key, payload = queue.popleft()
        await bus.deliver(key, payload)
        queue.extend(await drain_outbox(grown))
        peak = max((await open_batches_by_stage(grown, big.id)).values(), default=0)
        statuses = [await run_status(grown, small.id) for small in smalls]
        if statuses == [None, None]:
            alone.append(peak)
            if peak == 6:  # opened all the way: now two more sites start
                await bus.send(*(StartRun(site_id=small.id) for small in smalls))
                queue.extend(await drain_outbox(grown))
        elif await run_status(grown, big.id) == "running":
            if statuses == ["running", "running"]:
                beside[2].append(peak)
            elif beside[2] and sorted(statuses, key=str) == ["completed", "running"]:
                beside[1].append(peak)
    print(f"alone: peak {max(alone)} over {len(alone)} deliveries; beside two runs: {beside[2]}; one: {beside[1]}")
    assert max(alone) == 6 and beside[2] and beside[1]
    back = next(i for i, peak in enumerate(beside[2]) if peak <= 2)  # what it had out drained, and no more
    assert max(beside[2][back:]) <= 2 and len(beside[2]) - back > 20, beside
    assert max(beside[1]) == 3, beside  # a share of 3 again once one of them is done
    assert {await run_status(grown, site.id) for site in (big, *smalls)} == {"completed"}

    plain = with_window(deps, 2)  # the same site again with the plain window: the same outcome
    twin = await make_site(keywords=120, synthetic=True)
    await deliver_fifo(plain, StartRun(site_id=twin.id))
    outcome, twin_outcome = await site_outcome(deps, big.id), await site_outcome(deps, twin.id)
    for name in ("clusters", "ideas", "tasks", "content", "content_in_review", "images_generated", "credits_used"):
        assert outcome[name] == twin_outcome[name], name


async def test_a_sequential_stage_keeps_one_batch_out_even_alone(alone, monkeypatch):
    """Stage 1 of a run too big to consolidate goes one batch at a time (each sees what the ones before
    wrote): the window that a run alone would open to the consumers must not open it."""
    deps, make_site = alone
    monkeypatch.setattr(STAGE_WORK[1], "sequential_above", 10)
    grown = replace(with_window(deps, 2), consumer_slots=6)
    site = await make_site(keywords=60, synthetic=True)
    stage1: list[int] = []

    async def record() -> None:
        stage1.append((await open_batches_by_stage(grown, site.id)).get(1, 0))

    await deliver_fifo(grown, StartRun(site_id=site.id), each=record)
    assert await run_status(grown, site.id) == "completed"
    assert max(stage1) == 1
