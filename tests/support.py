"""The consumers' real subscribers on FastStream's in-memory broker, for the integration tests.

`Bus` builds one broker with the subscribers of every consumer process as `consumers.app` builds
them (handlers, stage check, failure middleware, the `Deps` and failure routing in the FastStream
context) and the declared publishers; the real outbox relay publishes into it. The in-memory broker
has no queues, so the bus plays RabbitMQ's part: a subscriber on each exchange records what is
published; a message on the events exchange is queued for every queue `declare_topology` binds to its
key, and `pump` hands the queued messages, first in first out, to the subscriber of their queue until
the outbox and the queues are empty. A retry the failure middleware sends to the retry exchange comes
back once the queues are empty (its delay queue expiring, without the wait), so the attempts run out
as they would; dead letters are recorded. A handler that raises fails the pump or delivery with its
exception, once the failure middleware has routed it, unless the test expects failures
(`allow_failures=True`) and asserts on `retried` and `dead_lettered` itself.
The end-to-end tests run the same subscribers on RabbitMQ, with the real delays.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Self

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from faststream import BaseMiddleware, FastStream
from faststream.rabbit import RabbitExchange, RabbitQueue, TestRabbitBroker
from faststream.rabbit.annotations import RabbitMessage
from faststream.rabbit.testing import apply_pattern
from sqlalchemy import delete, text

from consumers.app import PROCESSES, consumer_context, subscribe
from consumers.deps import Deps
from shared.events import ProcessBatch, StartRun
from shared.messaging import describe, make_broker
from shared.models import OutboxMessage
from shared.outbox import OutboxRelay, add_events
from shared.publishers import declare_publishers
from shared.settings import Settings
from shared.topology import ATTEMPT_HEADER, Topology


async def drain_outbox(deps: Deps) -> list[tuple[str, dict[str, Any]]]:
    """Take every pending outbox message (oldest first) without publishing it."""
    async with deps.sessions() as session, session.begin():
        rows = (await session.execute(
            delete(OutboxMessage).returning(OutboxMessage.id, OutboxMessage.routing_key, OutboxMessage.payload)
        )).all()
    return [(r.routing_key, r.payload) for r in sorted(rows)]


@dataclass(frozen=True)
class Failure:
    """A message the failure middleware sent to the retry or the dead-letter exchange."""

    key: str
    payload: dict[str, Any]
    headers: dict[str, Any]

    @property
    def reason(self) -> str:
        """Why it was dead-lettered (a retry says which attempt comes next)."""
        return str(self.headers.get("x-dead-letter-reason") or f"attempt {self.headers.get(ATTEMPT_HEADER)}")


class UnexpectedFailure(AssertionError):
    """A handler raised where the test expected no failure (its message was retried or dead-lettered)."""


_OPEN: list[Bus] = []


async def close_buses() -> None:
    """Stop every bus still running (the integration tests' autouse fixture calls this after each test)."""
    while _OPEN:
        await _OPEN.pop().close()


class Bus:
    """Pumps messages through the real subscribers until none are left; keeps every message published
    (`seen`), retried (`retried`) and dead-lettered (`dead_lettered`), for assertions."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.topology = Topology.from_settings(deps.settings)
        self.broker = make_broker(deps.settings)
        self.errors: list[Exception] = []
        self.broker.add_middleware(self._observer())  # inside the failure middleware, which stays outermost
        for process in PROCESSES:
            subscribe(self.broker, self.topology, process, 1, lambda: deps)
        self.consumers = {sub.queue.name: sub for sub in self.broker.subscribers}  # type: ignore[attr-defined]
        self.publishers = declare_publishers(self.broker, self.topology)
        self.relay = OutboxRelay(deps.sessions, self.publishers, deps.settings.outbox_poll_seconds)
        FastStream(self.broker, context=consumer_context(deps, self.broker, self.topology))
        self.bindings = [(queue.name, key) for queue, key in self.topology.bindings()]
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.retried: list[Failure] = []
        self.dead_lettered: list[Failure] = []
        self.queued: deque[tuple[str, AbstractIncomingMessage]] = deque()
        self.delayed: list[AbstractIncomingMessage] = []
        self._tap(self.topology.exchange, self._published)
        self._tap(self.topology.retry_exchange, self._retried)
        self._tap(self.topology.dead_letter_exchange, self._dead_lettered)
        self._running: AsyncExitStack | None = None

    def _observer(self) -> type[BaseMiddleware]:
        """A middleware that only notes what a handler raised, so an unexpected failure fails the test
        with its own traceback (the failure middleware, outside it, then routes it as it would)."""
        errors = self.errors

        class ErrorObserver(BaseMiddleware):
            async def after_processed(self, exc_type: type[BaseException] | None = None,
                                      exc_val: BaseException | None = None, exc_tb: Any = None) -> bool:
                if isinstance(exc_val, Exception):
                    errors.append(exc_val)
                return False

        return ErrorObserver

    def _tap(self, exchange: RabbitExchange, record: Any) -> None:
        """A subscriber taking everything published on `exchange` (a headers exchange ignores the key)."""

        async def tap(body: Any, message: RabbitMessage) -> None:
            record(message.raw_message)

        self.broker.subscriber(RabbitQueue(f"{exchange.name}.bus-tap", routing_key="#"), exchange=exchange)(tap)

    def _published(self, raw: AbstractIncomingMessage) -> None:
        self.seen.append((raw.routing_key or "", json.loads(raw.body)))
        self._route(raw)

    def _route(self, raw: AbstractIncomingMessage) -> None:
        """Queue `raw` for every queue bound to its routing key, as the topic exchange would."""
        queues = dict.fromkeys(name for name, key in self.bindings if apply_pattern(key, raw.routing_key or ""))
        self.queued.extend((name, raw) for name in queues)

    def _retried(self, raw: AbstractIncomingMessage) -> None:
        self.retried.append(Failure(raw.routing_key or "", json.loads(raw.body), dict(raw.headers or {})))
        self.delayed.append(raw)

    def _dead_lettered(self, raw: AbstractIncomingMessage) -> None:
        self.dead_lettered.append(Failure(raw.routing_key or "", json.loads(raw.body), dict(raw.headers or {})))

    async def start(self) -> None:
        """Start the in-memory broker (once; `pump` and `deliver` do it when needed)."""
        if self._running is None:
            self._running = AsyncExitStack()
            await self._running.enter_async_context(TestRabbitBroker(self.broker))
            _OPEN.append(self)

    async def close(self) -> None:
        if self._running is not None:
            running, self._running = self._running, None
            await running.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _consume(self, queue: str, raw: AbstractIncomingMessage, allow_failures: bool) -> None:
        """Hand one message to the subscriber of `queue`, through its middleware."""
        errors = len(self.errors)
        await self.consumers[queue].process_message(raw)  # type: ignore[arg-type]
        if not allow_failures and len(self.errors) > errors:
            error = self.errors[-1]
            raise UnexpectedFailure(f"{raw.routing_key} failed in {queue}: {describe(error)}") from error

    async def send(self, *commands: Any) -> None:
        """Write messages to the outbox, as a handler's transaction does."""
        async with self.deps.sessions() as session, session.begin():
            add_events(session, *commands)

    async def deliver(self, key: str, payload: dict[str, Any], allow_failures: bool = False) -> None:
        """Publish one message on the events exchange and consume it from every queue bound to its key
        now, leaving what is already queued (and what its handlers emit) where it is."""
        await self.start()
        already = len(self.queued)
        await self.publishers.send(key, payload)
        arrived = [self.queued.pop() for _ in range(len(self.queued) - already)]
        for queue, raw in reversed(arrived):
            await self._consume(queue, raw, allow_failures)

    async def pump(self, duplicate_batches: bool = False, allow_failures: bool = False) -> None:
        """Relay the outbox and consume the queues until both are empty; with `duplicate_batches`,
        every batch message is consumed twice."""
        await self.start()
        while True:
            if not self.queued:
                await self.relay.flush()
            if not self.queued and self.delayed:  # the delay queues expire into the events exchange
                for raw in self.delayed:
                    self._route(raw)
                self.delayed.clear()
            if not self.queued:
                return
            queue, raw = self.queued.popleft()
            await self._consume(queue, raw, allow_failures)
            if duplicate_batches and (raw.routing_key or "").endswith(".batch"):
                await self._consume(queue, raw, allow_failures)

    def keys(self, prefix: str) -> list[dict[str, Any]]:
        return [p for k, p in self.seen if k.startswith(prefix)]


async def site_outcome(deps: Deps, site_id: int) -> dict[str, int]:
    """What a user sees of a site after runs: rows per table and credits, plus duplicate checks."""
    from sqlalchemy import text

    queries = {
        "keywords_clustered": "SELECT count(*) FROM keywords WHERE site_id=:s AND cluster_id IS NOT NULL",
        "keywords_eligible_left": "SELECT count(*) FROM keywords WHERE site_id=:s AND status='new' "
                                  "AND cluster_id IS NULL AND disabled=false",
        "clusters": "SELECT count(*) FROM clusters WHERE site_id=:s",
        "ideas": "SELECT count(*) FROM content_ideas WHERE site_id=:s",
        "tasks": "SELECT count(*) FROM tasks WHERE site_id=:s",
        "content": "SELECT count(*) FROM content WHERE site_id=:s",
        "content_in_review": "SELECT count(*) FROM content WHERE site_id=:s AND status='review'",
        "images": "SELECT count(*) FROM images WHERE site_id=:s",
        "images_generated": "SELECT count(*) FROM images WHERE site_id=:s AND status='generated'",
        "tasks_without_one_content": "SELECT count(*) FROM tasks t WHERE site_id=:s AND "
                                     "(SELECT count(*) FROM content c WHERE c.task_id=t.id) <> 1",
        "review_with_pending_images": "SELECT count(*) FROM content c WHERE site_id=:s AND status='review' "
                                      "AND EXISTS (SELECT 1 FROM images i WHERE i.content_id=c.id "
                                      "AND i.status<>'generated')",
        "credits_used": "SELECT coalesce(sum(total_credits_used),0) FROM automation_runs WHERE site_id=:s",
        "ledger_charged": "SELECT coalesce(sum(-l.delta),0) FROM credit_ledger l JOIN automation_runs r "
                          "ON r.id=l.run_id WHERE r.site_id=:s",
        "balance": "SELECT a.credits_balance FROM accounts a JOIN sites s ON s.account_id=a.id WHERE s.id=:s",
        "granted": "SELECT coalesce(sum(l.delta),0) FROM credit_ledger l JOIN sites s ON s.account_id=l.account_id "
                   "WHERE s.id=:s AND l.delta > 0",
    }
    async with deps.sessions() as session:
        return {name: int(await session.scalar(text(sql), {"s": site_id}) or 0) for name, sql in queries.items()}


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


async def stage_batches(deps: Deps, site_id: int, stage: int = 4) -> tuple[Bus, list[ProcessBatch]]:
    """Run the pipeline until `stage`'s first batches are queued; returns them, undelivered."""
    bus = Bus(deps)
    await bus.send(StartRun(site_id=site_id))
    key = ProcessBatch.type_for(stage)
    while True:
        messages = await drain_outbox(deps)
        assert messages, f"stage {stage} was never reached"
        batches = [ProcessBatch.model_validate(p) for k, p in messages if k == key]
        for routing_key, payload in messages:
            if routing_key != key:
                await bus.deliver(routing_key, payload)
        if batches:
            return bus, batches


async def until_a_statement_waits_for_a_lock(deps: Deps, pattern: str) -> None:
    """Return once a statement whose text is LIKE `pattern` waits for a lock (10 s at most). Each look
    is a transaction of its own: within one, PostgreSQL shows pg_stat_activity as it was at its first read."""
    for _ in range(200):
        async with deps.sessions() as session:
            if await session.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                         " AND query LIKE :pattern"), {"pattern": pattern}):
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no statement like {pattern!r} ever waited for a lock")
