"""What the hostile bench sees on the broker: taps that count messages, and a raw publisher.

A tap is a queue of the bench's own (exclusive: it goes when the bench's connection closes) bound to
one of the pipeline's exchanges so that it receives a copy of everything routed through it, or a
consumer on an existing queue (the dead letters). Messages are consumed without acknowledgement as
they arrive, so a per-message expiration (the retries carry one) never drops a copy before it is
counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from shared.settings import Settings
from shared.topology import ATTEMPT_HEADER, Topology

REASON_HEADER = "x-dead-letter-reason"
EXCHANGE_TYPES = ("headers", "topic", "direct", "fanout")
KEEP_BODY = 64 * 1024  # bodies above this are counted, not kept


@dataclass(frozen=True)
class Seen:
    message_id: str
    routing_key: str
    headers: dict[str, Any]
    body: bytes | None  # None when larger than KEEP_BODY

    @property
    def attempt(self) -> int:
        """The pipeline's attempt counter (1 when absent: a first delivery)."""
        try:
            return int(self.headers.get(ATTEMPT_HEADER, 1) or 1)
        except (TypeError, ValueError):
            return -1

    @property
    def reason(self) -> str:
        value = self.headers.get(REASON_HEADER)
        return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")

    def payload(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body or b"")
        except (ValueError, RecursionError):
            return {}
        return value if isinstance(value, dict) else {}


@dataclass
class Tap:
    """Everything one queue received, in order, and when it last received something."""

    label: str
    seen: list[Seen] = field(default_factory=list)
    last_at: float = field(default_factory=time.monotonic)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        body = message.body if len(message.body) <= KEEP_BODY else None
        self.seen.append(Seen(str(message.message_id or ""), message.routing_key or "",
                              dict(message.headers or {}), body))
        self.last_at = time.monotonic()

    def by_id(self) -> Counter[str]:
        return Counter(m.message_id for m in self.seen)

    def by_id_attempt(self) -> Counter[tuple[str, int]]:
        return Counter((m.message_id, m.attempt) for m in self.seen)

    def quiet_for(self) -> float:
        return time.monotonic() - self.last_at


async def exchange_type(connection: AbstractRobustConnection, name: str) -> str | None:
    """The type of an existing exchange, or None if it does not exist. AMQP's passive declare only
    says whether it exists; the type is found by redeclaring it as each type on a throwaway channel
    (the same type succeeds and changes nothing, another closes the channel with 406)."""
    if not await _declares(connection, name, passive=True):
        return None
    for kind in EXCHANGE_TYPES:
        if await _declares(connection, name, kind=kind):
            return kind
    return "unknown"


async def _declares(connection: AbstractRobustConnection, name: str, *, passive: bool = False,
                    kind: str = "topic") -> bool:
    channel = await connection.channel()
    try:
        await channel.declare_exchange(name, aio_pika.ExchangeType(kind), durable=True, passive=passive)
        return True
    except aio_pika.exceptions.ChannelClosed:
        return False
    finally:
        if not channel.is_closed:
            await channel.close()


class BrokerTaps:
    """One connection holding the bench's taps and publishing its hostile messages."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topology = Topology.from_settings(settings)
        self.connection: AbstractRobustConnection | None = None
        self.channel: AbstractChannel | None = None
        self.notes: list[str] = []

    async def __aenter__(self) -> BrokerTaps:
        self.connection = await aio_pika.connect_robust(self.settings.amqp_url)
        self.channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()

    async def tap_exchange(self, exchange: str, label: str) -> Tap:
        """A copy of every message routed through `exchange`, whatever its type: one binding with
        routing key `#` and `x-match: all` and no other header matches everything on a topic,
        headers or fanout exchange (each ignores the part it does not use); a direct exchange gets
        one binding per routing key the pipeline uses."""
        assert self.connection is not None and self.channel is not None
        kind = await exchange_type(self.connection, exchange)
        if kind is None:
            raise RuntimeError(f"exchange {exchange} does not exist (is the topology declared?)")
        tap = Tap(label)
        queue = await self.channel.declare_queue(f"{self.settings.queue_prefix}.hostile-tap.{label}",
                                                 exclusive=True, auto_delete=True)
        if kind == "direct":
            keys = {key for _, key in self.topology.bindings()}
            for key in sorted(keys):
                await queue.bind(exchange, routing_key=key)
            self.notes.append(f"{exchange} is a direct exchange: tapped {len(keys)} pipeline routing keys")
        else:
            await queue.bind(exchange, routing_key="#", arguments={"x-match": "all"})
        await queue.consume(tap.on_message, no_ack=True)
        return tap

    async def tap_queue(self, name: str, label: str) -> Tap:
        """Consume an existing queue (the dead letters): its messages are taken, and counted."""
        assert self.channel is not None
        tap = Tap(label)
        queue = await self.channel.declare_queue(name, passive=True)
        await queue.consume(tap.on_message, no_ack=True)
        return tap

    async def publish(self, routing_key: str, body: bytes, message_id: str) -> bool:
        """Publish raw bytes to the events exchange as the pipeline's own messages are published;
        False when no queue is bound to the routing key (the broker returned it)."""
        assert self.channel is not None
        exchange = await self.channel.get_exchange(self.topology.exchange.name, ensure=False)
        message = aio_pika.Message(body, message_id=message_id, content_type="application/json",
                                   delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        try:
            await exchange.publish(message, routing_key=routing_key, mandatory=True)
        except aio_pika.exceptions.DeliveryError:
            return False
        return True

    async def queue_depths(self, names: list[str]) -> dict[str, int]:
        """Messages ready in each queue (0 for a queue that does not exist)."""
        assert self.connection is not None
        depths = {}
        for name in names:
            channel = await self.connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
                depths[name] = int(queue.declaration_result.message_count or 0)
            except aio_pika.exceptions.ChannelClosed:
                depths[name] = 0
            finally:
                if not channel.is_closed:
                    await channel.close()
        return depths


async def wait_quiet(taps: list[Tap], quiet: float, timeout: float, until: Any = None) -> bool:
    """Wait until `until()` (if given) holds and no tap received anything for `quiet` seconds;
    False if `timeout` ran out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (until is None or until()) and all(tap.quiet_for() >= quiet for tap in taps):
            return True
        await asyncio.sleep(0.2)
    return False
