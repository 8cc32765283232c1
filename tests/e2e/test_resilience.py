"""Runs that survive: pause/resume at random moments, kill -9 of consumers, broker and database
restarts, failing AI providers, concurrent starts, graceful shutdown. Real processes throughout."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import uuid

import aio_pika
import pytest
from sqlalchemy import func, select

from consumers.app import PROCESSES
from consumers.deps import Deps
from producers.client import AutomationClient
from shared.models import AutomationRun, RunLogLine, StageBatch
from shared.settings import Settings
from tests.e2e.conftest import fleet_with, wait_for
from tests.support import site_outcome

pytestmark = pytest.mark.e2e


def deps_for(settings: Settings, sessions) -> Deps:
    return Deps(settings=settings, sessions=sessions, logger=None, provider=None, relay=None,  # type: ignore[arg-type]
                worker_id="test")


async def start_and_wait_for_id(settings: Settings, sessions, site_id: int) -> str:
    key = uuid.uuid4().hex
    async with AutomationClient(settings) as client:
        await client.start_run(site_id, idempotency_key=key)

    async def run_id() -> str | None:
        async with sessions() as session:
            return await session.scalar(select(AutomationRun.run_id).where(AutomationRun.idempotency_key == key))

    return str(await wait_for(run_id, timeout=60))


async def run_status(sessions, run_id: str) -> AutomationRun:
    async with sessions() as session:
        return (await session.scalars(select(AutomationRun).where(AutomationRun.run_id == run_id))).one()


async def wait_status(sessions, run_id: str, *statuses: str, timeout: float = 180) -> AutomationRun:
    async def reached() -> AutomationRun | None:
        run = await run_status(sessions, run_id)
        return run if run.status in statuses else None

    return await wait_for(reached, timeout=timeout)  # type: ignore[return-value]


async def no_stuck_batches(sessions, run_id: str) -> int:
    async with sessions() as session:
        return int(await session.scalar(
            select(func.count()).select_from(StageBatch).join(AutomationRun, AutomationRun.id == StageBatch.run_id)
            .where(AutomationRun.run_id == run_id, StageBatch.status != "done")) or 0)


async def test_pausing_and_resuming_ten_times_gives_the_totals_of_a_clean_run(settings, sessions, output_dir,
                                                                               make_site):
    clean_site = await make_site(keywords=48, synthetic=True)
    paused_site = await make_site(keywords=48, synthetic=True)
    async with fleet_with(settings, output_dir) as (_fleet, own):
        clean = await start_and_wait_for_id(own, sessions, clean_site.id)
        await wait_status(sessions, clean, "completed")
        run_id = await start_and_wait_for_id(own, sessions, paused_site.id)
        rng = random.Random(7)
        async with AutomationClient(own) as client:
            for _ in range(10):
                await asyncio.sleep(rng.uniform(0.05, 0.6))
                await client.pause_run(run_id)
                run = await wait_status(sessions, run_id, "paused", "completed")
                if run.status == "completed":
                    break
                assert run.completed_at is None
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                await client.resume_run(run_id)
        run = await wait_status(sessions, run_id, "completed")
    deps = deps_for(own, sessions)
    assert await site_outcome(deps, clean_site.id) == await site_outcome(deps, paused_site.id)
    assert run.total_credits_used == (await run_status(sessions, clean)).total_credits_used
    assert await no_stuck_batches(sessions, run_id) == 0


async def test_kill_9_of_random_consumers_loses_and_duplicates_nothing(settings, sessions, output_dir, make_site):
    site = await make_site(keywords=96, synthetic=True)
    async with fleet_with(settings, output_dir, batch_lease_seconds=3, watchdog_interval_seconds=0.5,
                          ai_latency_ms=20) as (fleet, own):
        run_id = await start_and_wait_for_id(own, sessions, site.id)
        rng = random.Random(11)
        kills = 0
        while kills < 10:
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            victim = rng.choice(PROCESSES)
            fleet.kill(victim, sig=signal.SIGKILL)
            fleet.processes[victim].pop(0)
            fleet.start(victim)
            kills += 1
        run = await wait_status(sessions, run_id, "completed", "failed", timeout=240)
    assert run.status == "completed", run.error_message
    outcome = await site_outcome(deps_for(own, sessions), site.id)
    assert outcome["keywords_clustered"] == 96 and outcome["keywords_eligible_left"] == 0
    assert outcome["tasks_without_one_content"] == 0 and outcome["content"] == outcome["tasks"] == 12 * 3
    assert outcome["images_generated"] == outcome["images"] == outcome["content"] * 5
    assert outcome["credits_used"] == outcome["ledger_charged"] == outcome["granted"] - outcome["balance"]
    assert await no_stuck_batches(sessions, run_id) == 0


@pytest.mark.exclusive
@pytest.mark.parametrize("service", ["rabbitmq", "postgresql"])
async def test_consumers_reconnect_after_a_service_restart(service, settings, sessions, output_dir, make_site):
    site = await make_site(keywords=64, synthetic=True)
    async with fleet_with(settings, output_dir, ai_latency_ms=30, retry_base_seconds=0.5, batch_lease_seconds=5,
                          watchdog_interval_seconds=1) as (_fleet, own):
        run_id = await start_and_wait_for_id(own, sessions, site.id)
        await asyncio.sleep(2.0)
        if service == "rabbitmq":
            await asyncio.to_thread(subprocess.run, ["rabbitmqctl", "-q", "stop_app"], check=True)
            await asyncio.sleep(3)
            await asyncio.to_thread(subprocess.run, ["rabbitmqctl", "-q", "start_app"], check=True)
        else:
            version = sorted(os.listdir("/etc/postgresql"))[0]
            await asyncio.to_thread(subprocess.run, ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main",
                                                     "restart"], check=True)
        run = await wait_status(sessions, run_id, "completed", "failed", timeout=240)
    assert run.status == "completed", run.error_message
    outcome = await site_outcome(deps_for(own, sessions), site.id)
    assert outcome["keywords_clustered"] == 64 and outcome["content"] == 8 * 3
    assert outcome["tasks_without_one_content"] == 0 and outcome["images_generated"] == outcome["images"] == 120
    assert outcome["credits_used"] == outcome["ledger_charged"]


async def test_a_provider_failing_twice_succeeds_on_the_third_try_with_backoff_logged(settings, sessions, output_dir,
                                                                                     make_site):
    site = await make_site(keywords=8, synthetic=True)
    async with fleet_with(settings, output_dir, ai_provider="tests.fakes:faulty", retry_base_seconds=0.3,
                          media_dir=output_dir / f"media-{uuid.uuid4().hex[:6]}") as (_fleet, own):
        own.media_dir.mkdir(parents=True, exist_ok=True)
        (own.media_dir / "faults.json").write_text(json.dumps({"fail_first": 2}))
        run_id = await start_and_wait_for_id(own, sessions, site.id)
        run = await wait_status(sessions, run_id, "completed", "failed", timeout=120)
    assert run.status == "completed", run.error_message
    async with sessions() as session:
        lines = (await session.scalars(select(RunLogLine.message).where(RunLogLine.run_id == run.id,
                                                                        RunLogLine.stage == 4))).all()
        attempts = (await session.scalars(select(StageBatch.attempts).where(StageBatch.run_id == run.id,
                                                                            StageBatch.stage == 4))).all()
    assert attempts == [3, 3, 3]
    assert sum("attempt 1 failed (TransientAIError" in line and "retrying in" in line for line in lines) == 3
    assert sum("attempt 2 failed" in line for line in lines) == 3


async def test_an_always_failing_provider_fails_the_run_which_resumes_once_it_works(settings, sessions, output_dir,
                                                                                   make_site):
    site = await make_site(keywords=16, synthetic=True)
    async with fleet_with(settings, output_dir, ai_provider="tests.fakes:faulty", retry_base_seconds=0.2,
                          max_attempts=3, media_dir=output_dir / f"media-{uuid.uuid4().hex[:6]}") as (_fleet, own):
        own.media_dir.mkdir(parents=True, exist_ok=True)
        faults = own.media_dir / "faults.json"
        faults.write_text(json.dumps({"always": True}))
        run_id = await start_and_wait_for_id(own, sessions, site.id)
        failed = await wait_status(sessions, run_id, "failed", timeout=120)
        assert failed.error_message is not None
        assert failed.error_message.startswith("stage 4 batch ")
        assert "gave up after 3 attempts" in failed.error_message and "HTTP 503" in failed.error_message
        async with sessions() as session:
            done_before = dict((await session.execute(
                select(StageBatch.stage, func.count()).where(StageBatch.run_id == failed.id,
                                                             StageBatch.status == "done")
                .group_by(StageBatch.stage))).all())
        async with sessions() as session:  # the site's lock is released
            assert await session.scalar(select(func.count()).select_from(AutomationRun).where(
                AutomationRun.site_id == site.id, AutomationRun.status.in_(("running", "paused")))) == 0
        faults.write_text(json.dumps({}))
        async with AutomationClient(own) as client:
            await client.resume_run(run_id)
        run = await wait_status(sessions, run_id, "completed", timeout=120)
    assert run.error_message is None
    async with sessions() as session:
        stage_1_to_3 = dict((await session.execute(
            select(StageBatch.stage, func.count()).where(StageBatch.run_id == run.id, StageBatch.stage <= 3)
            .group_by(StageBatch.stage))).all())
    assert stage_1_to_3 == {s: n for s, n in done_before.items() if s <= 3}  # finished batches were not redone
    outcome = await site_outcome(deps_for(own, sessions), site.id)
    assert outcome["content"] == 6 and outcome["tasks_without_one_content"] == 0
    assert outcome["credits_used"] == outcome["ledger_charged"]


async def test_fifty_concurrent_starts_through_the_broker_make_one_run(settings, sessions, output_dir, make_site):
    site = await make_site(keywords=8, synthetic=True)
    # Slow AI calls keep the run active while the starts arrive: a run that completed before the
    # last start was handled would rightly let that start make a second run.
    async with fleet_with(settings, output_dir, ai_latency_ms=3000) as (_fleet, own), \
            AutomationClient(own) as client:
        connection = await aio_pika.connect(own.amqp_url)
        async with connection:
            channel = await connection.channel()
            tap = await channel.declare_queue(exclusive=True)
            exchange = await channel.get_exchange(f"{own.queue_prefix}.events")
            await tap.bind(exchange, routing_key="run.rejected")
            await asyncio.gather(*(client.start_run(site.id) for _ in range(50)))
            reasons = []
            async with tap.iterator(timeout=60) as messages:
                async for message in messages:
                    async with message.process():
                        rejected = json.loads(message.body)
                    if rejected["site_id"] == site.id:  # not an earlier test's event still in the outbox
                        reasons.append(rejected["reason"])
                    if len(reasons) == 49:
                        break
    assert set(reasons) == {"site has an active run"}
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AutomationRun)
                                    .where(AutomationRun.site_id == site.id)) == 1


async def test_sigterm_lets_the_batch_in_flight_finish(settings, sessions, output_dir, make_site):
    site = await make_site(keywords=8, synthetic=True, stage_4_batch_size=3)
    async with fleet_with(settings, output_dir, ai_latency_ms=1500) as (fleet, own):
        run_id = await start_and_wait_for_id(own, sessions, site.id)

        async def stage_4_claimed() -> bool:
            async with sessions() as session:
                return bool(await session.scalar(
                    select(func.count()).select_from(StageBatch).join(AutomationRun)
                    .where(AutomationRun.run_id == run_id, StageBatch.stage == 4, StageBatch.status == "claimed")))

        await wait_for(stage_4_claimed, timeout=60, every=0.05)
        process = fleet.processes["stage4"][0]
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 40) == 0
        async with sessions() as session:
            statuses = (await session.scalars(
                select(StageBatch.status).join(AutomationRun)
                .where(AutomationRun.run_id == run_id, StageBatch.stage == 4))).all()
        assert "claimed" not in statuses and "done" in statuses  # in-flight work finished, nothing half-held
        fleet.processes["stage4"].pop(0)
        fleet.start("stage4")
        run = await wait_status(sessions, run_id, "completed", timeout=120)
    assert run.status == "completed"
