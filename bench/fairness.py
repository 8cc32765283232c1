"""Fairness: do small sites still finish promptly while one big site's run floods the same queues?

In one database and one fleet: a 50-keyword site is run alone first (after a warm-up run, so the
solo time is not a cold start; --quick skips it), then a big site is started and, right behind it, ten small
sites. Each small site's time from its own start command to its completion is compared with the
solo time. The big site is not waited for: once the small sites are done it is paused and
everything is torn down.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from sqlalchemy import select

from automation.supervisor import ConsumerFleet
from bench.harness import (
    BenchEnv,
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


async def measure_fairness(base: Settings, *, window: int, big: int, small: int, sites: int, latency_ms: int,
                           concurrency: int, warmup: bool = True) -> FairnessRound:
    async with isolated(base, ai_latency_ms=latency_ms, batch_window=window) as env:
        warmup_site = await create_bench_site(env.sessions, "warmup", small) if warmup else None
        solo_site = await create_bench_site(env.sessions, "solo", small)
        big_site = await create_bench_site(env.sessions, "big", big)
        small_sites = [await create_bench_site(env.sessions, f"small{i}", small) for i in range(sites)]
        async with running_fleet(env, concurrency) as fleet, AutomationClient(env.settings) as client:
            if warmup_site is not None:  # the first run of a fresh fleet pays for pools and caches
                await _solo(env, fleet, client, warmup_site, latency_ms)
            solo = await _solo(env, fleet, client, solo_site, latency_ms)
            big_run, *small_runs = await start_runs(env, [big_site, *small_sites], client)
            ends = await wait_for_runs(env, fleet, small_runs, timeout=run_timeout(big, latency_ms))
            progress = await _progress(env, big_run.run_id)
            await client.pause_run(big_run.run_id, reason="bench: the small sites are done")
        return FairnessRound(window=window, solo=solo, big_progress=progress,
                             small=[completed_wall(run, ends[run.run_id]) for run in small_runs])
