"""A stage process counts what its stage's consumers hold at once, on the real broker: the window of a
runs running share that as their windows (`consumers.planning.shared_slots`)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import replace

import aio_pika

from consumers.app import PREFETCH_PER_SLOT, count_consumer_slots
from consumers.deps import Deps
from shared.messaging import make_broker
from shared.settings import Settings
from shared.topology import Topology, declare_topology
from tests.e2e.conftest import delete_topology


async def hold(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    """A consumer that never acks: the queue is only counted here."""


async def wait_for_slots(deps: Deps, expected: int) -> int:
    """The count once it is `expected`, or after 5 s of recounts."""
    for _ in range(100):
        if deps.consumer_slots == expected:
            break
        await asyncio.sleep(0.05)
    return deps.consumer_slots


async def test_every_replica_of_the_stage_is_counted_and_a_stopped_one_is_not(settings: Settings, deps: Deps,
                                                                             monkeypatch) -> None:
    monkeypatch.setattr("consumers.app.RECOUNT_SLOTS_SECONDS", 0.1)
    own = settings.model_copy(update={"queue_prefix": f"{settings.queue_prefix}s{uuid.uuid4().hex[:4]}"})
    topology, counted = Topology.from_settings(own), replace(deps, consumer_slots=0)
    broker = make_broker(own)
    try:
        async with broker:
            await declare_topology(broker, topology)
            connection = await aio_pika.connect(own.amqp_url)
            async with connection:
                replicas = []
                for _ in range(3):  # three replicas of stage 4 consuming its batch queue, and one of stage 5
                    channel = await connection.channel()
                    queue = await channel.declare_queue(topology.batch_queue(4).name, passive=True)
                    replicas.append((queue, await queue.consume(hold)))
                other = await (await connection.channel()).declare_queue(topology.batch_queue(5).name, passive=True)
                await other.consume(hold)
                counting = asyncio.create_task(count_consumer_slots(counted, broker, topology, 4, concurrency=5))
                try:
                    assert await wait_for_slots(counted, 3 * 5 * PREFETCH_PER_SLOT) == 30
                    queue, tag = replicas.pop()
                    await queue.cancel(tag)  # a replica stops
                    assert await wait_for_slots(counted, 2 * 5 * PREFETCH_PER_SLOT) == 20
                finally:
                    counting.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await counting
    finally:
        await delete_topology(own)
