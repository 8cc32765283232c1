"""Stage 2: clusters -> content ideas (GenerateIdeas). Seed query: status='new' without ideas."""

from __future__ import annotations

from sqlalchemy import Select, exists, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncSession

from consumers.deps import BatchContext, Deps, Written
from consumers.relevance import closest, significant_words
from shared.ai.base import ClusterIn, IdeaOut, InvalidAIOutput
from shared.ai.functions import GenerateIdeas
from shared.models import Cluster, ContentIdea, Keyword

TAKEN_TITLES = 200  # existing titles shown per batch so the AI avoids them: the prompt stays bounded


def _eligible(site_id: int):  # type: ignore[no-untyped-def]
    has_ideas = exists().where(ContentIdea.cluster_id == Cluster.id)
    return (Cluster.site_id == site_id, Cluster.status == "new", ~has_ideas)


class IdeasStage:
    number = 2
    input_name = "clusters"
    output_name = "ideas"

    def eligible_ids(self, site_id: int) -> Select[tuple[int]]:
        return select(Cluster.id).where(*_eligible(site_id)).order_by(Cluster.id)

    async def load(self, session: AsyncSession, site_id: int, item_ids: list[int]
                   ) -> tuple[list[ClusterIn], frozenset[str]]:
        rows = (await session.execute(
            select(Cluster, func.array_remove(func.array_agg(aggregate_order_by(Keyword.keyword, Keyword.id)), None))
            .outerjoin(Keyword, Keyword.cluster_id == Cluster.id)
            .where(Cluster.id.in_(item_ids), *_eligible(site_id)).group_by(Cluster.id).order_by(Cluster.id)
        )).all()
        clusters = [ClusterIn(id=c.id, name=c.name, description=c.description, keywords=tuple(kws or ()))
                    for c, kws in rows]
        if not clusters:
            return [], frozenset()
        # titles that could clash: the site's titles sharing the most words with the clusters' names
        # (a site-wide list would grow with the site; the unique constraint rejects any clash missed)
        taken = frozenset((await session.scalars(closest(
            select(ContentIdea.title).where(ContentIdea.site_id == site_id), ContentIdea.title,
            significant_words(c.name for c in clusters), TAKEN_TITLES))).all())
        return clusters, taken

    async def generate(self, deps: Deps, inputs: tuple[list[ClusterIn], frozenset[str]]
                       ) -> dict[int, list[IdeaOut]]:
        clusters, taken = inputs
        return await GenerateIdeas(deps.provider).execute(clusters, taken)

    async def write(self, session: AsyncSession, ctx: BatchContext, inputs: tuple[list[ClusterIn], frozenset[str]],
                    outputs: dict[int, list[IdeaOut]]) -> Written:
        cluster_ids = [c.id for c in inputs[0]]
        locked = (await session.scalars(select(Cluster).where(Cluster.id.in_(cluster_ids), *_eligible(ctx.site_id))
                                        .order_by(Cluster.id).with_for_update())).all()
        created = 0
        for cluster in locked:
            inserted = (await session.scalars(
                insert(ContentIdea).values([
                    {"site_id": ctx.site_id, "cluster_id": cluster.id, "title": idea.title[:300],
                     "content_type": idea.content_type, "target_keywords": list(idea.target_keywords),
                     "outline": [{"h2": s.h2, "h3s": list(s.h3s)} for s in idea.outline],
                     "description": idea.description, "status": "new"}
                    for idea in outputs[cluster.id]])
                .on_conflict_do_nothing(index_elements=["site_id", "title"]).returning(ContentIdea.id))).all()
            if not inserted:
                raise InvalidAIOutput(f"every idea title for cluster {cluster.id} is already taken")
            cluster.status = "mapped"
            created += len(inserted)
        return Written(items_out=created, credits=GenerateIdeas.credits(len(locked)))
