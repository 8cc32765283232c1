"""Stage 1: keywords -> clusters (AutoCluster). Seed query: status='new', no cluster, not disabled."""

from __future__ import annotations

from sqlalchemy import Select, func, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncSession

from consumers.deps import BatchContext, Deps, Written
from shared.ai.base import ClusterOut, ExistingCluster, KeywordIn
from shared.ai.functions import AutoCluster
from shared.models import Cluster, Keyword

EXISTING_SAMPLE = 12  # member keywords shown to the clusterer per existing cluster


def _eligible(site_id: int):  # type: ignore[no-untyped-def]
    return (Keyword.site_id == site_id, Keyword.status == "new", Keyword.cluster_id.is_(None),
            Keyword.disabled.is_(False))


class ClusteringStage:
    number = 1
    input_name = "keywords"
    output_name = "clusters"

    def eligible_ids(self, site_id: int) -> Select[tuple[int]]:
        return select(Keyword.id).where(*_eligible(site_id)).order_by(Keyword.id)

    async def load(self, session: AsyncSession, site_id: int, item_ids: list[int]
                   ) -> tuple[list[KeywordIn], list[ExistingCluster]]:
        keywords = [KeywordIn(id=k.id, text=k.keyword, volume=k.volume) for k in (await session.scalars(
            select(Keyword).where(Keyword.id.in_(item_ids), *_eligible(site_id)).order_by(Keyword.id))).all()]
        if not keywords:
            return [], []
        members = (
            select(Keyword.cluster_id, Keyword.keyword,
                   func.row_number().over(partition_by=Keyword.cluster_id, order_by=Keyword.id).label("n"))
            .where(Keyword.site_id == site_id, Keyword.cluster_id.is_not(None)).subquery()
        )
        rows = (await session.execute(
            select(Cluster.id, Cluster.name,
                   func.array_remove(func.array_agg(aggregate_order_by(members.c.keyword, members.c.n)), None))
            .outerjoin(members, (members.c.cluster_id == Cluster.id) & (members.c.n <= EXISTING_SAMPLE))
            .where(Cluster.site_id == site_id).group_by(Cluster.id).order_by(Cluster.id)
        )).all()
        existing = [ExistingCluster(id=cid, name=name, keywords=tuple(kws or ())) for cid, name, kws in rows]
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
                update(Keyword).where(Keyword.id.in_(cluster.keyword_ids), *_eligible(ctx.site_id))
                .values(cluster_id=cluster_id, status="clustered"))
            clustered += result.rowcount  # type: ignore[attr-defined]
        return Written(items_out=created, credits=AutoCluster.credits(clustered))
