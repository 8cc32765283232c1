"""Broker factory and the failure routing every consumer shares.

Exceptions drive acknowledgement, classified once here (`disposition`):
- *poison*: the message itself can never succeed (malformed, out of range, forged, naming a
  state its run is not in). Dead-lettered at once with its reason; it touches no run.
- *fail*: the message is genuine but its work cannot succeed by retrying (the AI provider said
  so, or the run's own data is rejected by the database). Dead-lettered at once and its run failed.
- *retry*: anything else (database or broker away, timeouts, rate limits). Retried through the
  delay queues with exponential backoff and jitter, counting attempts in our own header; after the
  last attempt it is dead-lettered and its run failed.
The original delivery is acknowledged only once its retry or dead-letter copy is confirmed, and
every dead letter carries `x-dead-letter-reason`. Failing the run may itself fail (the database is
the thing that is down): the dead letter stands, and the control process's watchdog re-requests
the run's stage once the database is back (`consumers.watchdog.nudge_stalled_runs`).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Awaitable, Callable
from enum import Enum
from types import TracebackType
from typing import Any

import asyncpg
from aio_pika.abc import AbstractIncomingMessage
from faststream import BaseMiddleware
from faststream.exceptions import SubscriberNotFound
from faststream.rabbit import RabbitBroker
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from sqlalchemy.exc import DataError as SQLDataError

from shared.settings import Settings
from shared.topology import ATTEMPT_HEADER, RETRY_TIER_HEADER, Topology

log = logging.getLogger("automation.messaging")

# The FastStream context key under which a consumer process puts its `FailureRouter`.
FAILURES = "failures"

ExhaustedHook = Callable[[dict[str, Any], str], Awaitable[None]]
RetryHook = Callable[[dict[str, Any], int, float, str], Awaitable[None]]


class PoisonMessage(Exception):
    """A message that can never succeed (wrong schema, unknown type, inconsistent ids, a command
    its run's state contradicts)."""


class Disposition(Enum):
    POISON = "poison"
    FAIL = "fail"
    RETRY = "retry"


# Errors raised while decoding or validating a message: nothing in it can ever be processed.
POISON_ERRORS: tuple[type[BaseException], ...] = (
    PoisonMessage, ValidationError, json.JSONDecodeError, UnicodeDecodeError, SubscriberNotFound, RecursionError,
)
# Errors that repeat identically on every try: the database rejecting a value (out of range, NUL
# byte, too long), client-side or server-side.
DETERMINISTIC_ERRORS: tuple[type[BaseException], ...] = (
    SQLDataError, asyncpg.exceptions.DataError, asyncpg.exceptions._base.DataError,
)


def disposition(error: BaseException) -> Disposition:
    """What to do with a message whose handler raised `error` (see the module's docstring).

    An exception says it is final with `retryable = False` (the AI layer's `AIError` does); the
    cause chain is followed, so a wrapped error keeps its class.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, POISON_ERRORS):
            return Disposition.POISON
        if isinstance(current, DETERMINISTIC_ERRORS) or getattr(current, "retryable", None) is False:
            return Disposition.FAIL
        current = current.__cause__ or current.__context__
    return Disposition.RETRY


def describe(error: BaseException) -> str:
    """One line naming the error, for logs and the dead-letter header."""
    if isinstance(error, ValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()[:5])
        return f"schema validation failed: {problems}"
    return f"{type(error).__name__}: {error}"[:1000]


class FailureRouter:
    """Decides what happens to a message whose handler raised.

    A consumer process builds it after its broker and hands it to the failure middleware through the
    FastStream context (`FAILURES`, read by `FailureMiddleware`), with its hooks: `on_exhausted` fails
    the message's run, `on_retry` writes the retry into the run's log.
    """

    def __init__(self, settings: Settings, topology: Topology, broker: RabbitBroker, *,
                 on_exhausted: ExhaustedHook | None = None, on_retry: RetryHook | None = None) -> None:
        self.settings = settings
        self.topology = topology
        self.broker = broker
        self.on_exhausted = on_exhausted
        self.on_retry = on_retry

    def backoff_seconds(self, attempt: int) -> tuple[int, float]:
        """(delay tier, jittered seconds) for the retry after `attempt` failed tries."""
        tiers = self.topology.retry_delays_seconds
        tier = min(attempt - 1, len(tiers) - 1)
        return tier, tiers[tier] * random.uniform(0.8, 1.2)

    async def dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        headers = dict(message.headers or {})
        headers.update({"x-dead-letter-reason": reason[:1000], "x-original-routing-key": message.routing_key or ""})
        await self.broker.publish(message.body, exchange=self.topology.dead_letter_exchange,
                                  routing_key=message.routing_key or "unrouted", headers=headers, persist=True,
                                  content_type=message.content_type, message_id=message.message_id)
        log.error("dead-lettered message %s (%s): %s", message.message_id, message.routing_key, reason)

    async def retry(self, message: AbstractIncomingMessage, error: BaseException) -> None:
        """Send the message to the delay tier of its attempt, or dead-letter it after the last one."""
        attempt = int(str((message.headers or {}).get(ATTEMPT_HEADER, 1) or 1))
        reason = describe(error)
        if attempt >= self.settings.max_attempts:
            await self.give_up(message, f"gave up after {attempt} attempts: {reason}")
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

    async def give_up(self, message: AbstractIncomingMessage, reason: str) -> None:
        """Dead-letter a genuine message whose work cannot succeed, then fail its run.

        The dead letter comes first and stands on its own: if failing the run raises too (the
        database is down), the delivery is still acknowledged once, with its reason, and the
        watchdog recovers the run when the database is back."""
        await self.dead_letter(message, reason)
        if self.on_exhausted is None:
            return
        try:
            await self.on_exhausted(_payload(message), reason)
        except Exception:
            log.error("could not fail the run of %s (%s); the watchdog will re-request its stage",
                      message.message_id, message.routing_key, exc_info=True)

    async def route(self, message: AbstractIncomingMessage, error: BaseException) -> Disposition:
        """Dead-letter, fail or retry `message` by the class of `error`; returns what was done."""
        kind = disposition(error)
        if kind is Disposition.POISON:
            await self.dead_letter(message, describe(error))
        elif kind is Disposition.FAIL:
            await self.give_up(message, f"not retryable: {describe(error)}")
        else:
            await self.retry(message, error)
        return kind


def _payload(message: AbstractIncomingMessage) -> dict[str, Any]:
    try:
        payload = json.loads(message.body)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


class FailureMiddleware(BaseMiddleware):
    """Routes a message whose handler raised through the `FailureRouter` in the FastStream context
    (key `FAILURES`); the original delivery is then acknowledged. A broker without one in its
    context (the client's, the scheduler's: they only publish) leaves errors to FastStream."""

    async def after_processed(self, exc_type: type[BaseException] | None = None,
                              exc_val: BaseException | None = None,
                              exc_tb: TracebackType | None = None) -> bool | None:
        if exc_val is None or not isinstance(exc_val, Exception):
            return False
        router: FailureRouter | None = self.context.get(FAILURES)
        if router is None:
            return False
        raw: AbstractIncomingMessage = self.msg  # type: ignore[assignment]
        await router.route(raw, exc_val)
        return True  # handled: the original delivery is acknowledged


def make_broker(settings: Settings, *, registry: CollectorRegistry | None = None, app_name: str = "automation",
                **kwargs: Any) -> RabbitBroker:
    """A broker with the failure middleware (acting once a `FailureRouter` is in its context) and,
    given a Prometheus `registry`, FastStream's metrics (`faststream_*`, labelled `app_name`).

    Failures are still counted although the failure middleware swallows them: the Prometheus
    middleware counts in its `consume_scope`, which wraps the handler call and sees the exception
    (status `error`, and `faststream_received_processed_messages_exceptions_total`), while the
    failure middleware acts in `after_processed`, when the middleware stack is left afterwards.
    The failure middleware stays first, the outermost, so this holds even if it ever moves into
    `consume_scope` (pinned by `tests/unit/test_metrics.py`).
    """
    middlewares: list[Any] = [FailureMiddleware]
    if registry is not None:
        middlewares.append(RabbitPrometheusMiddleware(registry=registry, app_name=app_name))
    return RabbitBroker(settings.amqp_url, middlewares=middlewares, log_level=logging.DEBUG, **kwargs)
