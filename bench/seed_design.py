"""The same workload in the seed's design: one worker doing every stage in turn, one batch at a time.

For stage 1 to 6 it takes the stage's eligible ids (the seed's query), chunks them by the site's
batch size and, per chunk, loads the inputs, makes the AI call, then writes the outputs and the
credit charge in one transaction. It reuses the stage modules (`STAGE_WORK`), so the only
difference from the pipeline is the design: no broker, no processes, no concurrency.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update

from ai.simulated import SimulatedProvider
from bench.harness import isolated, settle
from bench.workload import BenchSite, create_bench_site, outcome_counts
from consumers.deps import BatchContext, Deps
from consumers.planning import now
from consumers.registry import STAGE_WORK
from consumers.stage7_review import store_review_queue
from shared.automation_logger import AutomationLogger, RunRef
from shared.credits import charge
from shared.models import AutomationConfig, AutomationRun
from shared.outbox import NoRelay
from shared.seed_queries import eligible_ids
from shared.settings import Settings


@dataclass(frozen=True)
class SeedDesignRun:
    keywords: int
    latency_ms: int
    wall: float
    batches: int
    counts: dict[str, int]


async def run_stages_in_turn(deps: Deps, run: RunRef) -> int:
    """Stages 1..6 then the review list, sequentially; returns the number of batches done."""
    async with deps.sessions() as session:
        config = await session.scalar(select(AutomationConfig).where(AutomationConfig.site_id == run.site_id))
    assert config is not None
    batches = 0
    for number in sorted(STAGE_WORK):
        work = STAGE_WORK[number]
        async with deps.sessions() as session:
            item_ids = list((await session.scalars(eligible_ids(work.stage.number, run.site_id))).all())
        size = config.batch_size(number)
        ctx = BatchContext(run=run, batch_id=0, stage=number, settings=deps.settings)
        for start in range(0, len(item_ids), size):
            async with deps.sessions() as session:
                inputs = await work.load(session, run.site_id, list(item_ids[start:start + size]))
            batches += 1
            if not inputs:
                continue
            outputs = await work.generate(deps, inputs)
            async with deps.sessions() as session, session.begin():
                written = await work.write(session, ctx, inputs, outputs)
                # the seed had no batch rows: its ledger rows name the run only
                await charge(session, account_id=run.account_id, amount=written.credits, run_pk=run.pk,
                             batch_id=None, stage=number)  # type: ignore[arg-type]
    async with deps.sessions() as session, session.begin():
        await store_review_queue(session, run.pk, run.site_id)  # stage 7: the review gate only lists
    return batches


async def measure_seed_design(base: Settings, keywords: int, latency_ms: int) -> SeedDesignRun:
    async with isolated(base, ai_latency_ms=latency_ms) as env:
        site: BenchSite = await create_bench_site(env.sessions, "seed", keywords)
        async with env.sessions() as session, session.begin():
            row = AutomationRun(run_id=f"seed_{uuid.uuid4().hex[:8]}", site_id=site.id, status="running",
                                current_stage=1, trigger="manual", requested_by="bench")
            session.add(row)
            await session.flush()
            run = RunRef.of(row, site.account_id)
        deps = Deps(settings=env.settings, sessions=env.sessions, logger=AutomationLogger(env.settings.log_dir),
                    provider=SimulatedProvider(latency_ms), relay=NoRelay(), worker_id="seed-design")
        await settle()
        started = time.monotonic()
        batches = await run_stages_in_turn(deps, run)
        wall = time.monotonic() - started
        async with env.sessions() as session, session.begin():
            await session.execute(update(AutomationRun).where(AutomationRun.id == run.pk)
                                  .values(status="completed", current_stage=7, completed_at=now()))
        counts = await outcome_counts(env.sessions, site)
        return SeedDesignRun(keywords=keywords, latency_ms=latency_ms, wall=wall, batches=batches, counts=counts)
