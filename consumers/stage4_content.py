"""Stage 4: tasks -> draft content (GenerateContent). Seed query: status='queued' without content."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ai.base import ArticleOut, IdeaIn, OutlineSection
from ai.functions import GenerateContent
from consumers.deps import BatchContext, Deps, LoadInClaim, Written
from shared.catalogue import BY_NUMBER
from shared.models import Cluster, Content, ContentIdea, Task
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
        inserted = (await session.execute(
            insert(Content).values([
                {"site_id": ctx.site_id, "task_id": task_id, "title": a.title[:300], "meta_title": a.meta_title,
                 "meta_description": a.meta_description, "slug": a.slug[:300], "html": a.html,
                 "markdown": a.markdown, "sections": list(a.sections), "word_count": a.word_count,
                 "status": "draft"} for task_id, a in outputs.items()])
            .on_conflict_do_nothing(index_elements=["task_id"]).returning(Content.task_id, Content.id))).all()
        if inserted:
            await session.execute(update(Task).where(Task.id.in_([task_id for task_id, _ in inserted]))
                                  .values(status="completed"))
        return Written(items_out=len(inserted), credits=GenerateContent.credits(len(inserted)),
                       handed_on=[content_id for _, content_id in inserted])
