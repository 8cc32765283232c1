"""Stage 3: ideas -> queued tasks (local, no AI, no credits). Seed query: ideas with status='new'."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from consumers.deps import BatchContext, Deps, LoadInClaim, Written
from shared.catalogue import BY_NUMBER
from shared.models import ContentIdea, Task
from shared.seed_queries import eligible_ideas


class TasksStage:
    stage = BY_NUMBER[3]
    sequential_above: int | None = None
    load_in_claim: LoadInClaim | None = None

    async def load(self, session: AsyncSession, site_id: int, item_ids: list[int]) -> list[tuple[int, str]]:
        rows = (await session.execute(
            select(ContentIdea.id, ContentIdea.title)
            .where(ContentIdea.id.in_(item_ids), *eligible_ideas(site_id))
            .order_by(ContentIdea.id))).all()
        return [(row.id, row.title) for row in rows]

    async def generate(self, deps: Deps, inputs: list[tuple[int, str]]) -> None:
        return None

    async def write(self, session: AsyncSession, ctx: BatchContext, inputs: list[tuple[int, str]],
                    outputs: None) -> Written:
        idea_ids = list((await session.scalars(
            update(ContentIdea).where(ContentIdea.id.in_([i for i, _ in inputs]), ContentIdea.status == "new")
            .values(status="queued").returning(ContentIdea.id))).all())
        titles = dict(inputs)
        inserted = (await session.scalars(
            insert(Task).values([{"site_id": ctx.site_id, "idea_id": i, "title": titles[i], "status": "queued"}
                                 for i in idea_ids])
            .on_conflict_do_nothing(index_elements=["idea_id"]).returning(Task.id))).all() if idea_ids else []
        return Written(items_out=len(inserted), credits=0, handed_on=list(inserted))
