"""One measured pipeline run: a fresh database and fleet, one site, the clock from `run.start` to
`run completed`, and what the run did per stage (from `run_stages`) and produced (from the tables).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise

from sqlalchemy import func, select

from bench.cpu import CpuFigures, CpuMeter
from bench.harness import completed_wall, isolated, run_timeout, running_fleet, start_runs, wait_for_runs
from bench.workload import create_bench_site, outcome_counts, synthetic_keywords
from shared.models import Content, RunStage, StageBatch
from shared.settings import Settings

__all__ = ["PipelineRun", "StageFigures", "measure_pipeline", "synthetic_keywords"]


@dataclass(frozen=True)
class StageFigures:
    stage: int
    batches: int
    ai_calls: int
    started: float  # seconds after the start command
    wall: float  # from planned to completed


@dataclass
class PipelineRun:
    keywords: int
    latency_ms: int
    concurrency: int
    wall: float
    batches: int
    stages: list[StageFigures]
    counts: dict[str, int]
    peak_rss: dict[str, int] = field(default_factory=dict)
    cpu: CpuFigures | None = None  # the consumers' and the database backends' CPU from start to completion
    first_in_review: float = float("nan")  # seconds from the start command to the first article in review

    def overlap(self) -> list[float]:
        """Seconds each stage ran beside the one before it (0 when stage N+1 starts after N completed)."""
        spans = [(s.started, s.started + s.wall) for s in self.stages]
        return [max(0.0, min(end, next_end) - next_start)
                for (_, end), (next_start, next_end) in pairwise(spans)]

    @property
    def messages_per_second(self) -> float:
        return self.batches / self.wall

    def cpu_per_batch_ms(self) -> tuple[float, float, float]:
        """(total, consumers, PostgreSQL backends) CPU per batch in ms."""
        assert self.cpu is not None
        return self.cpu.per_batch_ms(self.batches)


async def measure_pipeline(base: Settings, keywords: int, latency_ms: int, concurrency: int, replicas: int = 1,
                           **overrides: object) -> PipelineRun:
    """Run the whole pipeline once on `keywords` synthetic keywords, in real processes
    (`replicas` consumers per batch stage)."""
    async with isolated(base, ai_latency_ms=latency_ms, **overrides) as env:
        site = await create_bench_site(env.sessions, "pipeline", keywords)
        async with running_fleet(env, concurrency, replicas=replicas) as fleet:
            meter = CpuMeter(env.settings.database_url,
                             lambda: [p.pid for replicas in fleet.processes.values() for p in replicas])
            async with meter.running():
                [run] = await start_runs(env, [site])
                ends = await wait_for_runs(env, fleet, [run], timeout=run_timeout(keywords, latency_ms))
        wall = completed_wall(run, ends[run.run_id])
        async with env.sessions() as session:
            batches = int(await session.scalar(select(func.count()).select_from(StageBatch)) or 0)
            rows = (await session.scalars(select(RunStage).order_by(RunStage.stage))).all()  # the one run
            first_review = await session.scalar(select(func.min(Content.updated_at)).where(Content.status == "review"))
        stages = [StageFigures(stage=r.stage, batches=r.batches_total, ai_calls=r.ai_calls,
                               started=_seconds(r.started_at, run.sent_at),
                               wall=_seconds(r.completed_at, r.started_at)) for r in rows]
        counts = await outcome_counts(env.sessions, site)
        return PipelineRun(keywords=keywords, latency_ms=latency_ms, concurrency=concurrency, wall=wall,
                           batches=batches, stages=stages, counts=counts, peak_rss=dict(fleet.peak_rss),
                           cpu=meter.figures(),
                           first_in_review=_seconds(first_review, run.sent_at) if first_review else float("nan"))


def _seconds(later: datetime | None, earlier: datetime) -> float:
    return (later - earlier).total_seconds() if later is not None else float("nan")
