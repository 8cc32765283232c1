"""Transactional outbox: events are rows written with the change, relayed with publisher confirms.

The rows hold validated models dumped to JSON; the relay sends each through the declared publisher
of its routing key (`shared.publishers`), which returns once the broker confirmed it.

A row is deleted only after the broker confirmed it, inside the transaction that holds
its row lock, so a crash can cause a re-send (consumers are idempotent) but never a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Protocol

from sqlalchemy import delete, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.events import Message
from shared.models import OutboxMessage

log = logging.getLogger("automation.outbox")
RELAY_CHUNK = 500


def add_events(session: AsyncSession, *events: Message) -> None:
    """Queue events for publishing when (and only if) the session commits."""
    for message in events:
        session.add(OutboxMessage(routing_key=message.routing_key(),
                                  payload=json.loads(message.model_dump_json())))


class Sender(Protocol):
    """Where the relay publishes: the declared publishers of its broker (`shared.publishers`)."""

    async def send(self, routing_key: str, payload: Mapping[str, object]) -> None: ...


class OutboxRelay:
    """Sends unsent outbox rows. `wake()` after a commit; `run()` also sweeps periodically."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], sender: Sender, poll_seconds: float) -> None:
        self.sessions = sessions
        self.sender = sender
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self.sent = 0

    def wake(self) -> None:
        self._wake.set()

    async def flush(self) -> int:
        """Relay every unsent row this process can lock; returns how many were sent."""
        total = 0
        while True:
            async with self.sessions() as session, session.begin():
                # a lost delete only re-sends (consumers are idempotent): no need to wait for fsync
                relaxed = select(func.set_config("synchronous_commit", "off", True)).cte("relaxed")
                rows = (await session.execute(
                    select(OutboxMessage.id, OutboxMessage.routing_key, OutboxMessage.payload)
                    .join(relaxed, true())
                    .order_by(OutboxMessage.id)
                    .limit(RELAY_CHUNK)
                    .with_for_update(of=OutboxMessage, skip_locked=True)
                )).all()
                if not rows:
                    return total
                await asyncio.gather(*(self.sender.send(r.routing_key, r.payload) for r in rows))
                await session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_([r.id for r in rows])))
            total += len(rows)
            self.sent += len(rows)
            if len(rows) < RELAY_CHUNK:
                return total

    async def run(self) -> None:
        """Relay forever: at once when woken, else every `poll_seconds` (catches other crashes)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # broker or database away: the rows stay unsent and are retried
                log.exception("outbox relay failed; will retry")
                await asyncio.sleep(self.poll_seconds)
