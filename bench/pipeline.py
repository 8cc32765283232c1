"""One measured pipeline run: a fresh database and fleet, one site, the clock from `run.start` to
`run completed`, and what the run did per stage (from `run_stages`) and produced (from the tables).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise

from sqlalchemy import func, select, text

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
    # the first article's way through stages 2-6: (stage, its batch queued, claimed, its finish began), in
    # seconds after the start command; a hop's time beyond the AI latency is queueing, claims and commits
    first_path: list[tuple[int, float, float, float]] = field(default_factory=list)

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
            path = (await session.execute(FIRST_PATH, {"run_pk": rows[0].run_id if rows else 0,
                                                       "lease": env.settings.batch_lease_seconds})).all()
        stages = [StageFigures(stage=r.stage, batches=r.batches_total, ai_calls=r.ai_calls,
                               started=_seconds(r.started_at, run.sent_at),
                               wall=_seconds(r.completed_at, r.started_at)) for r in rows]
        counts = await outcome_counts(env.sessions, site)
        return PipelineRun(keywords=keywords, latency_ms=latency_ms, concurrency=concurrency, wall=wall,
                           batches=batches, stages=stages, counts=counts, peak_rss=dict(fleet.peak_rss),
                           cpu=meter.figures(),
                           first_in_review=_seconds(first_review, run.sent_at) if first_review else float("nan"),
                           first_path=[(p.stage, _seconds(p.queued, run.sent_at), _seconds(p.claimed, run.sent_at),
                                        _seconds(p.finished, run.sent_at)) for p in path])


# The batches that carried the first article in review: its cluster's stage 2 batch, its idea's, its task's,
# its own stage 5 batch and its images' (the last of them), each as queued (created), claimed (its lease's
# end less the lease: right while a claim is never renewed, i.e. for batches shorter than a third of the
# lease, as here) and finished (the finish transaction's start, which follows the AI call).
FIRST_PATH = text("""
    WITH c AS (SELECT id, task_id FROM content WHERE status = 'review' ORDER BY updated_at, id LIMIT 1),
         t AS (SELECT tasks.id, tasks.idea_id FROM tasks JOIN c ON tasks.id = c.task_id),
         i AS (SELECT content_ideas.id, content_ideas.cluster_id
                 FROM content_ideas JOIN t ON content_ideas.id = t.idea_id)
    SELECT b.stage, max(b.created_at) AS queued, max(b.completed_at) AS finished,
           max(b.lease_expires_at) - make_interval(secs => :lease) AS claimed
      FROM stage_batches AS b, c, t, i
     WHERE b.run_id = :run_pk AND (
           (b.stage = 2 AND i.cluster_id = ANY(b.item_ids)) OR (b.stage = 3 AND i.id = ANY(b.item_ids))
        OR (b.stage = 4 AND t.id = ANY(b.item_ids)) OR (b.stage = 5 AND c.id = ANY(b.item_ids))
        OR (b.stage = 6 AND EXISTS (SELECT FROM images WHERE images.content_id = c.id AND images.id = ANY(b.item_ids))))
     GROUP BY b.stage ORDER BY b.stage
""")


def _seconds(later: datetime | None, earlier: datetime) -> float:
    return (later - earlier).total_seconds() if later is not None else float("nan")
