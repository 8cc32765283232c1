"""The pipeline's Prometheus metrics.

Two kinds, both on the process's default registry (`REGISTRY`, which also carries the
`process_*` and `python_*` collectors):

- **Events in this process**, counted where they happen: messages handled per stage and
  outcome, batch latency (the thin wiring in `consumers.app`), AI-call latency (the AI
  functions in `ai.functions`). FastStream's own `faststream_*` metrics come from the
  broker middleware (`shared.messaging.make_broker`).
- **Pipeline state in the database** (runs by status, open batches, credits charged). A scrape is
  synchronous and the database is async, so `PipelineState.refresh_forever` rereads three cheap
  aggregates every `AUTOMATION_METRICS_REFRESH_SECONDS` and a scrape only reads the last snapshot.
  Only the control and API processes run it, so stage replicas never add database load; in every
  other process these families are simply absent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.messaging import Disposition, disposition
from shared.models import AutomationRun, CreditLedger, StageBatch

__all__ = ["AI_CALL_SECONDS", "BATCH_SECONDS", "MESSAGES", "PIPELINE_STATE", "REGISTRY", "PipelineState", "Snapshot",
           "count_ai_calls", "counted", "timed_ai_call"]

log = logging.getLogger("automation.metrics")
T = TypeVar("T")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

MESSAGES = Counter(
    "automation_messages", "Messages handled by a consumer, per stage ('control' or 1-7), kind (command, plan, "
    "batch) and outcome (ok; error: retried through the delay queues or, after the last attempt, dead-lettered; "
    "failed: not retryable, dead-lettered and its run failed at once; poison: dead-lettered at once).",
    ["stage", "kind", "outcome"], registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "automation_batch_duration_seconds", "Wall time of one batch (claim, AI call, write), per stage.",
    ["stage"], buckets=LATENCY_BUCKETS, registry=REGISTRY,
)
AI_CALL_SECONDS = Histogram(
    "automation_ai_call_duration_seconds", "Wall time of one call to the AI provider, per AI function, provider "
    "and outcome (ok or error).",
    ["function", "provider", "outcome"], buckets=LATENCY_BUCKETS, registry=REGISTRY,
)

OUTCOMES = {Disposition.POISON: "poison", Disposition.FAIL: "failed", Disposition.RETRY: "error"}


@contextmanager
def counted(stage: str, kind: str) -> Iterator[None]:
    """Count the message handled inside the block by its outcome; the error still propagates
    (the failure router decides what happens to the message)."""
    outcome = "error"
    try:
        yield
        outcome = "ok"
    except Exception as error:
        outcome = OUTCOMES[disposition(error)]
        raise
    finally:
        MESSAGES.labels(stage, kind, outcome).inc()


@dataclass
class CallCount:
    count: int = 0


_AI_CALLS: ContextVar[CallCount | None] = ContextVar("automation_ai_calls", default=None)


@contextmanager
def count_ai_calls() -> Iterator[CallCount]:
    """Count the provider calls made inside the block (tasks it gathers included): a batch's
    `ai_calls` is what it really asked the provider, not one per batch."""
    counter = CallCount()
    token = _AI_CALLS.set(counter)
    try:
        yield counter
    finally:
        _AI_CALLS.reset(token)


async def timed_ai_call(function: str, provider: object, call: Awaitable[T]) -> T:
    """Await one provider call and observe its latency."""
    name = str(getattr(provider, "name", "") or type(provider).__name__)
    if (counter := _AI_CALLS.get()) is not None:
        counter.count += 1
    started = time.perf_counter()
    outcome = "error"
    try:
        result = await call
        outcome = "ok"
        return result
    finally:
        AI_CALL_SECONDS.labels(function, name, outcome).observe(time.perf_counter() - started)


@dataclass(frozen=True)
class Snapshot:
    """One reading of the pipeline state; swapped whole so a scrape never sees half of one."""

    runs: dict[str, int] = field(default_factory=dict)
    open_batches: dict[tuple[int, str], int] = field(default_factory=dict)
    credits_charged: dict[int, int] = field(default_factory=dict)
    taken_at: float = 0.0


RUN_STATUSES = ("running", "paused", "completed", "failed")
OPEN_BATCH_STATUSES = ("pending", "claimed")


class PipelineState(Collector):
    """Gauges of the pipeline's state, read from the last snapshot (see the module docstring)."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    async def read(self, session: AsyncSession) -> Snapshot:
        """The three aggregates; each is one index-friendly GROUP BY."""
        runs = dict.fromkeys(RUN_STATUSES, 0)
        for status, count in await session.execute(
                select(AutomationRun.status, func.count()).group_by(AutomationRun.status)):
            runs[status] = count
        batches = {(stage, status): count for stage, status, count in await session.execute(
            select(StageBatch.stage, StageBatch.status, func.count())
            .where(StageBatch.status.in_(OPEN_BATCH_STATUSES)).group_by(StageBatch.stage, StageBatch.status))}
        credits = {int(stage or 0): int(total) for stage, total in await session.execute(
            select(CreditLedger.stage, func.sum(-CreditLedger.delta))
            .where(CreditLedger.delta < 0, CreditLedger.stage.is_not(None)).group_by(CreditLedger.stage))}
        return Snapshot(runs=runs, open_batches=batches, credits_charged=credits, taken_at=time.time())

    async def refresh(self, sessions: async_sessionmaker[AsyncSession]) -> Snapshot:
        async with sessions() as session:
            self.snapshot = await self.read(session)
        return self.snapshot

    async def refresh_forever(self, sessions: async_sessionmaker[AsyncSession], every: float) -> None:
        """Refresh every `every` seconds until cancelled; a failed refresh keeps the last snapshot
        (its age shows in `automation_state_refreshed_timestamp_seconds`) and is retried."""
        failing = False
        while True:
            try:
                await self.refresh(sessions)
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if not failing:  # once per outage, not once per tick
                    log.warning("pipeline-state metrics not refreshed: %s", error)
                failing = True
            await asyncio.sleep(every)

    def collect(self) -> Iterable[Metric]:
        snapshot = self.snapshot
        if snapshot is None:
            return
        runs = GaugeMetricFamily("automation_runs", "Runs by status (all sites).", labels=["status"])
        for status, count in sorted(snapshot.runs.items()):
            runs.add_metric([status], count)
        batches = GaugeMetricFamily("automation_batches_open", "Batches waiting (pending) or being processed "
                                    "(claimed), per stage.", labels=["stage", "status"])
        for (stage, status), count in sorted(snapshot.open_batches.items()):
            batches.add_metric([str(stage), status], count)
        credits = CounterMetricFamily("automation_credits_charged", "Credits charged by batches (credit ledger), "
                                      "per stage.", labels=["stage"])
        for stage, total in sorted(snapshot.credits_charged.items()):
            credits.add_metric([str(stage)], total)
        refreshed = GaugeMetricFamily("automation_state_refreshed_timestamp_seconds",
                                      "When the pipeline-state metrics were last read from the database.")
        refreshed.add_metric([], snapshot.taken_at)
        yield from (runs, batches, credits, refreshed)


PIPELINE_STATE = PipelineState()
REGISTRY.register(PIPELINE_STATE)
