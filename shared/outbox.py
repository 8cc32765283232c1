"""Transactional outbox: events are rows written with the change, relayed with publisher confirms.

The rows hold validated models dumped to JSON; the relay sends each through the declared publisher
of its routing key (`shared.publishers`), which returns once the broker confirmed it.

A row is deleted in the transaction that sends it, and that transaction commits only after the
broker confirmed every send, so a crash can cause a re-send (consumers are idempotent) but never a
loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Protocol

from sqlalchemy import BigInteger, String, text
from sqlalchemy.dialects.postgresql import JSONB
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


# The oldest unsent rows no other relay holds, deleted in the statement that takes them (the delete
# counts only if the transaction commits, after the sends). A lost delete only re-sends (consumers are
# idempotent), so the commit does not wait for fsync.
TAKE = text("""
    WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
    DELETE FROM outbox USING relaxed
     WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)
 RETURNING id, routing_key, payload
""").columns(id=BigInteger, routing_key=String, payload=JSONB)


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
        """Relay every unsent row this process can lock; returns how many were sent.

        A chunk costs one statement: it deletes the rows it takes (`TAKE`) and the sends follow in the
        same transaction, so a failed send rolls the delete back and the rows stay for the next try, and
        a crash before the commit leaves them too (re-sent then: consumers are idempotent). Only the
        commit makes the delete real, and it comes after every send of the chunk was confirmed."""
        total = 0
        while True:
            async with self.sessions() as session, session.begin():
                rows = sorted((await session.execute(TAKE, {"limit": RELAY_CHUNK})).all())
                if not rows:
                    return total
                await asyncio.gather(*(self.sender.send(r.routing_key, r.payload) for r in rows))
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
