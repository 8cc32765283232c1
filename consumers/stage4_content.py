"""Stage 4: tasks -> draft content (GenerateContent). Seed query: status='queued' without content."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from ai.base import ArticleOut, IdeaIn, OutlineSection
from ai.functions import GenerateContent
from consumers.deps import BatchContext, Deps, LoadInClaim, Written
from shared.catalogue import BY_NUMBER


class ContentStage:
    stage = BY_NUMBER[4]
    sequential_above: int | None = None
    load_in_claim: LoadInClaim | None = None

    async def load(self, session: AsyncSession, site_id: int, item_ids: list[int]) -> dict[int, IdeaIn]:
        loaded, = await self.load_group(session, site_id, [item_ids])
        return loaded

    async def load_group(self, session: AsyncSession, site_id: int, batches: Sequence[list[int]]
                         ) -> list[dict[int, IdeaIn]]:
        """The ideas of several batches' tasks (a claim group's) in one statement."""
        rows = (await session.execute(LOAD_QUEUED, {"ids": [i for ids in batches for i in ids],
                                                    "site_id": site_id})).all()
        ideas = {
            row.task_id: IdeaIn(id=row.id, title=row.title, content_type=row.content_type,
                                target_keywords=tuple(row.target_keywords), description=row.description,
                                outline=tuple(OutlineSection(h2=s["h2"], h3s=tuple(s["h3s"])) for s in row.outline),
                                cluster_name=row.cluster_name)
            for row in rows
        }
        return [{task_id: ideas[task_id] for task_id in sorted(ids) if task_id in ideas} for ids in batches]

    async def generate(self, deps: Deps, inputs: dict[int, IdeaIn]) -> dict[int, ArticleOut]:
        articles = await GenerateContent(deps.provider).execute(list(inputs.values()))
        return {task_id: articles[idea.id] for task_id, idea in inputs.items()}

    async def write(self, session: AsyncSession, ctx: BatchContext, inputs: dict[int, IdeaIn],
                    outputs: dict[int, ArticleOut]) -> Written:
        written, = await self.write_group(session, [(ctx, inputs, outputs)])
        return written

    async def write_group(self, session: AsyncSession,
                          batches: Sequence[tuple[BatchContext, dict[int, IdeaIn], dict[int, ArticleOut]]]
                          ) -> list[Written]:
        """The drafts of every batch of a finish group (one run's) in one statement."""
        articles = [(task_id, article) for _, _, outputs in batches for task_id, article in outputs.items()]
        inserted = {row.task_id: row.id for row in (await session.execute(INSERT_ARTICLES, {
            "site_id": batches[0][0].site_id, "task_ids": [task_id for task_id, _ in articles],
            "titles": [a.title[:300] for _, a in articles], "meta_titles": [a.meta_title for _, a in articles],
            "meta_descriptions": [a.meta_description for _, a in articles],
            "slugs": [a.slug[:300] for _, a in articles], "htmls": [a.html for _, a in articles],
            "markdowns": [a.markdown for _, a in articles],
            "sections": [json.dumps(list(a.sections)) for _, a in articles],
            "word_counts": [a.word_count for _, a in articles]})).all()}
        written = []
        for _, _, outputs in batches:
            drafts = sorted(inserted[task_id] for task_id in outputs if task_id in inserted)
            written.append(Written(items_out=len(drafts), credits=GenerateContent.credits(len(drafts)),
                                   handed_on=drafts))
        return written


# The seed's query (`shared.seed_queries.eligible_tasks`) for a batch's tasks: still queued and without a
# draft, each with its idea and its cluster's name. A prepared statement: built per batch as an ORM query
# it cost a stage 4 batch more of the consumer's CPU (the expression, its cache key, loading the idea as
# an entity) than the statement itself. `tests/integration/test_load_in_claim.py` checks it against the
# seed's query.
LOAD_QUEUED = text("""
    SELECT t.id AS task_id, i.id, i.title, i.content_type, i.target_keywords, i.outline, i.description,
           c.name AS cluster_name
      FROM tasks AS t JOIN content_ideas AS i ON i.id = t.idea_id JOIN clusters AS c ON c.id = i.cluster_id
     WHERE t.id = ANY(CAST(:ids AS integer[])) AND t.site_id = :site_id AND t.status = 'queued'
       AND NOT EXISTS (SELECT FROM content WHERE content.task_id = t.id)
     ORDER BY t.id
""")

# The batch's drafts, and their tasks marked completed, in one prepared statement: built per batch as an
# ORM insert of literal rows, the statement cost a stage 4 batch more of the consumer's CPU (building,
# its cache key, the ORM's bulk persistence) than its claim and finish together. A task that has its
# draft already (a retried batch) gets none and stays as it is. Sections travel as JSON texts, an array
# of jsonb being a type asyncpg would introspect on every new connection.
INSERT_ARTICLES = text("""
    WITH inserted AS (
        INSERT INTO content (site_id, task_id, title, meta_title, meta_description, slug, html, markdown,
                             sections, word_count, status)
        SELECT :site_id, a.task_id, a.title, a.meta_title, a.meta_description, a.slug, a.html, a.markdown,
               CAST(a.sections AS jsonb), a.word_count, 'draft'
          FROM unnest(CAST(:task_ids AS integer[]), CAST(:titles AS text[]), CAST(:meta_titles AS text[]),
                      CAST(:meta_descriptions AS text[]), CAST(:slugs AS text[]), CAST(:htmls AS text[]),
                      CAST(:markdowns AS text[]), CAST(:sections AS text[]), CAST(:word_counts AS integer[]))
               AS a(task_id, title, meta_title, meta_description, slug, html, markdown, sections, word_count)
        ON CONFLICT (task_id) DO NOTHING
     RETURNING task_id, id
    ), completed AS (
        UPDATE tasks SET status = 'completed' WHERE id IN (SELECT task_id FROM inserted)
    )
    SELECT task_id, id FROM inserted ORDER BY id
""")
