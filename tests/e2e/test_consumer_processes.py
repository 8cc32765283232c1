"""The pipeline as users run it: control and seven stage consumers as OS processes over
RabbitMQ and PostgreSQL, commands sent with the producers client."""

from __future__ import annotations

import json
import uuid

import aio_pika
import pytest
from sqlalchemy import func, select

from automation.supervisor import ConsumerFleet
from consumers.deps import Deps
from producers.client import AutomationClient
from shared.automation_logger import run_log_dir
from shared.catalogue import STAGE_NUMBERS
from shared.events import ProcessBatch, StartRun
from shared.models import AutomationRun, StageBatch
from shared.settings import Settings
from shared.topology import Topology
from tests.e2e.conftest import wait_for
from tests.support import site_outcome

pytestmark = pytest.mark.e2e


async def latest_run(deps: Deps, site_id: int) -> AutomationRun | None:
    async with deps.sessions() as session:
        return (await session.scalars(select(AutomationRun).where(AutomationRun.site_id == site_id)
                                      .order_by(AutomationRun.id.desc()))).first()


async def finished_run(deps: Deps, site_id: int, timeout: float = 240) -> AutomationRun:
    async def done() -> AutomationRun | None:
        run = await latest_run(deps, site_id)
        return run if run is not None and run.status in ("completed", "failed") else None

    return await wait_for(done, timeout=timeout)  # type: ignore[return-value]


async def tap(settings: Settings, *keys: str) -> tuple[aio_pika.abc.AbstractConnection, aio_pika.abc.AbstractQueue]:
    """A private queue that sees copies of the events with these routing keys."""
    connection = await aio_pika.connect(settings.amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    exchange = await channel.declare_exchange(Topology.from_settings(settings).exchange.name, passive=True)
    for key in keys:
        await queue.bind(exchange, routing_key=key)
    return connection, queue


async def queue_depth(settings: Settings, name: str) -> int:
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count or 0)


@pytest.fixture(scope="module")
async def completed_run(fleet: ConsumerFleet, e2e_settings: Settings, sessions, settings, make_module_site):
    """One full run over 80 demo keywords, started through the producers client. Stages 5 and 6
    take a few items a batch (the seed's default is one: 1,100 image batches here, a third of the
    suite's time); test_batch_sizes_hold covers the defaults."""
    site = await make_module_site(keywords=80, stage_5_batch_size=2, stage_6_batch_size=4)
    async with AutomationClient(e2e_settings) as client:
        await client.start_run(site.id, idempotency_key=f"e2e-{uuid.uuid4().hex}")
    deps = Deps(settings=e2e_settings, sessions=sessions, logger=None, provider=None, relay=None,  # type: ignore
                worker_id="e2e")
    run = await finished_run(deps, site.id)
    return deps, site, run


async def test_a_full_run_over_80_keywords_completes(completed_run):
    deps, site, run = completed_run
    assert run.status == "completed", run.error_message
    outcome = await site_outcome(deps, site.id)
    assert outcome["keywords_clustered"] == 80 and outcome["keywords_eligible_left"] == 0
    assert outcome["tasks_without_one_content"] == 0 and outcome["content"] == outcome["tasks"] > 0
    assert outcome["content_in_review"] == outcome["content"]
    assert outcome["images_generated"] == outcome["images"] and outcome["review_with_pending_images"] == 0
    assert outcome["credits_used"] == run.total_credits_used == outcome["ledger_charged"]
    assert outcome["credits_used"] == outcome["granted"] - outcome["balance"]
    assert sorted(run.stage_7_result["content_ids"]).__len__() == outcome["content"]


async def test_replicas_of_a_stage_share_the_batches(completed_run):
    deps, _site, run = completed_run
    async with deps.sessions() as session:
        for stage in (4, 6):
            workers = (await session.scalars(select(func.distinct(StageBatch.claimed_by)).where(
                StageBatch.run_id == run.id, StageBatch.stage == stage))).all()
            assert len(workers) == 2, f"stage {stage} batches were processed by {workers}"


async def test_log_files_follow_the_seed_layout(completed_run, e2e_settings: Settings):
    _deps, site, run = completed_run
    folder = run_log_dir(e2e_settings.log_dir, site.account_id, site.id, run.run_id)
    main_log = (folder / "automation_run.log").read_text()
    assert f"Run {run.run_id} started" in main_log and "Run completed" in main_log
    for stage in STAGE_NUMBERS:
        text = (folder / f"stage_{stage}.log").read_text()
        assert f"Stage {stage} started" in text
        assert f"Stage {stage} progress" in text
        assert f"Stage {stage} completed" in text


async def test_publishing_every_batch_message_again_changes_nothing(completed_run, e2e_settings: Settings):
    deps, site, run = completed_run
    before = await site_outcome(deps, site.id)
    async with deps.sessions() as session:
        batches = (await session.execute(select(StageBatch.id, StageBatch.stage).where(
            StageBatch.run_id == run.id))).all()
    topology = Topology.from_settings(e2e_settings)
    async with AutomationClient(e2e_settings) as client:
        for batch_id, stage in batches:
            command = ProcessBatch.for_stage(run.run_id, stage, batch_id)
            await client.send(command)

    async def drained() -> bool:
        depths = [await queue_depth(e2e_settings, topology.batch_queue(n).name) for n in range(1, 7)]
        return sum(depths) == 0

    await wait_for(drained, timeout=120)
    assert await site_outcome(deps, site.id) == before
    assert (await latest_run(deps, site.id)).total_credits_used == run.total_credits_used


async def test_a_second_start_is_refused_while_a_run_is_active(fleet, e2e_settings, sessions, make_module_site):
    site = await make_module_site(keywords=16)  # both starts arrive within milliseconds; the run takes seconds
    connection, events = await tap(e2e_settings, "run.rejected", "run.started")
    async with connection:
        async with AutomationClient(e2e_settings) as client:
            await client.start_run(site.id)
            await client.start_run(site.id)
        seen = []
        async with events.iterator(timeout=60) as messages:
            async for message in messages:
                async with message.process():
                    payload = json.loads(message.body)
                    if payload.get("site_id") == site.id:
                        seen.append(payload)
                if len(seen) == 2:
                    break
    assert sorted(p["type"] for p in seen) == ["run.rejected", "run.started"]
    rejected = next(p for p in seen if p["type"] == "run.rejected")
    started = next(p for p in seen if p["type"] == "run.started")
    assert rejected["reason"] == "site has an active run" and rejected["active_run_id"] == started["run_id"]


async def test_malformed_messages_are_dead_lettered_and_consumers_go_on(fleet, e2e_settings, sessions,
                                                                         make_module_site):
    topology = Topology.from_settings(e2e_settings)
    bad = [
        ("run.start", b"{this is not json", "JSONDecodeError"),
        ("run.start", json.dumps({"type": "run.start", "site_id": "abc"}).encode(), "schema validation failed"),
        ("run.start", json.dumps({"type": "run.explode", "site_id": 1}).encode(), "schema validation failed"),
        ("stage.4.batch", json.dumps({"type": "stage.4.batch", "run_id": "x"}).encode(), "schema validation failed"),
    ]
    before = await queue_depth(e2e_settings, topology.dead_letter_queue.name)
    async with AutomationClient(e2e_settings) as client:
        for key, body, _ in bad:
            await client.broker.publish(body, exchange=topology.exchange, routing_key=key, persist=True,
                                        content_type="application/json")

    async def dead_lettered() -> bool:
        return await queue_depth(e2e_settings, topology.dead_letter_queue.name) >= before + len(bad)

    await wait_for(dead_lettered, timeout=60)
    connection = await aio_pika.connect(e2e_settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        dead = await channel.declare_queue(topology.dead_letter_queue.name, passive=True)
        reasons = []
        while (message := await dead.get(fail=False, no_ack=True)) is not None:
            reasons.append(str(message.headers.get("x-dead-letter-reason")))
    for _, _, expected in bad:
        assert any(expected in reason for reason in reasons), (expected, reasons)

    # the consumers carry on: a valid start still runs to completion
    site = await make_module_site(keywords=12)
    async with AutomationClient(e2e_settings) as client:
        await client.send(StartRun(site_id=site.id))
    deps = Deps(settings=e2e_settings, sessions=sessions, logger=None, provider=None, relay=None,  # type: ignore
                worker_id="e2e")
    assert (await finished_run(deps, site.id)).status == "completed"
    assert all(fleet.alive().values())
