"""The typed client the main app imports to start, pause and resume runs.

Every call returns only after the broker confirmed the message (publisher confirms), so a
returned call means the command is durable in RabbitMQ.
"""

from __future__ import annotations

from types import TracebackType

from prometheus_client import CollectorRegistry

from shared.events import Message, PauseRun, ResumeRun, StartRun
from shared.messaging import make_broker
from shared.outbox import publish
from shared.settings import Settings
from shared.topology import Topology, declare_topology


class AutomationClient:
    """`async with AutomationClient(settings) as client: await client.start_run(site_id)`."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None,
                 app_name: str = "client") -> None:
        """`registry`: count the published messages there (FastStream's `faststream_published_*`)."""
        self.topology = Topology.from_settings(settings)
        self.broker = make_broker(settings, registry=registry, app_name=app_name)

    async def __aenter__(self) -> AutomationClient:
        await self.broker.start()
        await declare_topology(self.broker, self.topology)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.broker.stop()

    async def send(self, command: Message) -> Message:
        """Publish any contract message (validated by its model) and wait for the confirm."""
        await publish(self.broker, self.topology, command.routing_key(), command.model_dump(mode="json"))
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

    async def start_run(self, site_id: int, *, trigger: str = "manual", requested_by: str = "main-app",
                        idempotency_key: str | None = None) -> StartRun:
        command = StartRun(site_id=site_id, trigger=trigger, requested_by=requested_by,  # type: ignore[arg-type]
                           idempotency_key=idempotency_key)
        await self.send(command)
        return command

    async def pause_run(self, run_id: str, reason: str = "paused by user") -> PauseRun:
        command = PauseRun(run_id=run_id, reason=reason)
        await self.send(command)
        return command

    async def resume_run(self, run_id: str) -> ResumeRun:
        command = ResumeRun(run_id=run_id)
        await self.send(command)
        return command
