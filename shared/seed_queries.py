"""The seed's queries: what each batch stage selects, as predicates its batches re-check before
writing (an item may have changed since it was planned)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.catalogue import BATCH_STAGES
from shared.models import Cluster, Content, ContentIdea, Image, Keyword, Task


def eligible_keywords(site_id: int) -> tuple[ColumnElement[bool], ...]:
    return (Keyword.site_id == site_id, Keyword.status == "new", Keyword.cluster_id.is_(None),
            Keyword.disabled.is_(False))


def eligible_clusters(site_id: int) -> tuple[ColumnElement[bool], ...]:
    # the seed's: new and without ideas; and ours: reopened by stage 1, which added keywords whose intents
    # may need articles of their own
    no_ideas = ~exists().where(ContentIdea.cluster_id == Cluster.id)
    return Cluster.site_id == site_id, or_((Cluster.status == "new") & no_ideas, Cluster.status == "reopened")


def eligible_ideas(site_id: int) -> tuple[ColumnElement[bool], ...]:
    return ContentIdea.site_id == site_id, ContentIdea.status == "new"


def eligible_tasks(site_id: int) -> tuple[ColumnElement[bool], ...]:
    return Task.site_id == site_id, Task.status == "queued", ~exists().where(Content.task_id == Task.id)


def eligible_drafts(site_id: int) -> tuple[ColumnElement[bool], ...]:
    return Content.site_id == site_id, Content.status == "draft", ~exists().where(Image.content_id == Content.id)


def eligible_images(site_id: int) -> tuple[ColumnElement[bool], ...]:
    return Image.site_id == site_id, Image.status == "pending"


_SEED_QUERIES = {1: (Keyword.id, eligible_keywords), 2: (Cluster.id, eligible_clusters),
                 3: (ContentIdea.id, eligible_ideas), 4: (Task.id, eligible_tasks),
                 5: (Content.id, eligible_drafts), 6: (Image.id, eligible_images)}


def eligible_ids(stage: int, site_id: int) -> Select[int]:
    """The seed's query of a batch stage, as ids in a stable order."""
    column, predicates = _SEED_QUERIES[stage]
    return select(column).where(*predicates(site_id)).order_by(column)


async def eligible_counts(session: AsyncSession, site_id: int) -> dict[int, int]:
    """How many items each batch stage's seed query selects right now."""
    return {stage: int(await session.scalar(
        select(func.count()).select_from(eligible_ids(stage, site_id).order_by(None).subquery())) or 0)
        for stage in BATCH_STAGES}
