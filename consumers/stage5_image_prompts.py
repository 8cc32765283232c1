"""Stage 5: content -> image prompts (GenerateImagePrompts). Seed query: drafts with no images.

The prompts are stored as `Image` rows with status 'pending' (the seed's dual-purpose model).
"""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ai.base import ArticleIn, ImagePromptOut
from ai.functions import GenerateImagePrompts
from consumers.deps import BatchContext, Deps, LoadInClaim, Written
from shared.catalogue import BY_NUMBER
from shared.models import Content, ContentIdea, Task
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
        prompts = [(content_id, p) for content_id in locked for p in outputs[content_id]]
        inserted = (await session.scalars(INSERT_PROMPTS, {
            "site_id": ctx.site_id, "content_ids": [content_id for content_id, _ in prompts],
            "kinds": [p.kind for _, p in prompts], "positions": [p.position for _, p in prompts],
            "prompts": [p.prompt for _, p in prompts], "sections": [p.section for _, p in prompts],
        })).all() if prompts else []
        return Written(items_out=len(inserted), credits=GenerateImagePrompts.credits(len(locked)),
                       handed_on=list(inserted))


# The prompts as pending images, in one prepared statement: built per batch as an ORM insert of literal
# rows it cost a stage 5 batch more of the consumer's CPU than its claim and finish together. A prompt
# whose image exists already (a retried batch) is skipped.
INSERT_PROMPTS = text("""
    INSERT INTO images (site_id, content_id, kind, position, prompt, section, status)
    SELECT :site_id, p.content_id, p.kind, p.position, p.prompt, p.section, 'pending'
      FROM unnest(CAST(:content_ids AS integer[]), CAST(:kinds AS text[]), CAST(:positions AS integer[]),
                  CAST(:prompts AS text[]), CAST(:sections AS text[])) AS p(content_id, kind, position, prompt, section)
    ON CONFLICT (content_id, position) DO NOTHING
    RETURNING id
""")
