"""Stage 4: tasks -> draft content (GenerateContent). Seed query: status='queued' without content."""

from __future__ import annotations

import json

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ai.base import ArticleOut, IdeaIn, OutlineSection
from ai.functions import GenerateContent
from consumers.deps import BatchContext, Deps, LoadInClaim, Written
from shared.catalogue import BY_NUMBER
from shared.models import Cluster, ContentIdea, Task
from shared.seed_queries import eligible_tasks


class ContentStage:
    stage = BY_NUMBER[4]
    sequential_above: int | None = None
    load_in_claim: LoadInClaim | None = None

    async def load(self, session: AsyncSession, site_id: int, item_ids: list[int]) -> dict[int, IdeaIn]:
        rows = (await session.execute(
            select(Task.id, ContentIdea, Cluster.name).join(ContentIdea, ContentIdea.id == Task.idea_id)
            .join(Cluster, Cluster.id == ContentIdea.cluster_id)
            .where(Task.id.in_(item_ids), *eligible_tasks(site_id)).order_by(Task.id))).all()
        return {
            task_id: IdeaIn(id=idea.id, title=idea.title, content_type=idea.content_type,
                            target_keywords=tuple(idea.target_keywords), description=idea.description,
                            outline=tuple(OutlineSection(h2=s["h2"], h3s=tuple(s["h3s"])) for s in idea.outline),
                            cluster_name=cluster_name)
            for task_id, idea, cluster_name in rows
        }

    async def generate(self, deps: Deps, inputs: dict[int, IdeaIn]) -> dict[int, ArticleOut]:
        articles = await GenerateContent(deps.provider).execute(list(inputs.values()))
        return {task_id: articles[idea.id] for task_id, idea in inputs.items()}

    async def write(self, session: AsyncSession, ctx: BatchContext, inputs: dict[int, IdeaIn],
                    outputs: dict[int, ArticleOut]) -> Written:
        articles = list(outputs.items())
        inserted = (await session.execute(INSERT_ARTICLES, {
            "site_id": ctx.site_id, "task_ids": [task_id for task_id, _ in articles],
            "titles": [a.title[:300] for _, a in articles], "meta_titles": [a.meta_title for _, a in articles],
            "meta_descriptions": [a.meta_description for _, a in articles],
            "slugs": [a.slug[:300] for _, a in articles], "htmls": [a.html for _, a in articles],
            "markdowns": [a.markdown for _, a in articles],
            "sections": [json.dumps(list(a.sections)) for _, a in articles],
            "word_counts": [a.word_count for _, a in articles]})).all()
        return Written(items_out=len(inserted), credits=GenerateContent.credits(len(inserted)),
                       handed_on=[row.id for row in inserted])


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
