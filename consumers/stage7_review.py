"""Stage 7: the manual review gate. Seed query: content with status='review'; counts, no AI, no credits.

It records the ids of the content waiting for review and completes the run, which releases
the site's lock (the partial unique index only covers running and paused runs).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from consumers.batches import lock_run, now
from consumers.deps import Deps
from shared.automation_logger import RunRef
from shared.events import RunStateChanged, StageCompleted
from shared.models import Content, RunStage
from shared.outbox import add_events

STAGE = 7


async def content_in_review(session: AsyncSession, site_id: int) -> list[int]:
    return list((await session.scalars(
        select(Content.id).where(Content.site_id == site_id, Content.status == "review").order_by(Content.id)
    )).all())


async def complete_run(deps: Deps, run_id: str) -> None:
    """Record the review queue as stage 7's result and mark the run completed (once)."""
    async with deps.sessions() as session, session.begin():
        run, site = await lock_run(session, run_id)
        if run.status != "running" or await session.get(RunStage, (run.id, STAGE)) is not None:
            return
        ids = await content_in_review(session, site.id)
        result = {"input": "content", "output": "content in review", "items_in": len(ids),
                  "items_out": len(ids), "batches": 0, "credits": 0, "ai_calls": 0, "content_ids": ids}
        finished = now()
        session.add(RunStage(run_id=run.id, stage=STAGE, status="completed", batches_total=0, batches_done=0,
                             items_in=len(ids), items_out=len(ids), completed_at=finished))
        run.current_stage = STAGE
        run.set_stage_result(STAGE, result)
        run.status = "completed"
        run.completed_at = finished
        run.last_progress_at = finished
        ref = RunRef.of(run, site.account_id)
        deps.logger.log_stage_start(session, ref, STAGE, "review gate")
        deps.logger.log_stage_progress(session, ref, STAGE,
                                       f"counted {len(ids)} content items with status 'review'")
        deps.logger.log_stage_complete(session, ref, STAGE,
                                       f"{len(ids)} content items ready for review")
        deps.logger.run_event(session, ref,
                              f"Run completed: {run.total_credits_used} credits used")
        add_events(session, StageCompleted.for_stage(run.run_id, STAGE, result),
                   RunStateChanged(type="run.completed", run_id=run.run_id, site_id=site.id, status="completed"))
    deps.relay.wake()
