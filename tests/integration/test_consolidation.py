"""Stage 1's consolidation through the real stages (the consumers' subscribers on the in-memory bus, the
offline provider): the run's clusters do not depend on the order its keywords came in, a later run's
keywords join the clusters of the earlier one, and asking again changes nothing."""

from __future__ import annotations

import json
import random
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from sklearn.metrics import adjusted_rand_score
from sqlalchemy import select

from ai.embeddings import embedder
from consumers.stage1_consolidation import consolidate_run
from shared.accounts import add_keywords, create_account, create_site
from shared.automation_logger import RunRef
from shared.demo_data import keyword_volume
from shared.events import StartRun
from shared.models import AutomationRun, Cluster, Keyword, RunLogLine, RunStage, Site
from tests.integration.test_semantic_content import pause, run_until
from tests.support import Bus, drain_outbox

LABELLED = Path(__file__).resolve().parents[1] / "data" / "labelled_keywords.json"
TOPICS = 8  # of the labelled set's 20: enough for the order to matter, small enough for the suite

pytestmark = pytest.mark.skipif(not embedder().available(), reason="the embedding model is not installed")


def labelled(per_topic: slice = slice(None)) -> list[tuple[str, str]]:
    """(keyword, topic) of the first TOPICS topics, interleaved."""
    topics: dict[str, list[str]] = json.loads(LABELLED.read_text())
    columns = [[(kw, topic) for kw in kws[per_topic]] for topic, kws in list(topics.items())[:TOPICS]]
    return [column[row] for row in range(max(map(len, columns))) for column in columns if row < len(column)]


async def new_site(sessions, keywords: list[tuple[str, str]]) -> Site:  # type: ignore[no-untyped-def]
    async with sessions() as session, session.begin():
        account = await create_account(session, f"acct-{uuid.uuid4().hex[:8]}", 10**7)
        site = await create_site(session, account, f"consolidate-{uuid.uuid4().hex[:8]}")
        await add_keywords(session, site, [(k, keyword_volume(k)) for k, _ in keywords])
    return site


async def through_stage_1(deps, site: Site) -> None:  # type: ignore[no-untyped-def]
    """Run until stage 2 has planned (the consolidation is in its transaction), then pause."""
    bus = Bus(deps)
    await bus.send(StartRun(site_id=site.id))
    await run_until(bus, deps, "stage.2.batch")
    await pause(bus, deps, site.id)
    for key, payload in await drain_outbox(deps):  # `run.paused`, for the notify consumer
        await bus.deliver(key, payload)


async def partition(sessions, site_id: int) -> dict[str, frozenset[str]]:  # type: ignore[no-untyped-def]
    """keyword -> the keywords of its cluster."""
    async with sessions() as session:
        rows = (await session.execute(select(Keyword.keyword, Keyword.cluster_id)
                                      .where(Keyword.site_id == site_id))).all()
    groups: dict[int, set[str]] = defaultdict(set)
    for keyword, cluster_id in rows:
        groups[cluster_id].add(keyword)
    return {keyword: frozenset(groups[cluster_id]) for keyword, cluster_id in rows}


async def named_in_order(sessions, site_id: int) -> list[tuple[str, frozenset[str]]]:  # type: ignore[no-untyped-def]
    """(name, keywords) of the site's clusters, by id."""
    async with sessions() as session:
        rows = (await session.execute(select(Cluster.id, Cluster.name, Keyword.keyword).join(
            Keyword, Keyword.cluster_id == Cluster.id).where(Cluster.site_id == site_id))).all()
    clusters: dict[int, tuple[str, set[str]]] = {}
    for cluster_id, name, keyword in rows:
        clusters.setdefault(cluster_id, (name, set()))[1].add(keyword)
    return [(name, frozenset(keywords)) for _, (name, keywords) in sorted(clusters.items())]


async def test_the_clusters_are_the_same_whatever_the_order_of_the_keywords(deps, sessions) -> None:
    pairs = labelled()
    shuffled = pairs[:]
    random.Random(7).shuffle(shuffled)
    first, second = await new_site(sessions, pairs), await new_site(sessions, shuffled)
    for site in (first, second):
        await through_stage_1(deps, site)
    ours, theirs = await partition(sessions, first.id), await partition(sessions, second.id)
    assert ours == theirs
    # and the clusters' names and order (stage 2 seeds its writer by name and orders clusters by id)
    assert await named_in_order(sessions, first.id) == await named_in_order(sessions, second.id)
    topic = dict(pairs)
    keywords = sorted(ours)
    names = {group: number for number, group in enumerate(set(ours.values()))}
    ari = adjusted_rand_score([topic[k] for k in keywords], [names[ours[k]] for k in keywords])
    assert ari >= 0.45, ari  # 0.54 here; the whole labelled set: 0.49 (bench/README.md)

    async with sessions() as session:
        run = await session.scalar(select(AutomationRun).where(AutomationRun.site_id == first.id))
        assert run is not None
        on_site = len((await session.scalars(select(Cluster.id).where(Cluster.site_id == first.id))).all())
        stage_1 = await session.get(RunStage, (run.id, 1))
        log = (await session.scalars(select(RunLogLine.message).where(RunLogLine.run_id == run.id,
                                                                      RunLogLine.stage == 1))).all()
    assert stage_1 is not None
    assert stage_1.items_out == on_site == len(names)  # stage 1's figures follow the consolidation
    assert run.stage_1_result is not None and run.stage_1_result["items_out"] == on_site
    assert any("clusters consolidated over the run's keywords" in line for line in log), log


async def test_a_later_run_joins_the_earlier_clusters_and_never_merges_them(deps, sessions) -> None:
    first_half, second_half = labelled(slice(0, 14)), labelled(slice(14, None))
    site = await new_site(sessions, first_half)
    await through_stage_1(deps, site)
    async with sessions() as session, session.begin():
        before = dict((await session.execute(select(Keyword.keyword, Keyword.cluster_id)
                                             .where(Keyword.site_id == site.id))).all())
        await session.execute(AutomationRun.__table__.update().where(AutomationRun.site_id == site.id)
                              .values(status="completed"))  # the first run is over; start the next
        await add_keywords(session, await session.get(Site, site.id), [(k, keyword_volume(k)) for k, _ in second_half])
    await through_stage_1(deps, site)
    async with sessions() as session:
        after = dict((await session.execute(select(Keyword.keyword, Keyword.cluster_id)
                                            .where(Keyword.site_id == site.id))).all())
    assert {k: after[k] for k in before} == before  # the first run's keywords stay where they were
    earlier = set(before.values())
    joined = [k for k, _ in second_half if after[k] in earlier]
    assert len(joined) >= 0.8 * len(second_half), (len(joined), len(second_half))
    # and where they joined is mostly their topic's cluster
    topic = dict(first_half + second_half)
    home = {cluster: max((sum(1 for k, c in before.items() if c == cluster and topic[k] == t), t)
                          for t in set(topic.values()))[1] for cluster in earlier}
    right = [k for k in joined if home[after[k]] == topic[k]]
    assert len(right) >= 0.5 * len(joined), (len(right), len(joined))  # 37 of 64 here; chance: 1 in 8


async def test_consolidating_again_changes_nothing(deps, sessions) -> None:
    site = await new_site(sessions, labelled(slice(0, 8)))
    await through_stage_1(deps, site)
    before = await partition(sessions, site.id)
    async with sessions() as session, session.begin():
        run = await session.scalar(select(AutomationRun).where(AutomationRun.site_id == site.id))
        assert run is not None
        result = await consolidate_run(deps, session, run, RunRef.of(run, site.account_id))
    assert result is not None and result.keywords_moved == 0
    assert await partition(sessions, site.id) == before
