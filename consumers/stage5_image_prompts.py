"""Stage 5: content -> image prompts (GenerateImagePrompts). Seed query: drafts with no images.

The prompts are stored as `Image` rows with status 'pending' (the seed's dual-purpose model).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ai.base import ArticleIn, ImagePromptOut
from ai.functions import GenerateImagePrompts
from consumers.deps import BatchContext, Deps, LoadInClaim, Written
from shared.catalogue import BY_NUMBER
from shared.models import Content, ContentIdea, Image, Task
from shared.seed_queries import eligible_drafts


class ImagePromptsStage:
    stage = BY_NUMBER[5]
    sequential_above: int | None = None
    load_in_claim: LoadInClaim | None = None

    async def load(self, session: AsyncSession, site_id: int, item_ids: list[int]) -> list[ArticleIn]:
        rows = (await session.execute(
            select(Content, ContentIdea.target_keywords).join(Task, Task.id == Content.task_id)
            .join(ContentIdea, ContentIdea.id == Task.idea_id)
            .where(Content.id.in_(item_ids), *eligible_drafts(site_id)).order_by(Content.id))).all()
        return [ArticleIn(id=c.id, title=c.title, markdown=c.markdown, sections=tuple(c.sections),
                          target_keywords=tuple(kws)) for c, kws in rows]

    async def generate(self, deps: Deps, inputs: list[ArticleIn]) -> dict[int, list[ImagePromptOut]]:
        return await GenerateImagePrompts(deps.provider).execute(inputs)

    async def write(self, session: AsyncSession, ctx: BatchContext, inputs: list[ArticleIn],
                    outputs: dict[int, list[ImagePromptOut]]) -> Written:
        locked = (await session.scalars(
            select(Content.id).where(Content.id.in_(list(outputs)), *eligible_drafts(ctx.site_id))
            .order_by(Content.id).with_for_update())).all()
        rows = [{"site_id": ctx.site_id, "content_id": content_id, "kind": p.kind, "position": p.position,
                 "prompt": p.prompt, "section": p.section, "status": "pending"}
                for content_id in locked for p in outputs[content_id]]
        inserted = (await session.scalars(
            insert(Image).values(rows).on_conflict_do_nothing(index_elements=["content_id", "position"])
            .returning(Image.id))).all() if rows else []
        return Written(items_out=len(inserted), credits=GenerateImagePrompts.credits(len(locked)),
                       handed_on=list(inserted))
