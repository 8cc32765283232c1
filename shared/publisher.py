"""Publishing contract messages from outside the consumers: the client library and the scheduler."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from prometheus_client import CollectorRegistry

from shared.events import Message
from shared.messaging import make_broker
from shared.publishers import declare_publishers
from shared.settings import Settings
from shared.topology import Topology, declare_topology


class Publisher:
    """A broker connection that publishes contract messages and returns once the broker confirmed
    each (publisher confirms): a returned call means the message is durable in RabbitMQ. The main
    app's client (`producers.client`) and the scheduler publish through it."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None,
                 app_name: str = "client") -> None:
        """`registry`: count the published messages there (FastStream's `faststream_published_*`)."""
        self.topology = Topology.from_settings(settings)
        self.broker = make_broker(settings, registry=registry, app_name=app_name)
        self.publishers = declare_publishers(self.broker, self.topology)

    async def __aenter__(self) -> Self:
        await self.broker.start()
        await declare_topology(self.broker, self.topology)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.broker.stop()

    async def send(self, command: Message) -> Message:
        """Publish any contract message (validated by its model) and wait for the confirm."""
        await self.publishers.send(command.routing_key(), command.model_dump(mode="json"))
        return command

    async def control_consumers(self) -> int:
        """How many processes consume run commands right now; 0 means run control is down.

        A command published then is not lost: it waits in the durable queue and takes effect whenever
        control comes back, hours later perhaps. A caller that wants an answer now (the API's run_now)
        asks this first and publishes nothing. Re-declaring the queue with its own arguments costs one
        round trip and answers the broker's live count (a passive declare would too, but would close the
        shared channel if the queue had been deleted).
        """
        queue = await self.broker.declare_queue(self.topology.control_queue())
        declared = await queue.declare()
        return declared.consumer_count or 0
