"""Stage 1: keywords -> clusters (AutoCluster). Seed query: status='new', no cluster, not disabled."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Integer, Select, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ai.base import ClusterOut, ExistingCluster, KeywordIn
from ai.functions import AutoCluster
from consumers.deps import BatchContext, Deps, LoadInClaim, Written
from consumers.relevance import closest, matching, significant_words
from shared.catalogue import BY_NUMBER
from shared.models import Cluster, Keyword
from shared.seed_queries import eligible_keywords

EXISTING_SAMPLE = 12  # member keywords shown to the clusterer per existing cluster
CANDIDATE_CLUSTERS = 200  # existing clusters shown per batch: a prompt (and a gram matrix) must stay small
# Keywords of one run that stage 1's consolidation (consumers.stage1_consolidation) takes in one pass; a
# bigger run keeps its batch clusters, and works through its batches one at a time instead.
CONSOLIDATE_LIMIT = 20_000


@functools.cache
def candidate_clusters(limit: int) -> Select[int, str]:
    """Ids and names of the clusters (of the site bound as `site_id`) whose names share the most of
    the batch's bound words (`matching`), at most `limit`, so the prompt stays the same size however
    big the site. Built once per limit."""
    return closest(select(Cluster.id, Cluster.name).where(Cluster.site_id == bindparam("site_id", type_=Integer)),
                   Cluster.name, limit, ties=-Cluster.id)


async def load_candidates(session: AsyncSession, site_id: int, patterns: list[str]) -> dict[int, str]:
    """Every cluster of a site that has at most CANDIDATE_CLUSTERS of them: a keyword may belong to a
    cluster whose name shares no word with it ("rate lock period" under "Mortgage Rates"), and the
    clusterer matches by meaning. A bigger site's are narrowed to those sharing the most words."""
    every = (await session.execute(select(Cluster.id, Cluster.name).where(Cluster.site_id == site_id)
                                   .order_by(Cluster.id).limit(CANDIDATE_CLUSTERS + 1))).all()
    if len(every) <= CANDIDATE_CLUSTERS:
        return {row[0]: row[1] for row in every}
    if not patterns:  # no word to share
        return {}
    return {row[0]: row[1] for row in (await session.execute(
        candidate_clusters(CANDIDATE_CLUSTERS), {"site_id": site_id, **matching(patterns)})).all()}



async def sample_members(session: AsyncSession, cluster_ids: list[int], leave_out: Select[Any] | None = None
                         ) -> dict[int, list[str]]:
    """Up to EXISTING_SAMPLE member keywords of each cluster, the oldest first (ids in `leave_out`, a
    subquery of keyword ids, not counted): what shows the clusterer what a cluster is about."""
    numbered = (select(Keyword.cluster_id, Keyword.keyword,
                       func.row_number().over(partition_by=Keyword.cluster_id, order_by=Keyword.id).label("n"))
                .where(Keyword.cluster_id.in_(cluster_ids),
                       *(() if leave_out is None else (Keyword.id.not_in(leave_out),))).subquery())
    members: dict[int, list[str]] = {}
    for cluster_id, keyword in await session.execute(
            select(numbered.c.cluster_id, numbered.c.keyword).where(numbered.c.n <= EXISTING_SAMPLE)
            .order_by(numbered.c.cluster_id, numbered.c.n)):
        members.setdefault(cluster_id, []).append(keyword)
    return members


class ClusteringStage:
    stage = BY_NUMBER[1]
    sequential_above: int | None = CONSOLIDATE_LIMIT
    load_in_claim: LoadInClaim | None = None

    async def load(self, session: AsyncSession, site_id: int, item_ids: list[int]
                   ) -> tuple[list[KeywordIn], list[ExistingCluster]]:
        keywords = [KeywordIn(id=k.id, text=k.keyword, volume=k.volume) for k in (await session.scalars(
            select(Keyword).where(Keyword.id.in_(item_ids), *eligible_keywords(site_id)).order_by(Keyword.id))).all()]
        if not keywords:
            return [], []
        # two plain statements, not one: joined, the candidates were ranked twice and a misestimated
        # join sampled every candidate's members once per candidate (640 ms a batch at 7,000 clusters)
        candidates = await load_candidates(session, site_id, significant_words(k.text for k in keywords))
        members = await sample_members(session, list(candidates)) if candidates else {}
        existing = [ExistingCluster(id=cid, name=candidates[cid], keywords=tuple(members.get(cid, ())))
                    for cid in sorted(candidates)]
        return keywords, existing

    async def generate(self, deps: Deps, inputs: tuple[list[KeywordIn], list[ExistingCluster]]
                       ) -> list[ClusterOut]:
        keywords, existing = inputs
        return await AutoCluster(deps.provider).execute(keywords, existing)

    async def write(self, session: AsyncSession, ctx: BatchContext,
                    inputs: tuple[list[KeywordIn], list[ExistingCluster]], outputs: list[ClusterOut]) -> Written:
        created = clustered = 0
        for cluster in outputs:
            cluster_id = cluster.existing_id
            if cluster_id is None:
                cluster_id = await session.scalar(
                    insert(Cluster).values(site_id=ctx.site_id, name=cluster.name[:300],
                                           description=cluster.description, status="new")
                    .on_conflict_do_nothing(index_elements=["site_id", "name"]).returning(Cluster.id))
                if cluster_id is None:  # a concurrent batch created the same cluster: join it
                    cluster_id = await session.scalar(select(Cluster.id).where(
                        Cluster.site_id == ctx.site_id, Cluster.name == cluster.name[:300]))
                else:
                    created += 1
            result = await session.execute(
                update(Keyword).where(Keyword.id.in_(cluster.keyword_ids), *eligible_keywords(ctx.site_id))
                .values(cluster_id=cluster_id, status="clustered"))
            joined = result.rowcount  # type: ignore[attr-defined]
            clustered += joined
            if joined and cluster.existing_id is not None:  # new keywords, maybe new intents: stage 2 looks again
                await session.execute(update(Cluster).where(Cluster.id == cluster_id, Cluster.status == "mapped")
                                      .values(status="reopened"))
        return Written(items_out=created, credits=AutoCluster.credits(clustered))
