"""Stage 5: content -> image prompts (GenerateImagePrompts). Seed query: drafts with no images.

The prompts are stored as `Image` rows with status 'pending' (the seed's dual-purpose model).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ai.base import ArticleIn, ImagePromptOut
from ai.functions import GenerateImagePrompts
from consumers.deps import BatchContext, Deps, LoadInClaim, Written
from shared.catalogue import BY_NUMBER
from shared.models import Content
from shared.seed_queries import eligible_drafts


def drafts_without_images(ids: str, site_id: str) -> str:
    """The seed's query (`shared.seed_queries.eligible_drafts`): a batch's drafts that have no images yet,
    each with its idea's target keywords, as one JSON array (`ids` and `site_id` are SQL expressions)."""
    return f"""(SELECT coalesce(jsonb_agg(to_jsonb(d) ORDER BY d.id), '[]') FROM (
                   SELECT c.id, c.title, c.markdown, c.sections, i.target_keywords
                     FROM content AS c JOIN tasks AS t ON t.id = c.task_id JOIN content_ideas AS i ON i.id = t.idea_id
                    WHERE c.id = ANY({ids}) AND c.site_id = {site_id} AND c.status = 'draft'
                      AND NOT EXISTS (SELECT FROM images WHERE images.content_id = c.id)) AS d)"""


def decode_drafts(rows: list[dict[str, Any]]) -> list[ArticleIn]:
    return [ArticleIn(id=row["id"], title=row["title"], markdown=row["markdown"], sections=tuple(row["sections"]),
                      target_keywords=tuple(row["target_keywords"])) for row in rows]


class ImagePromptsStage:
    stage = BY_NUMBER[5]
    sequential_above: int | None = None
    # a batch's drafts come with its claim, as stage 4's ideas do
    load_in_claim: LoadInClaim | None = LoadInClaim(sql=drafts_without_images("claimed.item_ids", "claimed.site_id"),
                                                    decode=decode_drafts)

    async def load(self, session: AsyncSession, site_id: int, item_ids: list[int]) -> list[ArticleIn]:
        return decode_drafts(await session.scalar(LOAD_DRAFTS, {"ids": item_ids, "site_id": site_id}))

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


LOAD_DRAFTS = text("SELECT " + drafts_without_images("CAST(:ids AS integer[])", ":site_id"))

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
