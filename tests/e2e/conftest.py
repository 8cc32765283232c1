"""End-to-end fixtures: real consumer processes on a queue prefix of their own."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import aio_pika
import pytest

from shared.settings import Settings
from shared.supervisor import ConsumerFleet
from shared.topology import Topology


async def delete_topology(settings: Settings) -> None:
    """Remove every exchange and queue of a prefix (the test's own)."""
    topology = Topology.from_settings(settings)
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        names = {q.name for q, _ in topology.bindings()} | {topology.dead_letter_queue.name}
        names |= {topology.retry_queue(t).name for t in range(len(topology.retry_delays_seconds))}
        for name in names:
            await channel.queue_delete(name)
        for exchange in (topology.exchange, topology.dead_letter_exchange, topology.retry_exchange):
            await channel.exchange_delete(exchange.name)


@pytest.fixture(scope="module")
async def e2e_settings(settings: Settings, sessions) -> AsyncIterator[Settings]:
    own = settings.model_copy(update={"queue_prefix": f"{settings.queue_prefix}{uuid.uuid4().hex[:4]}"})
    yield own
    await delete_topology(own)


async def wait_for(check: Callable[[], Awaitable[object]], timeout: float = 120.0, every: float = 0.3) -> object:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture(scope="module")
def fleet(e2e_settings: Settings, output_dir) -> Iterator[ConsumerFleet]:
    """control and stage1..stage7 as separate OS processes, two replicas of stages 4 and 6."""
    processes = ConsumerFleet(e2e_settings, concurrency=4, log_dir=output_dir / f"fleet-{e2e_settings.queue_prefix}")
    processes.start_all()
    processes.start("stage4")
    processes.start("stage6")
    yield processes
    processes.stop()
