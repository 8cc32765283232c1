"""The watchdog: batches whose consumer died are handed out again; runs with nothing in flight have
their stage re-requested; stale runs are failed. Plan triggers are checked against the run's state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from consumers.batches import Claim, claim_batch
from consumers.planning import now
from consumers.watchdog import fail_stale_runs, nudge_stalled_runs, reissue_expired_batches
from shared.db import autocommit_session
from shared.events import ProcessBatch, RequestStage, StageCompleted, StartRun
from shared.models import AutomationRun, RunLogLine, RunStage, StageBatch
from tests.support import Bus, drain_outbox, site_outcome


@pytest.fixture(autouse=True)
async def no_other_active_run(deps) -> AsyncIterator[None]:
    """The watchdog looks at every run in the database, so each test starts and ends with none active:
    a run an earlier test left running (here or in another module) stalls after `stall_seconds` and
    would be nudged, and counted, by this test's watchdog pass."""
    async def fail_active() -> None:
        async with deps.sessions() as session, session.begin():
            await session.execute(update(AutomationRun).where(AutomationRun.status.in_(("running", "paused")))
                                  .values(status="failed"))

    await fail_active()
    yield
    await fail_active()


async def started_run(deps, make_site) -> tuple[AutomationRun, list[ProcessBatch]]:
    """A run whose stage 1 is planned; its batch messages are returned undelivered."""
    site = await make_site(keywords=40)
    bus = Bus(deps)
    await bus.send(StartRun(site_id=site.id))
    batches: list[ProcessBatch] = []
    while not batches:
        pending = await drain_outbox(deps)
        batches = [ProcessBatch.model_validate(p) for k, p in pending if k.endswith(".batch")]
        for key, payload in pending:
            if not key.endswith(".batch"):
                await bus.deliver(key, payload)
    async with deps.sessions() as session:
        run = await session.scalar(select(AutomationRun).where(AutomationRun.site_id == site.id))
    return run, batches


async def claim_as_consumer(deps, command: ProcessBatch) -> Claim | None:
    async with autocommit_session(deps.sessions) as session:
        return await claim_batch(deps, command, session)


async def test_a_batch_whose_lease_ran_out_is_handed_out_again(deps, make_site):
    run, batches = await started_run(deps, make_site)
    claim = await claim_as_consumer(deps, batches[0])  # a consumer claims it ... and dies
    assert claim is not None
    assert await reissue_expired_batches(deps) == 0  # lease still live: left alone
    async with deps.sessions() as session, session.begin():
        await session.execute(update(StageBatch).where(StageBatch.id == claim.batch_id)
                              .values(lease_expires_at=now() - timedelta(seconds=1)))
    assert await reissue_expired_batches(deps) == 1
    reissued = [ProcessBatch.model_validate(p) for k, p in await drain_outbox(deps) if k.endswith(".batch")]
    assert [b.batch_id for b in reissued] == [claim.batch_id]
    async with deps.sessions() as session:
        batch = await session.get(StageBatch, claim.batch_id)
        lines = (await session.scalars(select(RunLogLine.message).where(RunLogLine.run_id == run.id))).all()
    assert batch.status == "pending" and batch.error.startswith("lease of pytest expired")
    assert any("watchdog: batch 1 re-issued, the lease of pytest expired" in line for line in lines)
    assert await claim_as_consumer(deps, reissued[0]) is not None  # and another consumer can take it


async def test_a_run_without_progress_is_failed_and_its_lock_released(deps, make_site):
    run, _ = await started_run(deps, make_site)
    assert await fail_stale_runs(deps) == 0
    async with deps.sessions() as session, session.begin():
        await session.execute(update(AutomationRun).where(AutomationRun.id == run.id).values(
            last_progress_at=now() - timedelta(seconds=deps.settings.stale_run_seconds + 5)))
    assert await fail_stale_runs(deps) == 1
    events = [p for k, p in await drain_outbox(deps) if k == "run.failed"]
    assert events and events[0]["run_id"] == run.run_id
    async with deps.sessions() as session:
        failed = await session.get(AutomationRun, run.id)
        lines = (await session.scalars(select(RunLogLine.message).where(RunLogLine.run_id == run.id))).all()
    assert failed.status == "failed" and failed.error_message.startswith("watchdog: no progress for 21600 s")
    assert any(line.startswith("watchdog: no progress") for line in lines)
    bus = Bus(deps)
    await bus.send(StartRun(site_id=run.site_id))  # the site's lock is free again
    for key, payload in await drain_outbox(deps):
        await bus.deliver(key, payload)
    async with deps.sessions() as session:
        statuses = (await session.scalars(select(AutomationRun.status).where(
            AutomationRun.site_id == run.site_id).order_by(AutomationRun.id))).all()
    assert statuses == ["failed", "running"]


async def stage_states(deps, run_pk: int) -> dict[int, str]:
    async with deps.sessions() as session:
        return dict((await session.execute(select(RunStage.stage, RunStage.status)
                                           .where(RunStage.run_id == run_pk))).all())


async def until_stage(deps, make_site, stage: int) -> AutomationRun:
    """A run whose stage `stage - 1` completed; the `stage.N.completed` message is dropped, as one
    dead-lettered during a database outage would be, and with it every other message in flight (a
    streamed run's batches of the later stages)."""
    site = await make_site(keywords=24)
    bus = Bus(deps)
    await bus.send(StartRun(site_id=site.id))
    while True:
        for key, payload in await drain_outbox(deps):
            if key == f"stage.{stage - 1}.completed":
                await drain_outbox(deps)
                async with deps.sessions() as session:
                    return await session.scalar(select(AutomationRun).where(AutomationRun.site_id == site.id))
            await bus.deliver(key, payload)


async def test_a_run_whose_stage_message_was_lost_is_re_requested_and_completes(deps, make_site):
    run = await until_stage(deps, make_site, 4)
    assert await nudge_stalled_runs(deps) == 0  # progress is recent: left alone
    async with deps.sessions() as session, session.begin():
        await session.execute(update(AutomationRun).where(AutomationRun.id == run.id).values(
            last_progress_at=now() - timedelta(seconds=deps.settings.stall_seconds + 5)))
    assert await nudge_stalled_runs(deps) == 1
    assert await nudge_stalled_runs(deps) == 0  # once per stall period
    pending = await drain_outbox(deps)
    assert [(k, p["run_id"]) for k, p in pending] == [("stage.4.requested", run.run_id)]
    bus = Bus(deps)
    for key, payload in pending:
        await bus.deliver(key, payload)
    await bus.pump()
    async with deps.sessions() as session:
        done = await session.get(AutomationRun, run.id)
        lines = (await session.scalars(select(RunLogLine.message).where(RunLogLine.run_id == run.id))).all()
    assert done.status == "completed"
    assert any("nothing in flight at stage 4; stage re-requested" in line for line in lines)
    outcome = await site_outcome(deps, run.site_id)
    assert outcome["content_in_review"] == outcome["tasks"] > 0


async def test_a_run_with_a_live_claim_is_not_nudged(deps, make_site):
    run, batches = await started_run(deps, make_site)
    assert await claim_as_consumer(deps, batches[0]) is not None  # a long AI call, lease renewed
    async with deps.sessions() as session, session.begin():
        await session.execute(update(AutomationRun).where(AutomationRun.id == run.id).values(
            last_progress_at=now() - timedelta(seconds=deps.settings.stall_seconds + 5)))
    assert await nudge_stalled_runs(deps) == 0
    async with deps.sessions() as session, session.begin():
        await session.execute(update(AutomationRun).where(AutomationRun.id == run.id).values(status="failed"))
    await drain_outbox(deps)


@pytest.mark.parametrize("forged", [
    RequestStage.for_stage("forged", 5), RequestStage.for_stage("forged", 7),
    StageCompleted.for_stage("forged", 4, {}), StageCompleted.for_stage("forged", 6, {}),
])
async def test_a_trigger_its_run_contradicts_is_poison_and_changes_nothing(deps, make_site, forged):
    run = await until_stage(deps, make_site, 4)
    bus = Bus(deps)
    await bus.deliver("stage.4.requested", {"type": "stage.4.requested", "run_id": run.run_id})  # batches queued
    await drain_outbox(deps)
    before = await site_outcome(deps, run.site_id)
    stages_before = await stage_states(deps, run.id)
    await bus.deliver(forged.type, {**forged.model_dump(mode="json"), "run_id": run.run_id}, allow_failures=True)
    [dead] = bus.dead_lettered  # dead-lettered at once with its reason, never retried
    assert dead.key == forged.type and "contradicts run" in dead.reason and bus.retried == []
    async with deps.sessions() as session:
        after = await session.get(AutomationRun, run.id)
    assert (after.status, after.current_stage) == ("running", 4)
    stages = await stage_states(deps, run.id)
    assert stages == stages_before
    # stages 5 and 6 of a streamed run are open (planned) from stage 2 on
    assert {s: stages[s] for s in (1, 2, 3, 4)} == {1: "completed", 2: "completed", 3: "completed", 4: "planned"}
    assert await site_outcome(deps, run.site_id) == before
    assert await drain_outbox(deps) == []
    async with deps.sessions() as session, session.begin():
        await session.execute(update(AutomationRun).where(AutomationRun.id == run.id).values(status="failed"))
