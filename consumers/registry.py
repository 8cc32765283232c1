"""The batch stages by number, and the estimate built from their seed queries."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from consumers.deps import StageWork
from consumers.stage1_clustering import ClusteringStage
from consumers.stage2_ideas import IdeasStage
from consumers.stage3_tasks import TasksStage
from consumers.stage4_content import ContentStage
from consumers.stage5_image_prompts import ImagePromptsStage
from consumers.stage6_images import ImagesStage
from shared.credits import Estimate, estimate_from_counts

STAGE_WORK: dict[int, StageWork] = {
    work.number: work
    for work in (ClusteringStage(), IdeasStage(), TasksStage(), ContentStage(), ImagePromptsStage(), ImagesStage())
}


async def eligible_counts(session: AsyncSession, site_id: int) -> dict[int, int]:
    """How many items each batch stage's seed query selects right now."""
    counts = {}
    for number, work in STAGE_WORK.items():
        counts[number] = int(await session.scalar(
            select(func.count()).select_from(work.eligible_ids(site_id).order_by(None).subquery())) or 0)
    return counts


async def estimate_for_site(session: AsyncSession, site_id: int) -> Estimate:
    """The seed's per-stage estimate for a run started now."""
    c = await eligible_counts(session, site_id)
    return estimate_from_counts(keywords=c[1], clusters=c[2], ideas=c[3], tasks=c[4], drafts=c[5],
                                pending_images=c[6])
