"""Stage 2: clusters -> content ideas (GenerateIdeas). Seed query: status='new' without ideas, or reopened.

The titles shown to the AI as taken are those the site had when its active run started, not the
ones this run's other batches wrote a moment ago: what a batch sees then does not depend on which
batches ran first, and the same input gives the same ideas. Should two of the run's clusters still
come up with one title, the later writer keeps its idea under the title with its cluster's name.

One idea per search intent: a cluster is shown only the keywords whose intent none of its ideas
targets yet (`ai.intents.intent_key`), so a cluster that stage 1 reopened because new keywords joined
it gets ideas for what is new in it and nothing else; a cluster with nothing new gets no AI call.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncSession

from ai.base import ClusterIn, IdeaOut, InvalidAIOutput
from ai.functions import GenerateIdeas
from ai.intents import intent_key
from consumers.deps import BatchContext, Deps, Written
from consumers.relevance import closest, significant_words
from shared.catalogue import BY_NUMBER
from shared.models import ACTIVE_RUN_STATUSES, AutomationRun, Cluster, ContentIdea, Keyword
from shared.seed_queries import eligible_clusters

TAKEN_TITLES = 200  # existing titles shown per batch so the AI avoids them: the prompt stays bounded


def _before_active_run(site_id: int) -> ColumnElement[bool]:
    """Ideas the site had when its active run (at most one: the per-site lock) started."""
    started = (select(AutomationRun.started_at)
               .where(AutomationRun.site_id == site_id, AutomationRun.status.in_(ACTIVE_RUN_STATUSES))
               .scalar_subquery())
    return ContentIdea.created_at < func.coalesce(started, func.now())




class IdeasStage:
    stage = BY_NUMBER[2]
    sequential = False

    async def load(self, session: AsyncSession, site_id: int, item_ids: list[int]
                   ) -> tuple[list[ClusterIn], frozenset[str]]:
        rows = (await session.execute(
            select(Cluster, func.array_remove(func.array_agg(aggregate_order_by(Keyword.keyword, Keyword.id)), None))
            .outerjoin(Keyword, Keyword.cluster_id == Cluster.id)
            .where(Cluster.id.in_(item_ids), *eligible_clusters(site_id)).group_by(Cluster.id).order_by(Cluster.id)
        )).all()
        if not rows:
            return [], frozenset()
        covered: dict[int, set[frozenset[str]]] = {c.id: set() for c, _ in rows}
        for cluster_id, primary in (await session.execute(
                select(ContentIdea.cluster_id, ContentIdea.primary_keyword)
                .where(ContentIdea.cluster_id.in_(list(covered)), ContentIdea.primary_keyword.is_not(None)))).all():
            covered[cluster_id].add(intent_key(str(primary)))
        clusters = [ClusterIn(id=c.id, name=c.name, description=c.description,
                              keywords=tuple(k for k in kws or () if intent_key(k) not in covered[c.id]))
                    for c, kws in rows]
        # titles that could clash: the site's titles sharing the most words with the clusters' names
        # (a site-wide list would grow with the site; the unique constraint rejects any clash missed)
        taken = frozenset((await session.scalars(closest(
            select(ContentIdea.title).where(ContentIdea.site_id == site_id, _before_active_run(site_id)),
            ContentIdea.title,
            significant_words(c.name for c in clusters), TAKEN_TITLES))).all())
        return clusters, taken

    async def generate(self, deps: Deps, inputs: tuple[list[ClusterIn], frozenset[str]]
                       ) -> dict[int, list[IdeaOut]]:
        clusters, taken = inputs
        ideas = await GenerateIdeas(deps.provider).execute([c for c in clusters if c.keywords], taken)
        return {c.id: ideas.get(c.id, []) for c in clusters}

    async def write(self, session: AsyncSession, ctx: BatchContext, inputs: tuple[list[ClusterIn], frozenset[str]],
                    outputs: dict[int, list[IdeaOut]]) -> Written:
        cluster_ids = [c.id for c in inputs[0]]
        locked = (await session.scalars(
            select(Cluster).where(Cluster.id.in_(cluster_ids), *eligible_clusters(ctx.site_id))
            .order_by(Cluster.id).with_for_update())).all()
        created = 0
        for cluster in locked:
            rows: list[dict[str, Any]] = [{"site_id": ctx.site_id, "cluster_id": cluster.id, "title": idea.title[:300],
                     "content_type": idea.content_type, "target_keywords": list(idea.target_keywords),
                     "primary_keyword": idea.primary_keyword[:300],
                     "outline": [{"h2": s.h2, "h3s": list(s.h3s)} for s in idea.outline],
                     "description": idea.description, "status": "new"}
                    for idea in outputs[cluster.id]]
            inserted = await _insert_ideas(session, rows)
            clashed = [r for r in rows if r["title"] not in inserted]
            for row in clashed:  # another batch of this run took the title since this one was planned
                row["title"] = f"{row['title'][:300 - len(cluster.name) - 3]} ({cluster.name})"[:300]
            if clashed:
                inserted |= await _insert_ideas(session, clashed)
            if rows and not inserted:
                raise InvalidAIOutput(f"every idea title for cluster {cluster.id} is already taken")
            cluster.status = "mapped"
            created += len(inserted)
        asked = {c.id for c in inputs[0] if c.keywords}  # a cluster with nothing new cost no AI call
        return Written(items_out=created, credits=GenerateIdeas.credits(sum(1 for c in locked if c.id in asked)))


async def _insert_ideas(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    """Insert the ideas whose titles are free; returns the titles inserted."""
    if not rows:  # `values([])` would insert one row of defaults
        return set()
    return set((await session.scalars(
        insert(ContentIdea).values(rows).on_conflict_do_nothing(index_elements=["site_id", "title"])
        .returning(ContentIdea.title))).all())
