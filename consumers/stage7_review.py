"""Stage 7: the manual review gate. Seed query: content with status='review'; counts, no AI, no credits.

With the site's `skip_review` on, it first approves the run's content itself (recorded as stage 7's
action on each article) and, with publish targets, queues each for publishing (`shared.publishing`).

It records the ids of the content waiting for review and completes the run, which releases
the site's lock (the partial unique index only covers running and paused runs). The id list is
built and stored inside PostgreSQL, so this process's memory does not grow with the site (a
100,000-keyword site has 37,500 articles in review); `stage.7.completed` carries the count, and
the ids are in the run's `stage_7_result`.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from consumers.deps import Deps
from consumers.planning import check_trigger, lock_run, now
from shared.automation_logger import RunRef
from shared.events import RequestStage, RunStateChanged, StageCompleted, planned_stage
from shared.messaging import PoisonMessage
from shared.models import AutomationConfig, Content, RunStage
from shared.outbox import add_events
from shared.publishing import enabled_targets, request_publish
from shared.review import approve

STAGE = 7
SUMMARY: dict[str, Any] = {"input": "content", "output": "content in review", "batches": 0, "credits": 0,
                           "ai_calls": 0}

# The seed's stage 7 output: the ids of the content in review, stored as the run's stage 7 result.
STORE_REVIEW_QUEUE = text("""
    UPDATE automation_runs AS r
       SET stage_7_result = CAST(:summary AS jsonb)
                            || jsonb_build_object('items_in', q.items, 'items_out', q.items, 'content_ids', q.ids)
      FROM (SELECT count(*) AS items, coalesce(jsonb_agg(c.id ORDER BY c.id), '[]'::jsonb) AS ids
              FROM content AS c WHERE c.site_id = :site_id AND c.status = 'review') AS q
     WHERE r.id = :run_pk
 RETURNING q.items
""")


async def store_review_queue(session: AsyncSession, run_pk: int, site_id: int) -> int:
    """Store the ids of the site's content in review as the run's stage 7 result; returns how many."""
    return int(await session.scalar(STORE_REVIEW_QUEUE, {
        "summary": json.dumps(SUMMARY), "site_id": site_id, "run_pk": run_pk}) or 0)


SKIP_REVIEW_ACTOR = "stage 7 (skip review)"


async def hand_to_publishing(session: AsyncSession, site_id: int) -> tuple[int, int]:
    """Skip review: approve the site's content in review, and queue it for publishing when the site has
    targets. Returns (approved, queued)."""
    waiting = (await session.scalars(select(Content).where(Content.site_id == site_id, Content.status == "review")
                                     .order_by(Content.id).with_for_update())).all()
    targets = await enabled_targets(session, site_id)
    for content in waiting:
        await approve(session, content, SKIP_REVIEW_ACTOR)
        if targets:
            await request_publish(session, content, SKIP_REVIEW_ACTOR, targets)
    return len(waiting), len(waiting) if targets else 0


async def complete_run(deps: Deps, trigger: RequestStage | StageCompleted) -> None:
    """Record the review queue as stage 7's result and mark the run completed (once), when stage 6
    has completed (a forged or early trigger is poison and ends nothing)."""
    if planned_stage(trigger) != STAGE:
        raise PoisonMessage(f"{trigger.type} does not plan stage {STAGE}")
    async with deps.sessions() as session, session.begin():
        run, site = await lock_run(session, trigger.run_id)
        if not await check_trigger(session, run, trigger) or await session.get(RunStage, (run.id, STAGE)) is not None:
            return
        skip_review = bool(await session.scalar(select(AutomationConfig.skip_review)
                                                .where(AutomationConfig.site_id == site.id)))
        in_review = await store_review_queue(session, run.id, site.id)  # the ids, before skip review approves them
        approved, queued = await hand_to_publishing(session, site.id) if skip_review else (0, 0)
        finished = now()
        session.add(RunStage(run_id=run.id, stage=STAGE, status="completed", batches_total=0, batches_done=0,
                             items_in=in_review, items_out=in_review, completed_at=finished))
        run.current_stage = STAGE
        run.status = "completed"
        run.completed_at = finished
        run.last_progress_at = finished
        ref = RunRef.of(run, site.account_id)
        deps.logger.log_stage_start(session, ref, STAGE, "review gate")
        deps.logger.log_stage_progress(session, ref, STAGE,
                                       f"counted {in_review} content items with status 'review'")
        if skip_review:
            deps.logger.log_stage_progress(session, ref, STAGE, f"skip review: approved {approved} content items, "
                                           f"queued {queued} for publishing"
                                           + ("" if queued or not approved else " (the site has no publish target)"))
        deps.logger.log_stage_complete(session, ref, STAGE, f"{in_review} content items approved (skip review)"
                                       if skip_review else f"{in_review} content items ready for review")
        deps.logger.run_event(session, ref,
                              f"Run completed: {run.total_credits_used} credits used")
        add_events(session, StageCompleted.for_stage(run.run_id, STAGE, {
                       **SUMMARY, "items_in": in_review, "items_out": in_review}),
                   RunStateChanged(type="run.completed", run_id=run.run_id, site_id=site.id, status="completed"))
    deps.relay.wake()

