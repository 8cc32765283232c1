"""Hostile input and outages against the real processes: retries that never multiply, poison that
never touches a run, forged triggers that change nothing, a database outage longer than the retry
budget.

What is asserted is what an operator sees: copies per retry attempt (a tap on the retry exchange),
dead letters and their reasons, runs' states and a site's rows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from producers.client import AutomationClient
from shared.db import make_engine, make_sessionmaker
from shared.models import AutomationRun, RunStage
from shared.settings import Settings
from shared.topology import ATTEMPT_HEADER, RETRY_TIER_HEADER, Topology
from tests.e2e.conftest import fleet_with, wait_for
from tests.e2e.test_resilience import deps_for, start_and_wait_for_id, wait_status
from tests.support import site_outcome

pytestmark = pytest.mark.e2e

# A retry budget of about a second, and a watchdog that re-requests a stalled stage after 4 s.
FAULTY = {"ai_provider": "tests.fakes:faulty", "retry_base_seconds": 0.2, "max_attempts": 3, "stall_seconds": 4,
          "watchdog_interval_seconds": 1.0, "batch_lease_seconds": 4}
TOTALS = ("clusters", "ideas", "tasks", "content", "content_in_review", "images_generated", "credits_used")


@pytest.fixture(scope="module")
async def hostile(settings: Settings, output_dir: Path) -> AsyncIterator[Settings]:
    media = output_dir / f"media-hostile-{uuid.uuid4().hex[:6]}"
    media.mkdir(parents=True)
    async with fleet_with(settings, output_dir, media_dir=media, **FAULTY) as (_fleet, own):
        yield own


def set_faults(settings: Settings, **faults: object) -> None:
    (settings.media_dir / "faults.json").write_text(json.dumps(faults))


class Tap:
    """The retries seen on the retry exchange, collected as they are published (each carries its
    delay as a per-message TTL, so a copy left in a queue would expire before it could be read)."""

    def __init__(self) -> None:
        self.messages: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def take(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.messages.append(message)

    def of_run(self, run_id: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Only this run's retries: the fleet's watchdog also re-requests runs an earlier test of the
        same worker left running (in the worker's database), and their retries are not this test's."""
        return [m for m in self.messages if f'"run_id":"{run_id}"'.encode() in m.body.replace(b" ", b"")]

    def attempts(self, run_id: str) -> Counter[tuple[str | None, object]]:
        return Counter((m.message_id, m.headers[ATTEMPT_HEADER]) for m in self.of_run(run_id))


@contextlib.asynccontextmanager
async def retry_tap(settings: Settings) -> AsyncIterator[Tap]:
    """A private queue bound to the retry exchange once per delay tier: it gets one copy of every
    retry published, whatever tier it is for."""
    tap = Tap()
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        topology = Topology.from_settings(settings)
        exchange = await channel.declare_exchange(  # as the consumers declare it, if they have not yet
            topology.retry_exchange.name, type=aio_pika.ExchangeType.HEADERS, durable=True)
        for tier in range(len(topology.retry_delays_seconds)):
            await queue.bind(exchange, arguments={"x-match": "all", RETRY_TIER_HEADER: str(tier)})
        await queue.consume(tap.take, no_ack=True)
        yield tap


async def drain(queue: aio_pika.abc.AbstractQueue) -> list[aio_pika.abc.AbstractIncomingMessage]:
    messages = []
    while (message := await queue.get(fail=False, no_ack=True)) is not None:
        messages.append(message)
    return messages


class DeadLetters:
    """Reads the prefix's dead-letter queue, keeping every message seen, by message id."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.seen: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def of(self, ids: set[str]) -> list[aio_pika.abc.AbstractIncomingMessage]:
        connection = await aio_pika.connect(self.settings.amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(Topology.from_settings(self.settings).dead_letter_queue.name,
                                                passive=True)
            self.seen += await drain(queue)
        return [m for m in self.seen if m.message_id in ids]


async def publish_raw(settings: Settings, messages: list[tuple[str, str, bytes]]) -> None:
    """(message id, routing key, body) as they are, to the events exchange."""
    topology = Topology.from_settings(settings)
    async with AutomationClient(settings) as client:
        for message_id, key, body in messages:
            await client.broker.publish(body, exchange=topology.exchange, routing_key=key, persist=True,
                                        content_type="application/json", message_id=message_id)


async def test_a_failing_batch_is_retried_once_per_attempt_then_dead_lettered_once(hostile, sessions, make_site):
    set_faults(hostile, always=True)
    site = await make_site(keywords=8, synthetic=True, stage_4_batch_size=100)  # stage 4 is one batch
    dead = DeadLetters(hostile)
    async with retry_tap(hostile) as tap:
        run_id = await start_and_wait_for_id(hostile, sessions, site.id)
        run = await wait_status(sessions, run_id, "failed", timeout=120)
        await asyncio.sleep(2)  # copies of copies, if retries multiplied, would arrive meanwhile
        retried = tap.attempts(run_id)
    assert len({mid for mid, _ in retried}) == 1, retried  # the one stage 4 batch
    (batch_message,) = {mid for mid, _ in retried}
    assert retried == {(batch_message, 2): 1, (batch_message, 3): 1}, retried
    letters = await dead.of({str(batch_message)})
    assert len(letters) == 1
    assert "gave up after 3 attempts" in str(letters[0].headers["x-dead-letter-reason"])
    assert run.error_message and "stage 4 batch" in run.error_message and "HTTP 503" in run.error_message

    # an error the provider marks final is not retried at all: one dead letter, the run failed at once
    set_faults(hostile, final=True)
    site = await make_site(keywords=8, synthetic=True, stage_4_batch_size=100)
    async with retry_tap(hostile) as tap:
        run_id = await start_and_wait_for_id(hostile, sessions, site.id)
        run = await wait_status(sessions, run_id, "failed", timeout=120)
        await asyncio.sleep(1)
        assert tap.of_run(run_id) == []
    assert run.error_message and "not retryable" in run.error_message and "content policy" in run.error_message
    set_faults(hostile)


async def test_hostile_messages_are_dead_lettered_once_each_and_touch_no_run(hostile, sessions, make_site):
    set_faults(hostile)
    clean_site = await make_site(keywords=24, synthetic=True)
    clean = await start_and_wait_for_id(hostile, sessions, clean_site.id)
    await wait_status(sessions, clean, "completed")
    site = await make_site(keywords=24, synthetic=True)
    run_id = await start_and_wait_for_id(hostile, sessions, site.id)

    deep = b"[" * 100_000 + b"]" * 100_000
    kinds: list[tuple[str, bytes, str]] = [
        ("run.start", json.dumps({"type": "run.start", "site_id": 10**12}).encode(), "less than or equal"),
        ("run.start", b"{this is not json", "JSONDecodeError"),
        ("run.start", json.dumps({"type": "run.explode", "site_id": 1}).encode(), "schema validation failed"),
        ("run.start", json.dumps({"type": "run.start", "site_id": 1, "requested_by": "x" * 1_000_000}).encode(),
         "at most 200 characters"),
        ("run.pause", json.dumps({"type": "run.pause", "run_id": "run\u0000x"}).encode(), "should match pattern"),
        ("stage.1.batch", json.dumps({"type": "stage.1.batch", "run_id": run_id, "batch_id": 2**63}).encode(),
         "less than or equal"),
        ("stage.2.batch", json.dumps({"type": "stage.2.batch", "run_id": run_id, "batch_id": 2**62}).encode(),
         f"is not stage 2 of run {run_id}"),
        ("stage.4.batch", json.dumps({"type": "stage.5.batch", "run_id": run_id, "batch_id": 1}).encode(),
         "does not belong to stage 4"),
        ("stage.3.requested", deep, "RecursionError"),
        # the publish and notify consumers read from the same exchange and owe the same answer
        ("content.publish", json.dumps({"type": "content.publish", "publication_id": 2**63, "content_id": 1,
                                        "revision": 1}).encode(), "less than or equal"),
        ("notify.deliver", b'{"type": "notify.deliver", "delivery_id": ', "JSONDecodeError"),
        ("run.completed", json.dumps({"type": "run.completed", "run_id": run_id, "site_id": site.id,
                                      "status": "completed", "padding": "x" * 1_000_000}).encode(),
         "Extra inputs are not permitted"),
    ]
    messages = [(f"hostile-{uuid.uuid4().hex}", key, body) for _ in range(5) for key, body, _ in kinds]
    expected = {mid: reason for (mid, _, _), (_, _, reason) in zip(messages, kinds * 5, strict=True)}
    dead = DeadLetters(hostile)
    async with retry_tap(hostile) as tap:
        await publish_raw(hostile, messages)

        async def all_dead() -> list[aio_pika.abc.AbstractIncomingMessage] | None:
            letters = await dead.of(set(expected))
            return letters if len(letters) >= len(expected) else None

        letters = await wait_for(all_dead, timeout=120)
        assert not [m for m in tap.messages if m.message_id in expected]  # poison is never retried
    assert len(letters) == len(expected)  # type: ignore[arg-type]
    for letter in letters:  # type: ignore[attr-defined]
        reason = str(letter.headers.get("x-dead-letter-reason"))
        assert expected[letter.message_id] in reason, (letter.message_id, reason[:300])

    run = await wait_status(sessions, run_id, "completed", "failed")
    assert run.status == "completed", run.error_message
    deps = deps_for(hostile, sessions)
    ours, theirs = await site_outcome(deps, site.id), await site_outcome(deps, clean_site.id)
    assert {k: ours[k] for k in TOTALS} == {k: theirs[k] for k in TOTALS}


async def stage_rows(sessions, run_id: str) -> dict[int, str]:
    async with sessions() as session:
        rows = (await session.execute(select(RunStage.stage, RunStage.status).join(
            AutomationRun, AutomationRun.id == RunStage.run_id).where(AutomationRun.run_id == run_id))).all()
    return dict(rows)  # type: ignore[arg-type]


async def test_forged_out_of_order_triggers_are_dead_lettered_and_change_no_run(hostile, sessions, make_site):
    set_faults(hostile)
    clean_site = await make_site(keywords=16, synthetic=True, stage_4_batch_size=100)
    clean = await start_and_wait_for_id(hostile, sessions, clean_site.id)
    await wait_status(sessions, clean, "completed")

    set_faults(hostile, delay_seconds=6)  # the run sits at stage 4 while the forgeries arrive
    site = await make_site(keywords=16, synthetic=True, stage_4_batch_size=100)
    run_id = await start_and_wait_for_id(hostile, sessions, site.id)

    async def at_stage_4() -> bool:  # stage 3 completed: the run's current stage is 4 (streamed or not)
        rows = await stage_rows(sessions, run_id)
        return rows.get(3) == "completed" and rows.get(4) == "planned"

    await wait_for(at_stage_4, timeout=60)
    contradicting = [f"stage.{n}.requested" for n in (5, 6, 7)] + [f"stage.{n}.completed" for n in (4, 5, 6)]
    stale = [f"stage.{n}.requested" for n in (1, 2, 3)] + [f"stage.{n}.completed" for n in (1, 2, 3)]
    forged = {f"forged-{uuid.uuid4().hex}": key for key in contradicting + stale}
    await publish_raw(hostile, [(mid, key, json.dumps({"type": key, "run_id": run_id}).encode())
                                for mid, key in forged.items()])
    dead = DeadLetters(hostile)
    wanted = {mid for mid, key in forged.items() if key in contradicting}

    async def dead_lettered() -> list[aio_pika.abc.AbstractIncomingMessage] | None:
        letters = await dead.of(set(forged))
        return letters if len(letters) >= len(wanted) else None

    letters = await wait_for(dead_lettered, timeout=60)
    assert {m.message_id for m in letters} == wanted  # type: ignore[attr-defined]
    assert all("contradicts run" in str(m.headers["x-dead-letter-reason"]) for m in letters)  # type: ignore
    async with sessions() as session:
        run = (await session.scalars(select(AutomationRun).where(AutomationRun.run_id == run_id))).one()
    assert (run.status, run.current_stage) == ("running", 4)
    rows = await stage_rows(sessions, run_id)  # stages 5 and 6 of a streamed run are open from stage 2 on
    assert {n: rows[n] for n in (1, 2, 3, 4)} == {1: "completed", 2: "completed", 3: "completed", 4: "planned"}
    assert all(rows.get(n, "planned") == "planned" for n in (5, 6))

    set_faults(hostile)
    run = await wait_status(sessions, run_id, "completed", "failed")
    assert run.status == "completed", run.error_message
    deps = deps_for(hostile, sessions)
    ours, theirs = await site_outcome(deps, site.id), await site_outcome(deps, clean_site.id)
    assert {k: ours[k] for k in TOTALS} == {k: theirs[k] for k in TOTALS}


@contextlib.asynccontextmanager
async def database_refusing_connections(settings: Settings) -> AsyncIterator[None]:
    """The run's database refuses new connections and loses its open ones (the server, and every
    other database on it, stay up)."""
    url = make_url(settings.database_url)
    admin = await asyncpg.connect(host=url.host, port=url.port, user=url.username, database="postgres")
    try:
        await admin.execute(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                            url.database)
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS true')
        await admin.close()


async def test_a_database_outage_longer_than_the_retry_budget_leaves_no_run_stuck(hostile, make_site, sessions):
    set_faults(hostile, delay_seconds=0.3)
    site = await make_site(keywords=40, synthetic=True)
    run_id = await start_and_wait_for_id(hostile, sessions, site.id)

    async def at_stage_4() -> bool:
        return 4 in await stage_rows(sessions, run_id)

    await wait_for(at_stage_4, timeout=60)
    async with database_refusing_connections(hostile):
        await asyncio.sleep(12)  # about ten retry budgets
    set_faults(hostile)
    engine = make_engine(hostile, pool_size=2)  # the fixture's pooled connections were cut
    fresh = make_sessionmaker(engine)
    try:
        run = await wait_status(fresh, run_id, "completed", "failed", timeout=120)
        assert run.status == "completed", run.error_message
        outcome = await site_outcome(deps_for(hostile, fresh), site.id)
        assert outcome["content_in_review"] == outcome["tasks"] > 0
        assert outcome["images_generated"] == outcome["images"]
        assert outcome["credits_used"] == outcome["ledger_charged"]
    finally:
        await engine.dispose()
