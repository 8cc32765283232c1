"""Broker factory and the failure routing every consumer shares.

Exceptions drive acknowledgement: a malformed message is dead-lettered at once with its
reason; any other error is retried through the delay queues with exponential backoff and
jitter, counting attempts in our own header, and dead-lettered after the last attempt.
The original delivery is acknowledged only once its retry or dead-letter copy is confirmed.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from faststream import BaseMiddleware
from faststream.exceptions import SubscriberNotFound
from faststream.rabbit import RabbitBroker
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from shared.settings import Settings
from shared.topology import ATTEMPT_HEADER, RETRY_TIER_HEADER, Topology

log = logging.getLogger("automation.messaging")

ExhaustedHook = Callable[[dict[str, Any], str], Awaitable[None]]
RetryHook = Callable[[dict[str, Any], int, float, str], Awaitable[None]]


class PoisonMessage(Exception):
    """A message that can never succeed (wrong schema, unknown type, inconsistent ids)."""


POISON_ERRORS: tuple[type[BaseException], ...] = (
    PoisonMessage, ValidationError, json.JSONDecodeError, UnicodeDecodeError, SubscriberNotFound,
)


def describe(error: BaseException) -> str:
    """One line naming the error, for logs and the dead-letter header."""
    if isinstance(error, ValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()[:5])
        return f"schema validation failed: {problems}"
    return f"{type(error).__name__}: {error}"[:1000]


class FailureRouter:
    """Decides what happens to a message whose handler raised."""

    def __init__(self, settings: Settings, topology: Topology) -> None:
        self.settings = settings
        self.topology = topology
        self.broker: RabbitBroker | None = None
        self.on_exhausted: ExhaustedHook | None = None
        self.on_retry: RetryHook | None = None

    def backoff_seconds(self, attempt: int) -> tuple[int, float]:
        """(delay tier, jittered seconds) for the retry after `attempt` failed tries."""
        tiers = self.topology.retry_delays_seconds
        tier = min(attempt - 1, len(tiers) - 1)
        return tier, tiers[tier] * random.uniform(0.8, 1.2)

    async def dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        assert self.broker is not None
        headers = dict(message.headers or {})
        headers.update({"x-dead-letter-reason": reason[:1000], "x-original-routing-key": message.routing_key or ""})
        await self.broker.publish(message.body, exchange=self.topology.dead_letter_exchange,
                                  routing_key=message.routing_key or "unrouted", headers=headers, persist=True,
                                  content_type=message.content_type, message_id=message.message_id)
        log.error("dead-lettered message %s (%s): %s", message.message_id, message.routing_key, reason)

    async def retry(self, message: AbstractIncomingMessage, error: BaseException) -> None:
        assert self.broker is not None
        attempt = int((message.headers or {}).get(ATTEMPT_HEADER, 1) or 1)  # type: ignore[call-overload]
        reason = describe(error)
        if attempt >= self.settings.max_attempts:
            await self.dead_letter(message, f"gave up after {attempt} attempts: {reason}")
            if self.on_exhausted is not None:
                await self.on_exhausted(_payload(message), f"gave up after {attempt} attempts: {reason}")
            return
        tier, delay = self.backoff_seconds(attempt)
        headers = dict(message.headers or {})
        headers.update({ATTEMPT_HEADER: attempt + 1, RETRY_TIER_HEADER: str(tier)})
        await self.broker.publish(message.body, exchange=self.topology.retry_exchange,
                                  routing_key=message.routing_key or "", headers=headers, persist=True,
                                  content_type=message.content_type, message_id=message.message_id,
                                  expiration=delay)
        log.warning("attempt %d of %s (%s) failed, retry in %.1fs: %s", attempt, message.message_id,
                    message.routing_key, delay, reason)
        if self.on_retry is not None:
            try:
                await self.on_retry(_payload(message), attempt, delay, reason)
            except Exception:  # the retry is scheduled; a log line is not worth failing it
                log.warning("could not record the retry in the run log", exc_info=True)


def _payload(message: AbstractIncomingMessage) -> dict[str, Any]:
    try:
        payload = json.loads(message.body)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def failure_middleware(router: FailureRouter) -> type[BaseMiddleware]:
    """A broker middleware class bound to `router` (FastStream builds one per message)."""

    class FailureMiddleware(BaseMiddleware):
        async def after_processed(self, exc_type: type[BaseException] | None = None,
                                  exc_val: BaseException | None = None,
                                  exc_tb: TracebackType | None = None) -> bool | None:
            if exc_val is None or not isinstance(exc_val, Exception):
                return False
            raw: AbstractIncomingMessage = self.msg  # type: ignore[assignment]
            if isinstance(exc_val, POISON_ERRORS):
                await router.dead_letter(raw, describe(exc_val))
            else:
                await router.retry(raw, exc_val)
            return True  # handled: the original delivery is acknowledged

    return FailureMiddleware


def make_broker(settings: Settings, router: FailureRouter | None = None, *,
                registry: CollectorRegistry | None = None, app_name: str = "automation",
                **kwargs: Any) -> RabbitBroker:
    """A broker wired with the failure routing (the router learns its broker here) and, given a
    Prometheus `registry`, FastStream's metrics (`faststream_*`, labelled `app_name`).

    Failures are still counted although the failure middleware swallows them: the Prometheus
    middleware counts in its `consume_scope`, which wraps the handler call and sees the exception
    (status `error`, and `faststream_received_processed_messages_exceptions_total`), while the
    failure middleware acts in `after_processed`, when the middleware stack is left afterwards.
    The failure middleware stays first, the outermost, so this holds even if it ever moves into
    `consume_scope` (pinned by `tests/unit/test_metrics.py`).
    """
    middlewares: list[Any] = []
    if router is not None:
        middlewares.append(failure_middleware(router))
    if registry is not None:
        middlewares.append(RabbitPrometheusMiddleware(registry=registry, app_name=app_name))
    broker = RabbitBroker(settings.amqp_url, middlewares=middlewares, log_level=logging.DEBUG, **kwargs)
    if router is not None:
        router.broker = broker
    return broker
