"""Fairness: do small sites still finish promptly while one big site's run floods the same queues?

In one database and one fleet: a 50-keyword site is run alone first (after a warm-up run, so the
solo time is not a cold start; --quick skips it), then a big site is started and, right behind it, ten small
sites. Each small site's time from its own start command to its completion is compared with the
solo time. The big site is not waited for: once the small sites are done it is paused and
everything is torn down.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from sqlalchemy import select

from automation.supervisor import ConsumerFleet
from bench.harness import (
    BenchEnv,
    StartedRun,
    completed_wall,
    isolated,
    run_timeout,
    running_fleet,
    start_runs,
    wait_for_runs,
)
from bench.workload import BenchSite, create_bench_site
from producers.client import AutomationClient
from shared.models import AutomationRun, RunStage
from shared.settings import Settings


@dataclass(frozen=True)
class FairnessRound:
    window: int
    solo: float
    small: list[float]
    big_progress: str  # where the big run was when the last small site finished
    small_stages: str = ""  # per stage, when the small runs started it and how long it took (medians)
    # the same number of small sites started together without the big run: what they cost each other on
    # this machine, so the big run's own cost to them is max(small) / max(crowd)
    crowd: list[float] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [t / self.solo for t in self.small]

    @property
    def max_ratio(self) -> float:
        return max(self.ratios)

    @property
    def median_ratio(self) -> float:
        return statistics.median(self.ratios)


async def _solo(env: BenchEnv, fleet: ConsumerFleet, client: AutomationClient, site: BenchSite,
                latency_ms: int) -> float:
    [run] = await start_runs(env, [site], client)
    ends = await wait_for_runs(env, fleet, [run], timeout=run_timeout(site.keywords, latency_ms))
    return completed_wall(run, ends[run.run_id])


async def _progress(env: BenchEnv, run_id: str) -> str:
    async with env.sessions() as session:
        run = await session.scalar(select(AutomationRun).where(AutomationRun.run_id == run_id))
        assert run is not None
        stage = await session.get(RunStage, (run.id, run.current_stage))
    if stage is None:
        return f"{run.status}, stage {run.current_stage} not planned yet"
    return f"{run.status}, stage {stage.stage} at {stage.batches_done:,}/{stage.batches_total:,} batches"


async def _stage_times(env: BenchEnv, runs: list[StartedRun]) -> str:
    """Per stage of the small runs: the median second it started at (from the run's start command) and the
    median seconds it took, so a slow round shows where the small sites waited."""
    started: dict[int, list[float]] = {}
    took: dict[int, list[float]] = {}
    async with env.sessions() as session:
        for run in runs:
            rows = (await session.scalars(select(RunStage).join(AutomationRun).where(
                AutomationRun.run_id == run.run_id))).all()
            for row in rows:
                started.setdefault(row.stage, []).append((row.started_at - run.sent_at).total_seconds())
                if row.completed_at is not None:
                    took.setdefault(row.stage, []).append((row.completed_at - row.started_at).total_seconds())
    return ", ".join(f"{stage} at {statistics.median(started[stage]):.1f}s for "
                     f"{statistics.median(took.get(stage, [0.0])):.1f}s" for stage in sorted(started))


async def measure_fairness(base: Settings, *, window: int, big: int, small: int, sites: int, latency_ms: int,
                           concurrency: int, warmup: bool = True) -> FairnessRound:
    async with isolated(base, ai_latency_ms=latency_ms, batch_window=window) as env:
        warmup_site = await create_bench_site(env.sessions, "warmup", small) if warmup else None
        solo_site = await create_bench_site(env.sessions, "solo", small)
        big_site = await create_bench_site(env.sessions, "big", big)
        small_sites = [await create_bench_site(env.sessions, f"small{i}", small) for i in range(sites)]
        crowd_sites = [await create_bench_site(env.sessions, f"crowd{i}", small) for i in range(sites)]
        async with running_fleet(env, concurrency) as fleet, AutomationClient(env.settings) as client:
            if warmup_site is not None:  # the first run of a fresh fleet pays for pools and caches
                await _solo(env, fleet, client, warmup_site, latency_ms)
            solo = await _solo(env, fleet, client, solo_site, latency_ms)
            crowd_runs = await start_runs(env, crowd_sites, client)
            crowd_ends = await wait_for_runs(env, fleet, crowd_runs, timeout=run_timeout(small * sites, latency_ms))
            big_run, *small_runs = await start_runs(env, [big_site, *small_sites], client)
            ends = await wait_for_runs(env, fleet, small_runs, timeout=run_timeout(big, latency_ms))
            progress = await _progress(env, big_run.run_id)
            await client.pause_run(big_run.run_id, reason="bench: the small sites are done")
            small_stages = await _stage_times(env, small_runs)
        return FairnessRound(window=window, solo=solo, big_progress=progress, small_stages=small_stages,
                             crowd=[completed_wall(run, crowd_ends[run.run_id]) for run in crowd_runs],
                             small=[completed_wall(run, ends[run.run_id]) for run in small_runs])
