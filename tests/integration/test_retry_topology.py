"""The retry exchange routes each retry to exactly one delay queue, on the real broker.

RabbitMQ's headers exchange ignores headers whose names start with `x-`: bound on such a header,
every delay queue matched every retry, and one failing message became 4, 16, 64 ... copies."""

from __future__ import annotations

import uuid

import aio_pika

from shared.messaging import make_broker
from shared.settings import Settings
from shared.topology import LEGACY_RETRY_TIER_HEADER, RETRY_TIER_HEADER, Topology, declare_topology
from tests.e2e.conftest import delete_topology


async def depths(settings: Settings, names: list[str]) -> list[int]:
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        return [int((await channel.declare_queue(n, passive=True)).declaration_result.message_count or 0)
                for n in names]


async def test_a_retry_lands_in_the_delay_queue_of_its_tier_only(settings: Settings) -> None:
    own = settings.model_copy(update={"queue_prefix": f"{settings.queue_prefix}r{uuid.uuid4().hex[:4]}",
                                      "retry_base_seconds": 600.0})  # nothing expires during the test
    topology = Topology.from_settings(own)
    broker = make_broker(own)
    try:
        async with broker:
            await broker.connect()
            # a broker declared by an older version still has bindings on the old header: they go
            retry = await broker.declare_exchange(topology.retry_exchange)
            for tier in range(len(topology.retry_delays_seconds)):
                queue = await broker.declare_queue(topology.retry_queue(tier))
                await queue.bind(retry, arguments={"x-match": "all", LEGACY_RETRY_TIER_HEADER: str(tier)})
            await declare_topology(broker, topology)
            for tier in (1, 3, 3):
                await broker.publish(b"{}", exchange=topology.retry_exchange, routing_key="stage.4.batch",
                                     headers={RETRY_TIER_HEADER: str(tier), LEGACY_RETRY_TIER_HEADER: str(tier)},
                                     persist=True)
            names = [topology.retry_queue(t).name for t in range(len(topology.retry_delays_seconds))]
            assert await depths(own, names) == [0, 1, 0, 2]
    finally:
        await delete_topology(own)
