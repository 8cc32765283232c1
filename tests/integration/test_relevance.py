"""What a batch shows the AI stays bounded as a site grows: candidate clusters for stage 1,
possibly clashing titles for stage 2."""

from __future__ import annotations

from sqlalchemy import select

from consumers.relevance import significant_words
from consumers.stage1_clustering import CANDIDATE_CLUSTERS, ClusteringStage
from consumers.stage2_ideas import PRIOR_KEYWORDS, TAKEN_TITLES, IdeasStage
from shared.models import Cluster, ContentIdea, Keyword


def test_significant_words_are_prefixes_of_the_longer_words() -> None:
    assert significant_words(["Best running shoes for women", "the gardening kit", "Größe 42.5% (off)"]) == [
        "best", "garden", "grösse", "runnin", "shoes", "women"]
    assert significant_words(["a b c"]) == []


async def test_stage_one_shows_the_closest_clusters_and_at_most_the_cap(sessions, make_site) -> None:
    site = await make_site(keywords=0)
    async with sessions() as session, session.begin():
        session.add_all([Cluster(site_id=site.id, name=f"Topic {n} widgets", status="new") for n in range(300)])
        session.add(Cluster(site_id=site.id, name="Trail Running Shoes", status="new"))
        session.add(Cluster(site_id=site.id, name="Sourdough Bread", status="new"))
        session.add(Keyword(site_id=site.id, keyword="trail running shoes for women", volume=10, status="new"))
        session.add(Keyword(site_id=site.id, keyword="waterproof widgets", volume=10, status="new"))
    async with sessions() as session:
        ids = list((await session.scalars(select(Keyword.id).where(Keyword.site_id == site.id))).all())
        keywords, existing = await ClusteringStage().load(session, site.id, ids)
    names = [c.name for c in existing]
    assert len(keywords) == 2
    assert len(existing) == CANDIDATE_CLUSTERS
    assert "Trail Running Shoes" in names  # shares three words: ranked first, inside the cap
    assert "Sourdough Bread" not in names  # shares none


async def taken_titles(sessions, site_id: int, other_cluster: str, titles: list[str]) -> frozenset[str]:  # type: ignore[no-untyped-def]
    """What stage 2 shows the AI to avoid for a new "Raised Garden Beds" cluster, when another
    cluster of the site already has ideas with `titles`."""
    async with sessions() as session, session.begin():
        garden = Cluster(site_id=site_id, name="Raised Garden Beds", status="new")
        other = Cluster(site_id=site_id, name=other_cluster, status="mapped")
        session.add_all([garden, other])
        await session.flush()
        session.add_all([ContentIdea(site_id=site_id, cluster_id=other.id, title=title, content_type="guide",
                                     target_keywords=[], outline=[], description=f"idea {n}", status="new")
                         for n, title in enumerate(titles)])
        garden_id = garden.id
    async with sessions() as session:
        inputs = await IdeasStage().load(session, site_id, [garden_id])
    assert inputs is not None
    clusters, taken = inputs.clusters, inputs.taken
    assert [c.name for c in clusters] == ["Raised Garden Beds"]
    return taken


async def test_stage_two_reads_only_titles_that_could_clash(sessions, make_site) -> None:
    site = await make_site(keywords=0)
    taken = await taken_titles(sessions, site.id, "Espresso Machines",
                               ["Raised Beds: A Guide", "Espresso Basics", "Garden Tools 101"])
    assert taken == {"Raised Beds: A Guide", "Garden Tools 101"}


async def test_stage_two_shows_at_most_the_cap_of_titles_the_closest_first(sessions, make_site) -> None:
    site = await make_site(keywords=0)
    titles = [f"Garden idea {n}" for n in range(TAKEN_TITLES + 100)] + ["Raised Garden Beds: A Guide"]
    taken = await taken_titles(sessions, site.id, "Garden topics", titles)
    assert len(taken) == TAKEN_TITLES
    assert "Raised Garden Beds: A Guide" in taken  # shares three words: ranked first, inside the cap


async def earlier_keywords(sessions, site_id: int, earlier: list[str], batch_keyword: str,  # type: ignore[no-untyped-def]
                           ) -> tuple[tuple[int, str], ...]:
    """What stage 2 compares a new cluster's `batch_keyword` with, when the site's earlier clusters
    hold `earlier` (one cluster per 50 keywords, in that order). How much a load reads as its site
    grows is measured by `python -m bench.site_growth`: on a site of a test's size the planner rightly
    reads every row, so a test cannot show it."""
    async with sessions() as session, session.begin():
        for start in range(0, len(earlier), 50):
            cluster = Cluster(site_id=site_id, name=f"Earlier {start}", status="mapped")
            session.add(cluster)
            await session.flush()
            session.add_all([Keyword(site_id=site_id, keyword=k, volume=10, status="clustered", cluster_id=cluster.id)
                             for k in earlier[start:start + 50]])
        new = Cluster(site_id=site_id, name="Starters", status="new")
        session.add(new)
        await session.flush()
        session.add(Keyword(site_id=site_id, keyword=batch_keyword, volume=10, status="clustered",
                            cluster_id=new.id))
        new_id = new.id
    async with sessions() as session:
        inputs = await IdeasStage().load(session, site_id, [new_id])
    assert inputs is not None
    return inputs.earlier_keywords


async def test_a_common_word_does_not_crowd_out_a_rare_one(sessions, make_site) -> None:
    """Each word brings at most the cap of its rows: "best" matches more earlier keywords than the
    cap, the rare "sourdough" one, written last, is still compared, and ranked first."""
    site = await make_site(keywords=0)
    flood = [f"best widget {n}" for n in range(PRIOR_KEYWORDS + 100)]
    found = await earlier_keywords(sessions, site.id, [*flood, "best sourdough starter"], "sourdough starter best")
    assert len(found) == PRIOR_KEYWORDS
    assert found[0][1] == "best sourdough starter"  # three words shared; the widgets share one
