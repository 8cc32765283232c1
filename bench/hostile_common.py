"""What every hostile case shares: its result, sites with given keywords, and waiting on a run."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.harness import FINAL_STATUSES, BenchEnv
from bench.hostile_broker import Tap
from bench.workload import BATCH_SIZES, CREDITS, BenchSite
from shared.accounts import add_keywords, create_account, create_site
from shared.models import AutomationRun


@dataclass
class CaseResult:
    name: str
    met: bool
    figures: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        figures = ", ".join(f"{k} {v}" for k, v in self.figures.items())
        return f"{self.name:<13} {'GOAL MET' if self.met else 'GOAL MISSED':<12} {figures}"


def say(text: str) -> None:
    print(f"  {text}", flush=True)


def keep_output_if(env: BenchEnv, missed: bool) -> None:
    """Keep the consumers' output and logs of a missed goal for whoever fixes it. Called after the
    `isolated` block, before the next await: its teardown task has not run yet, and it reads
    `env.failed` only after stopping the fleet."""
    env.failed = env.failed or missed


async def make_site(sessions: async_sessionmaker[AsyncSession], name: str,
                    keywords: Iterable[tuple[str, int]], **batch_sizes: int) -> BenchSite:
    """A site on an account of its own, with the bench's batch sizes (one AI call per batch) unless
    `batch_sizes` says otherwise (`{1: 5}`)."""
    keywords = list(keywords)
    sizes = {**BATCH_SIZES, **{int(n): size for n, size in batch_sizes.items()}}
    async with sessions() as session, session.begin():
        account = await create_account(session, f"hostile-{name}", CREDITS)
        config: dict[str, Any] = {f"stage_{n}_batch_size": size for n, size in sizes.items()}
        site = await create_site(session, account, name, **config)
        await add_keywords(session, site, keywords)
        return BenchSite(id=site.id, account_id=account.id, keywords=len(keywords))


async def run_row(env: BenchEnv, run_id: str) -> AutomationRun | None:
    """The run as stored, or None when it is missing or the database cannot be reached."""
    try:
        async with env.sessions() as session:
            return await session.scalar(select(AutomationRun).where(AutomationRun.run_id == run_id))
    except Exception:  # the db-outage case polls through the outage
        return None


async def wait_end(env: BenchEnv, run_id: str, timeout: float) -> AutomationRun | None:
    """The run once completed, failed or paused; None if it was not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = await run_row(env, run_id)
        if run is not None and run.status in FINAL_STATUSES:
            return run
        await asyncio.sleep(0.5)
    return None


def describe_run(run: AutomationRun | None) -> str:
    if run is None:
        return "not finished"
    reason = f" ({(run.error_message or run.pause_reason or 'no reason')[:120]})" if run.status != "completed" else ""
    return f"{run.status}{reason}"


@dataclass(frozen=True)
class DeadLetterCheck:
    """How the dead letters of a set of messages compare with exactly one each, each with a reason."""

    expected: int
    exactly_once: int
    missing: int
    extra: int  # dead letters beyond the first, for our messages
    without_reason: int
    others: int  # dead letters of messages that are not ours

    @property
    def ok(self) -> bool:
        return self.exactly_once == self.expected and not self.without_reason and not self.extra

    def text(self) -> str:
        return (f"{self.exactly_once}/{self.expected} dead-lettered exactly once, {self.missing} never, "
                f"{self.extra} extra copies, {self.without_reason} without x-dead-letter-reason")


def check_dead_letters(dead: Tap, ids: Iterable[str]) -> DeadLetterCheck:
    ids = set(ids)
    counts = dead.by_id()
    return DeadLetterCheck(
        expected=len(ids), exactly_once=sum(counts[i] == 1 for i in ids), missing=sum(counts[i] == 0 for i in ids),
        extra=sum(max(0, counts[i] - 1) for i in ids),
        without_reason=sum(1 for m in dead.seen if m.message_id in ids and not m.reason),
        others=sum(n for i, n in counts.items() if i not in ids))


def per_attempt(counter: Counter[tuple[str, int]], ids: Iterable[str]) -> dict[int, int]:
    """Messages per attempt number, summed over `ids`."""
    ids = set(ids)
    totals: Counter[int] = Counter()
    for (message_id, attempt), count in counter.items():
        if message_id in ids:
            totals[attempt] += count
    return dict(sorted(totals.items()))
