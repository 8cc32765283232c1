"""The typed client the main app imports to start, pause and resume runs.

Every call returns only after the broker confirmed the message (publisher confirms), so a
returned call means the command is durable in RabbitMQ.
"""

from __future__ import annotations

from shared.events import PauseRun, ResumeRun, StartRun
from shared.publisher import Publisher


class AutomationClient(Publisher):
    """`async with AutomationClient(settings) as client: await client.start_run(site_id)`."""

    async def start_run(self, site_id: int, *, trigger: str = "manual", requested_by: str = "main-app",
                        idempotency_key: str | None = None) -> StartRun:
        command = StartRun(site_id=site_id, trigger=trigger, requested_by=requested_by,
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
