"""Stage 1's consolidation: the run's clusters drawn again, once, over all of its keywords.

Stage 1 clusters batch by batch, each batch against the clusters so far, so the first keywords of a
topic found clusters that later, closer keywords cannot merge, and which ones depends on the order
the keywords came in. Before stage 2 plans (in its transaction, so the two commit together or not at
all), `consolidate_run` re-clusters every keyword the run clustered in one order-independent pass
(`ai.local_cluster.consolidate`) and moves the keywords to match: the result depends on the site's
keywords, not on their order, the batch size or the consumers' concurrency.

- Clusters the site had before the run only ever gain keywords (two of them never merge), so a run
  that adds keywords to a site joins its clusters.
- The run's own clusters are made again, one per new community, in the communities' (canonical) order
  and named after them (numbered where a name repeats), and the batches' clusters are deleted: ids and
  names depend on the keywords alone, so stage 1's batches may run at any concurrency. Stage 2 has not
  planned yet, so no idea points at them.
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
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import Select, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ai.base import ClusterOut, ExistingCluster, KeywordIn
from ai.local_cluster import consolidate
from consumers.deps import Deps
from consumers.stage1_clustering import CANDIDATE_CLUSTERS, CONSOLIDATE_LIMIT, sample_members
from shared.automation_logger import RunRef
from shared.models import AutomationRun, Cluster, Keyword, RunStage, StageBatch

log = logging.getLogger("automation.consolidation")



@dataclass(frozen=True)
class Consolidated:
    """What a consolidation changed, for the run log and the stage 1 result."""

    clusters_before: int
    clusters_after: int
    keywords_moved: int  # keywords whose cluster row changed (all of the run's, the first time)
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


async def _earlier_clusters(session: AsyncSession, run: AutomationRun, site_clusters: dict[int, str],
                            holding: Counter[int]) -> list[ExistingCluster]:
    """The site's clusters from before the run (`site_clusters`, id -> name) that consolidation may add
    keywords to: those the run's batches put keywords in (most first), then, on a site with few clusters,
    all of them; at most CANDIDATE_CLUSTERS, each with up to EXISTING_SAMPLE of its own (pre-run) keywords."""
    earlier = sorted(site_clusters)
    chosen = sorted((c for c in earlier if holding[c]), key=lambda c: (-holding[c], c))[:CANDIDATE_CLUSTERS]
    if len(earlier) <= CANDIDATE_CLUSTERS:
        chosen = earlier
    if not chosen:
        return []
    members = await sample_members(session, chosen, leave_out=_run_keyword_ids(run))
    return [ExistingCluster(id=c, name=site_clusters[c], keywords=tuple(members.get(c, ()))) for c in sorted(chosen)]


def _final_names(communities: list[ClusterOut], taken: set[str]) -> list[str | None]:
    """The name of each new community's cluster: its own, numbered when an earlier community of the list
    or a cluster the site had before the run has it (None for a community joining an earlier cluster)."""
    names: list[str | None] = []
    used = {name.casefold() for name in taken}
    for community in communities:
        if community.existing_id is not None:
            names.append(None)
            continue
        base, number = community.name[:290], 1
        name = community.name[:300]
        while name.casefold() in used:
            number += 1
            name = f"{base} ({number})"
        used.add(name.casefold())
        names.append(name)
    return names


def _unchanged(communities: list[ClusterOut], names: list[str | None], current: dict[int, int],
               run_clusters: dict[int, str]) -> bool:
    """Whether the run's clusters already are the communities: each new community one run cluster of
    its name holding exactly its keywords, their ids in the communities' order (asked again after a
    pause, consolidation finds what it made and changes nothing)."""
    members: dict[int, set[int]] = {}
    for keyword, cluster_id in current.items():
        members.setdefault(cluster_id, set()).add(keyword)
    ids = []
    for community, name in zip(communities, names, strict=True):
        holders = {current[k] for k in community.keyword_ids}
        if len(holders) != 1:
            return False
        [holder] = holders
        if community.existing_id is not None:
            if holder != community.existing_id:
                return False
            continue
        if run_clusters.get(holder) != name or members[holder] != set(community.keyword_ids):
            return False
        ids.append(holder)
    return ids == sorted(ids) and len(ids) == len(run_clusters)


async def consolidate_run(deps: Deps, session: AsyncSession, run: AutomationRun, ref: RunRef) -> Consolidated | None:
    """Re-cluster the run's keywords in one pass and rebuild the run's clusters to match (in the caller's
    transaction, the one that plans stage 2). None when there was nothing to do or it was skipped.

    The run's clusters are made again, in the communities' order and with names that follow from them
    alone, and the batches' clusters removed: stage 2 orders clusters by id (an earlier cluster's idea
    covers a later one's duplicate keyword) and seeds its writer by cluster name, so neither may depend
    on which batch happened to create a cluster first."""
    if getattr(deps.provider, "fixed_workload", False):
        return None
    rows = await _run_keywords(session, run)
    if len(rows) < 2:
        return None
    if len(rows) > CONSOLIDATE_LIMIT:
        deps.logger.log_stage_progress(session, ref, 1, f"clusters not consolidated: {len(rows)} keywords is more "
                                                        f"than the {CONSOLIDATE_LIMIT} one pass takes")
        return None
    current = {kid: cluster_id for kid, _, _, cluster_id in rows}
    site_clusters = dict((await session.execute(select(Cluster.id, Cluster.name).where(
        Cluster.site_id == run.site_id, Cluster.created_at < run.started_at))).all())
    earlier = await _earlier_clusters(session, run, site_clusters, Counter(current.values()))
    earlier_ids = {c.id for c in earlier}
    run_clusters = dict((await session.execute(select(Cluster.id, Cluster.name).where(
        Cluster.id.in_(set(current.values()) - set(site_clusters))))).all())
    keywords = [KeywordIn(id=kid, text=text, volume=volume) for kid, text, volume, _ in rows]
    communities = await asyncio.to_thread(consolidate, keywords, earlier)
    names = _final_names(communities, set(site_clusters.values()))
    if _unchanged(communities, names, current, run_clusters):
        return Consolidated(len(run_clusters), len(run_clusters), 0, 0)

    targets: list[int] = []
    for index, community in enumerate(communities):  # new rows first, in order, under names nobody has
        if community.existing_id is not None:
            targets.append(community.existing_id)
            continue
        cluster = Cluster(site_id=run.site_id, name=f"~consolidating run {run.id} #{index}",
                          description=community.description, status="new")
        session.add(cluster)
        await session.flush()
        targets.append(cluster.id)
    moved = joined_earlier = 0
    for community, target in zip(communities, targets, strict=True):
        movers = [k for k in community.keyword_ids if current[k] != target]
        if movers:
            await session.execute(update(Keyword).where(Keyword.id.in_(movers)).values(cluster_id=target))
            moved += len(movers)
        if target in earlier_ids and movers:
            joined_earlier += len(movers)
            await session.execute(update(Cluster).where(Cluster.id == target, Cluster.status == "mapped")
                                  .values(status="reopened"))
    await session.execute(delete(Cluster).where(Cluster.id.in_(list(run_clusters)),
                                                ~exists().where(Keyword.cluster_id == Cluster.id)))
    for name, target in zip(names, targets, strict=True):
        if name is not None:
            await session.execute(update(Cluster).where(Cluster.id == target).values(name=name)
                                  .execution_options(synchronize_session=False))
    result = Consolidated(clusters_before=len(run_clusters), clusters_after=sum(n is not None for n in names),
                          keywords_moved=moved, joined_earlier=joined_earlier)
    await _record(deps, session, run, ref, result)
    return result


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
        session, ref, 1, f"clusters consolidated over the run's keywords: the batches' {result.clusters_before} "
                         f"clusters became {result.clusters_after}"
                         + (f"; {result.joined_earlier} keywords joined clusters from earlier runs"
                            if result.joined_earlier else ""))
    log.info("run %s: clusters consolidated %d -> %d, %d keywords moved", run.run_id, result.clusters_before,
             result.clusters_after, result.keywords_moved)
