"""Transactional outbox: events are rows written with the change, relayed with publisher confirms.

The rows hold validated models dumped to JSON; the relay sends each through the declared publisher
of its routing key (`shared.publishers`), which returns once the broker confirmed it.

A row is deleted in the transaction that sends it, and that transaction commits only after the
broker confirmed every send, so a crash can cause a re-send (consumers are idempotent) but never a
loss.

A batch finish, which queues the next batch messages of its run, reserves its rows instead: they are
written with `available_at` a little in the future and the finishing process sends them itself right
after its commit (`OutboxRelay.send_reserved`). That saves the relay's transaction (BEGIN, its
statement, COMMIT) and the hand-over to the relay's task. The sweep leaves a reserved row alone until
its reservation runs out, so it is sent once; if the process dies before sending, or its send fails,
the sweep sends it then, as any other row.

A sent reserved row is deleted by the next statement its process sends anyway: a batch claim
(`DELETE_SENT_CTE`, `take_sent_ids`), or the relay's next poll (`DUE`) when no claim comes first. A
statement of its own per batch was one of the batch's round trips. Until the deletion commits, the
row is still reserved; only a process that dies in that moment leaves rows that the sweep sends
again once their reservation has run out (consumers are idempotent).

The sweep runs at once when its process wakes it, and every `poll_seconds` otherwise, for rows no
process of their own sends (a process that died, one that has no relay); such a poll is one
autocommit statement (`DUE`) and only finds rows to take now and then, so the sweep's transaction
runs only then (a transaction for every poll cost ten processes 30 statements a second, whatever
the load).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import BigInteger, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import autocommit_session
from shared.events import Message
from shared.models import OutboxMessage

log = logging.getLogger("automation.outbox")
RELAY_CHUNK = 500
# How long a reserved row waits for the process that wrote it before the sweep may send it: far longer
# than a send right after a commit takes, short enough that a batch message lost with a crashed process
# is sent again soon (the batch was queued, so nothing else would re-send it).
RESERVE_SECONDS = 30.0


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
     WHERE id IN (SELECT id FROM outbox WHERE available_at <= now() ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)
 RETURNING id, routing_key, payload
""").columns(id=BigInteger, routing_key=String, payload=JSONB)
# Reserved rows that were sent (gone once the deletion commits; a lost deletion only re-sends them after
# the reservation), and reserved rows whose send failed, handed to the sweep at once. The ids come as
# one comma-separated string (:sent_ids): an array parameter would cost every new connection asyncpg's
# type introspection query (about 10 ms of the server's CPU). `DELETE_SENT_CTE` is the deletion as a
# common table expression for a statement that carries it (PostgreSQL runs a data-modifying WITH
# query whether or not the statement reads it).
SENT_IDS = "CAST(string_to_array(:sent_ids, ',') AS bigint[])"
DELETE_SENT_CTE = f"deleted_sent AS (DELETE FROM outbox WHERE id = ANY({SENT_IDS}))"
RELEASE = text(f"UPDATE outbox SET available_at = now() WHERE id = ANY({SENT_IDS})")
# A poll of the sweep: deletes the sent rows no claim deleted, and says whether any row is due.
DUE = text(f"""
    WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)), {DELETE_SENT_CTE}
    SELECT EXISTS (SELECT FROM outbox WHERE available_at <= now()) FROM relaxed
""")


@dataclass(frozen=True)
class ReservedRow:
    """An outbox row a transaction wrote reserved for its own process to send after its commit."""

    id: int
    routing_key: str
    payload: Mapping[str, Any]


class Sender(Protocol):
    """Where the relay publishes: the declared publishers of its broker (`shared.publishers`)."""

    async def send(self, routing_key: str, payload: Mapping[str, object]) -> None: ...


class OutboxRelay:
    """Sends unsent outbox rows. `wake()` after a commit; `run()` also sweeps periodically."""

    # rows a batch finish writes wait this long for `send_reserved` before the sweep takes them
    reserve_seconds = RESERVE_SECONDS

    def __init__(self, sessions: async_sessionmaker[AsyncSession], sender: Sender, poll_seconds: float) -> None:
        self.sessions = sessions
        self.sender = sender
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._sent_ids: list[str] = []  # reserved rows sent and not deleted yet
        self.sent = 0

    def wake(self) -> None:
        self._wake.set()

    async def send_reserved(self, rows: Sequence[ReservedRow]) -> None:
        """Send rows this process reserved (their transaction has committed); they are deleted later
        (`take_sent_ids`, `delete_sent`). Never raises: the batch that wrote them is done whatever
        happens here. If a send fails the rows are released to the sweep at once; if even that fails,
        their reservation runs out and the sweep sends them then."""
        if not rows:
            return
        try:
            await asyncio.gather(*(self.sender.send(row.routing_key, row.payload) for row in rows))
        except Exception:
            log.warning("sending %d reserved outbox rows failed; the relay sends them", len(rows), exc_info=True)
            with contextlib.suppress(Exception):
                async with autocommit_session(self.sessions) as session:
                    await session.execute(RELEASE, {"sent_ids": ",".join(str(row.id) for row in rows)})
            self.wake()
            return
        self.sent += len(rows)
        self._sent_ids += (str(row.id) for row in rows)

    def take_sent_ids(self) -> str:
        """The sent reserved rows still to delete, as `DELETE_SENT_CTE`'s :sent_ids, for a statement
        that deletes them; the caller hands them back (`put_back_sent_ids`) if that statement fails."""
        ids, self._sent_ids = ",".join(self._sent_ids), []
        return ids

    def put_back_sent_ids(self, ids: str) -> None:
        if ids:
            self._sent_ids += ids.split(",")

    async def delete_sent(self) -> None:
        """Delete the sent reserved rows no claim has deleted (a process stopping). Never raises but
        when cancelled: rows left behind are sent once more after their reservation."""
        with contextlib.suppress(Exception):
            await self.due()

    async def due(self) -> bool:
        """Whether any row is due for the sweep, in one statement that also deletes the sent reserved
        rows no claim deleted."""
        ids = self.take_sent_ids()
        try:
            async with autocommit_session(self.sessions) as session:
                return bool(await session.scalar(DUE, {"sent_ids": ids}))
        except BaseException:
            self.put_back_sent_ids(ids)
            raise

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
        """Relay forever: at once when woken, else every `poll_seconds` (catches other crashes) when a
        poll finds rows due."""
        while True:
            woken = False
            with contextlib.suppress(TimeoutError):
                woken = await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            self._wake.clear()
            try:
                if woken or await self.due():
                    await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # broker or database away: the rows stay unsent and are retried
                log.exception("outbox relay failed; will retry")
                await asyncio.sleep(self.poll_seconds)


class NoRelay:
    """For code that pumps the outbox itself (tests, benchmarks) or has none: nothing is reserved (a
    finish's rows are for the sweep at once), nothing is sent directly, waking does nothing."""

    reserve_seconds = 0.0

    def wake(self) -> None:
        pass

    async def send_reserved(self, rows: Sequence[ReservedRow]) -> None:
        pass

    def take_sent_ids(self) -> str:
        return ""

    def put_back_sent_ids(self, ids: str) -> None:
        pass
