"""Stage 5: content -> image prompts (GenerateImagePrompts). Seed query: drafts with no images.

The prompts are stored as `Image` rows with status 'pending' (the seed's dual-purpose model).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from ai.base import ArticleIn, ImagePromptOut
from ai.functions import GenerateImagePrompts
from consumers.deps import BatchContext, Deps, LoadInClaim, Written
from shared.catalogue import BY_NUMBER


class ImagePromptsStage:
    stage = BY_NUMBER[5]
    sequential_above: int | None = None
    load_in_claim: LoadInClaim | None = None

    async def load(self, session: AsyncSession, site_id: int, item_ids: list[int]) -> list[ArticleIn]:
        loaded, = await self.load_group(session, site_id, [item_ids])
        return loaded

    async def load_group(self, session: AsyncSession, site_id: int, batches: Sequence[list[int]]
                         ) -> list[list[ArticleIn]]:
        """The drafts of several batches (a claim group's) in one statement."""
        rows = (await session.execute(LOAD_DRAFTS, {"ids": [i for ids in batches for i in ids],
                                                    "site_id": site_id})).all()
        drafts = {row.id: ArticleIn(id=row.id, title=row.title, markdown=row.markdown, sections=tuple(row.sections),
                                    target_keywords=tuple(row.target_keywords)) for row in rows}
        return [[drafts[content_id] for content_id in sorted(ids) if content_id in drafts] for ids in batches]

    async def generate(self, deps: Deps, inputs: list[ArticleIn]) -> dict[int, list[ImagePromptOut]]:
        return await GenerateImagePrompts(deps.provider).execute(inputs)

    async def write(self, session: AsyncSession, ctx: BatchContext, inputs: list[ArticleIn],
                    outputs: dict[int, list[ImagePromptOut]]) -> Written:
        written, = await self.write_group(session, [(ctx, inputs, outputs)])
        return written

    async def write_group(self, session: AsyncSession,
                          batches: Sequence[tuple[BatchContext, list[ArticleIn], dict[int, list[ImagePromptOut]]]]
                          ) -> list[Written]:
        """The prompts of every batch of a finish group (one run's) in two statements: its drafts still
        eligible, locked, then their prompts."""
        wanted = [content_id for _, _, outputs in batches for content_id in outputs]
        locked = set((await session.scalars(LOCK_DRAFTS, {"ids": wanted, "site_id": batches[0][0].site_id})).all())
        prompts = [(content_id, p) for _, _, outputs in batches for content_id in outputs if content_id in locked
                   for p in outputs[content_id]]
        inserted = (await session.execute(INSERT_PROMPTS, {
            "site_id": batches[0][0].site_id, "content_ids": [content_id for content_id, _ in prompts],
            "kinds": [p.kind for _, p in prompts], "positions": [p.position for _, p in prompts],
            "prompts": [p.prompt for _, p in prompts], "sections": [p.section for _, p in prompts],
        })).all() if prompts else []
        written = []
        for _, _, outputs in batches:
            images = sorted(row.id for row in inserted if row.content_id in outputs)
            drafts = len(locked.intersection(outputs))
            written.append(Written(items_out=len(images), credits=GenerateImagePrompts.credits(drafts),
                                   handed_on=images))
        return written


# The seed's query (`shared.seed_queries.eligible_drafts`) for a batch's drafts: still drafts and without
# images. Prepared statements, as stage 4's load is (`LOAD_QUEUED`); `tests/integration/test_load_in_claim.py`
# checks them against the seed's query.
ELIGIBLE_DRAFTS = """c.id = ANY(CAST(:ids AS integer[])) AND c.site_id = :site_id AND c.status = 'draft'
       AND NOT EXISTS (SELECT FROM images WHERE images.content_id = c.id)"""
# ... each with its idea's target keywords, to write their prompts
LOAD_DRAFTS = text(f"""
    SELECT c.id, c.title, c.markdown, c.sections, i.target_keywords
      FROM content AS c JOIN tasks AS t ON t.id = c.task_id JOIN content_ideas AS i ON i.id = t.idea_id
     WHERE {ELIGIBLE_DRAFTS}
     ORDER BY c.id
""")
# ... locked for the batch's write, so that two attempts never both write prompts
LOCK_DRAFTS = text(f"SELECT c.id FROM content AS c WHERE {ELIGIBLE_DRAFTS} ORDER BY c.id FOR UPDATE")

# The prompts as pending images, in one prepared statement: built per batch as an ORM insert of literal
# rows it cost a stage 5 batch more of the consumer's CPU than its claim and finish together. A prompt
# whose image exists already (a retried batch) is skipped.
INSERT_PROMPTS = text("""
    INSERT INTO images (site_id, content_id, kind, position, prompt, section, status)
    SELECT :site_id, p.content_id, p.kind, p.position, p.prompt, p.section, 'pending'
      FROM unnest(CAST(:content_ids AS integer[]), CAST(:kinds AS text[]), CAST(:positions AS integer[]),
                  CAST(:prompts AS text[]), CAST(:sections AS text[])) AS p(content_id, kind, position, prompt, section)
    ON CONFLICT (content_id, position) DO NOTHING
    RETURNING id, content_id
""")
