"""Stage 1's consolidation: the run's clusters drawn again, once, over all of its keywords.

Stage 1 clusters batch by batch, each batch against the clusters so far, so the first keywords of a
topic found clusters that later, closer keywords cannot merge, and which ones depends on the order
the keywords came in. Before stage 2 plans (in its transaction, so the two commit together or not at
all), `consolidate_run` re-clusters every keyword the run clustered in one order-independent pass
(`ai.local_cluster.consolidate`) and moves the keywords to match: the result depends on the site's
keywords, not on their order, the batch size or the consumers' concurrency.

- Clusters the site had before the run only ever gain keywords (two of them never merge), so a run
  that adds keywords to a site joins its clusters.
- Each new community keeps the run's cluster that holds most of its keywords (renamed after the
  community when the name is free); a community without one gets a new cluster; the run's clusters
  left empty are deleted. Stage 2 has not planned yet, so no idea points at them.
- Local and deterministic for every provider (sentence embeddings and words, no AI call, no credits).
  The simulated provider's fixed benchmark workload is left alone, and a run of more than
  `CONSOLIDATE_LIMIT` keywords keeps its batch clusters (said in the run log): the pass is
  O(keywords x neighbours) in memory but its CPU grows with the run.
- Asked twice (a resume after a credit pause before stage 2), it finds the same communities and
  changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass

from sqlalchemy import Select, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ai.base import ClusterOut, ExistingCluster, KeywordIn
from ai.local_cluster import consolidate
from consumers.deps import Deps
from consumers.stage1_clustering import CANDIDATE_CLUSTERS, EXISTING_SAMPLE
from shared.automation_logger import RunRef
from shared.models import AutomationRun, Cluster, Keyword, RunStage, StageBatch

log = logging.getLogger("automation.consolidation")

CONSOLIDATE_LIMIT = 20_000  # keywords of one run; above it, the batch clusters stand


@dataclass(frozen=True)
class Consolidated:
    """What a consolidation changed, for the run log and the stage 1 result."""

    clusters_before: int
    clusters_after: int
    keywords_moved: int
    joined_earlier: int  # keywords moved into a cluster the site had before the run


def _run_keyword_ids(run: AutomationRun) -> Select[tuple[int]]:
    """The ids of the keywords the run's stage 1 batches took (a subquery, however many there are)."""
    return select(func.unnest(StageBatch.item_ids)).where(
        StageBatch.run_id == run.id, StageBatch.stage == 1, StageBatch.status == "done")


async def _run_keywords(session: AsyncSession, run: AutomationRun) -> list[tuple[int, str, int, int]]:
    """(id, text, volume, cluster id) of every keyword the run's stage 1 batches clustered."""
    rows = await session.execute(
        select(Keyword.id, Keyword.keyword, Keyword.volume, Keyword.cluster_id)
        .where(Keyword.id.in_(_run_keyword_ids(run)), Keyword.site_id == run.site_id,
               Keyword.cluster_id.is_not(None))
        .order_by(Keyword.id))
    return [(r.id, r.keyword, r.volume, r.cluster_id) for r in rows]


async def _earlier_clusters(session: AsyncSession, run: AutomationRun, holding: Counter[int]
                            ) -> list[ExistingCluster]:
    """The site's clusters from before the run that consolidation may add keywords to: those the run's
    batches put keywords in (most first), then, on a site with few clusters, all of them; at most
    CANDIDATE_CLUSTERS, each with up to EXISTING_SAMPLE of its own (pre-run) keywords."""
    earlier = (await session.scalars(select(Cluster.id).where(
        Cluster.site_id == run.site_id, Cluster.created_at < run.started_at).order_by(Cluster.id))).all()
    chosen = sorted((c for c in earlier if holding[c]), key=lambda c: (-holding[c], c))[:CANDIDATE_CLUSTERS]
    if len(earlier) <= CANDIDATE_CLUSTERS:
        chosen = list(earlier)
    if not chosen:
        return []
    names = dict((await session.execute(select(Cluster.id, Cluster.name).where(Cluster.id.in_(chosen)))).all())
    numbered = (select(Keyword.cluster_id, Keyword.keyword,
                       func.row_number().over(partition_by=Keyword.cluster_id, order_by=Keyword.id).label("n"))
                .where(Keyword.cluster_id.in_(chosen), Keyword.id.not_in(_run_keyword_ids(run))).subquery())
    members: dict[int, list[str]] = defaultdict(list)
    for cluster_id, text in await session.execute(
            select(numbered.c.cluster_id, numbered.c.keyword).where(numbered.c.n <= EXISTING_SAMPLE)
            .order_by(numbered.c.cluster_id, numbered.c.n)):
        members[cluster_id].append(text)
    return [ExistingCluster(id=c, name=names[c], keywords=tuple(members[c])) for c in sorted(chosen)]


def _targets(communities: list[ClusterOut], current: dict[int, int], run_clusters: set[int]) -> list[int | None]:
    """The cluster each community becomes: a pre-run cluster it joined, else the run's cluster holding
    most of its keywords (greedy by overlap, ties to the lower cluster id and community, each run cluster
    used once), else None (a new cluster)."""
    targets: list[int | None] = [c.existing_id for c in communities]
    overlaps = sorted(
        ((-count, cluster_id, index)
         for index, community in enumerate(communities) if community.existing_id is None
         for cluster_id, count in Counter(current[k] for k in community.keyword_ids
                                          if current[k] in run_clusters).items()))
    used: set[int] = set()
    for _, cluster_id, index in overlaps:
        if targets[index] is None and cluster_id not in used:
            targets[index] = cluster_id
            used.add(cluster_id)
    return targets


async def consolidate_run(deps: Deps, session: AsyncSession, run: AutomationRun, ref: RunRef) -> Consolidated | None:
    """Re-cluster the run's keywords in one pass and move them to match (in the caller's transaction,
    the one that plans stage 2). None when there was nothing to do or it was skipped."""
    if getattr(deps.provider, "fixed_workload", False):
        return None
    rows = await _run_keywords(session, run)
    if len(rows) < 2:
        return None
    if len(rows) > CONSOLIDATE_LIMIT:
        deps.logger.log_stage_progress(session, ref, 1, f"clusters not consolidated: {len(rows)} keywords is more "
                                                        f"than the {CONSOLIDATE_LIMIT} one pass takes")
        return None
    current = {kid: cluster_id for kid, _, _, cluster_id in rows if cluster_id is not None}
    earlier = await _earlier_clusters(session, run, Counter(current.values()))
    earlier_ids = {c.id for c in earlier}
    all_earlier = set((await session.scalars(select(Cluster.id).where(
        Cluster.site_id == run.site_id, Cluster.created_at < run.started_at))).all())
    run_clusters = set(current.values()) - all_earlier
    keywords = [KeywordIn(id=kid, text=text, volume=volume) for kid, text, volume, _ in rows]
    communities = await asyncio.to_thread(consolidate, keywords, earlier)
    targets = _targets(communities, current, run_clusters)

    moved = joined_earlier = 0
    for community, target in zip(communities, targets, strict=True):
        if target is None:
            target = await _new_cluster(session, run.site_id, community)
            run_clusters.add(target)
        movers = [k for k in community.keyword_ids if current[k] != target]
        if movers:
            await session.execute(update(Keyword).where(Keyword.id.in_(movers)).values(cluster_id=target))
            moved += len(movers)
            if target in earlier_ids:
                joined_earlier += len(movers)
                await session.execute(update(Cluster).where(Cluster.id == target, Cluster.status == "mapped")
                                      .values(status="reopened"))
    emptied = (await session.execute(
        delete(Cluster).where(Cluster.id.in_(run_clusters), ~exists().where(Keyword.cluster_id == Cluster.id))
        .returning(Cluster.id))).scalars().all()
    for community, target in zip(communities, targets, strict=True):
        if target is not None and target in run_clusters:
            await _rename_if_free(session, run.site_id, target, community)
    after = len(run_clusters) - len(emptied)
    result = Consolidated(clusters_before=len(set(current.values()) - all_earlier), clusters_after=after,
                          keywords_moved=moved, joined_earlier=joined_earlier)
    await _record(deps, session, run, ref, result)
    return result


async def _new_cluster(session: AsyncSession, site_id: int, community: ClusterOut) -> int:
    """A cluster for a community no run cluster holds (rare: the run had fewer clusters than communities);
    named after it, with a number when the site already has that name."""
    base = community.name[:290]
    name, number = community.name[:300], 1
    while await session.scalar(select(exists().where(Cluster.site_id == site_id, Cluster.name == name))):
        number += 1
        name = f"{base} ({number})"
    cluster = Cluster(site_id=site_id, name=name, description=community.description, status="new")
    session.add(cluster)
    await session.flush()
    return cluster.id


async def _rename_if_free(session: AsyncSession, site_id: int, cluster_id: int, community: ClusterOut) -> None:
    """Name a kept run cluster after its community, unless another cluster of the site has that name."""
    name = community.name[:300]
    await session.execute(
        update(Cluster).where(Cluster.id == cluster_id, Cluster.name != name,
                              ~exists().where(Cluster.site_id == site_id, Cluster.name == name))
        .values(name=name, description=community.description)
        .execution_options(synchronize_session=False))


async def _record(deps: Deps, session: AsyncSession, run: AutomationRun, ref: RunRef, result: Consolidated) -> None:
    """Stage 1's figures follow the consolidation (its clusters out), and the run log says what moved."""
    if result.keywords_moved == 0:
        return
    await session.execute(update(RunStage).where(RunStage.run_id == run.id, RunStage.stage == 1)
                          .values(items_out=result.clusters_after))
    stage_result = dict(run.stage_result(1) or {})
    stage_result.update(items_out=result.clusters_after, clusters_before_consolidation=result.clusters_before)
    run.stage_1_result = stage_result
    deps.logger.log_stage_progress(
        session, ref, 1, f"clusters consolidated over the run's keywords: {result.clusters_before} -> "
                         f"{result.clusters_after} new clusters, {result.keywords_moved} keywords moved"
                         + (f" ({result.joined_earlier} into clusters from earlier runs)" if result.joined_earlier
                            else ""))
    log.info("run %s: clusters consolidated %d -> %d, %d keywords moved", run.run_id, result.clusters_before,
             result.clusters_after, result.keywords_moved)
