"""Stages 3 and 6 load a batch's inputs in its claim's statement (`LoadInClaim`): a round trip less per batch.

What it loads must be exactly what the stage's own `load` returns at that moment and what the seed's
query selects: the batch's items still eligible, re-checked (an image generated meanwhile, an idea
queued meanwhile are left out), nothing for a claim that fails.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select, update

from ai.base import ClusterIn, IdeaOut, InvalidAIOutput, OutlineSection
from ai.functions import GenerateIdeas
from consumers.batches import Claim, claim_batch, process_batch
from consumers.deps import Deps
from consumers.registry import STAGE_WORK
from consumers.stage2_ideas import IdeasInput, IdeasOutput
from shared.db import autocommit_session
from shared.events import ProcessBatch
from shared.models import Cluster, Content, ContentIdea, Image, StageBatch, Task
from shared.seed_queries import eligible_ids
from tests.conftest import SiteFactory
from tests.integration.test_finish_groups import quick
from tests.support import stage_batches

IMAGES = STAGE_WORK[6]


async def test_the_claim_loads_what_load_would_and_only_once(deps, make_site):
    fast = quick(deps, False)
    site = await make_site(keywords=16, synthetic=True, stage_6_batch_size=3)
    _, batches = await stage_batches(fast, site.id, stage=6)
    first, second = batches[0], batches[1]
    async with fast.sessions() as session:
        image_ids = (await session.scalar(select(StageBatch.item_ids).where(StageBatch.id == second.batch_id)))
    assert len(image_ids) == 3
    async with fast.sessions() as session, session.begin():  # one image of the second batch is done already
        await session.execute(update(Image).where(Image.id == image_ids[1]).values(status="generated"))

    assert IMAGES.load_in_claim is not None
    async with autocommit_session(fast.sessions) as session:
        claim = await claim_batch(fast, first, session, IMAGES.load_in_claim)
        assert claim is not None and claim.inputs
        assert claim.inputs == await IMAGES.load(session, site.id, claim.item_ids)
        assert await claim_batch(fast, first, session, IMAGES.load_in_claim) is None  # held by a live claim

        other = await claim_batch(fast, second, session, IMAGES.load_in_claim)
        assert other is not None
        assert [image.id for image in other.inputs] == [image_ids[0], image_ids[2]]
        assert other.inputs == await IMAGES.load(session, site.id, other.item_ids)
        assert all(image.site_id == site.id and image.prompt for image in other.inputs)


async def test_a_batch_whose_images_are_all_done_finishes_with_nothing(deps, make_site):
    fast = quick(deps, False)
    site = await make_site(keywords=16, synthetic=True, stage_6_batch_size=2)
    _, batches = await stage_batches(fast, site.id, stage=6)
    async with fast.sessions() as session, session.begin():
        ids = await session.scalar(select(StageBatch.item_ids).where(StageBatch.id == batches[0].batch_id))
        await session.execute(update(Image).where(Image.id.in_(ids)).values(status="generated"))
    await process_batch(fast, batches[0], IMAGES)
    async with fast.sessions() as session:
        batch = await session.get(StageBatch, batches[0].batch_id)
        assert batch is not None and (batch.status, batch.items_out, batch.credits) == ("done", 0, 0)


async def make_ineligible(deps: Deps, stage: int, ids: list[int]) -> None:
    """Take the batch's first item out of the seed's query the way a user or an earlier attempt would."""
    async with deps.sessions() as session, session.begin():
        if stage == 2:  # a cluster mapped meanwhile
            await session.execute(update(Cluster).where(Cluster.id == ids[0]).values(status="mapped"))
        elif stage == 3:  # an idea queued meanwhile
            await session.execute(update(ContentIdea).where(ContentIdea.id == ids[0]).values(status="queued"))
        elif stage == 4:  # a task cancelled meanwhile
            await session.execute(update(Task).where(Task.id == ids[0]).values(status="completed"))
        elif stage == 5:  # a draft an editor moved to review, and one whose prompts exist from an earlier attempt
            await session.execute(update(Content).where(Content.id == ids[0]).values(status="review"))
            content = await session.get(Content, ids[1])
            assert content is not None
            session.add(Image(site_id=content.site_id, content_id=content.id, kind="featured", position=0,
                              prompt="an earlier attempt's", section="", status="pending"))
        else:  # an image generated meanwhile
            await session.execute(update(Image).where(Image.id == ids[0]).values(status="generated"))


async def a_batch_with_items_left_out(deps: Deps, make_site: SiteFactory, stage: int
                                      ) -> tuple[Deps, int, ProcessBatch, list[int], set[int]]:
    """A stage's first batch of three items, some of them taken out of the seed's query meanwhile
    (`make_ineligible`): (deps, site id, its command, its item ids, those the seed's query still selects)."""
    fast = quick(deps, False)
    site = await make_site(keywords=40, synthetic=True, **{f"stage_{stage}_batch_size": 3})
    _, batches = await stage_batches(fast, site.id, stage=stage)
    command = batches[0]
    async with fast.sessions() as session:
        ids = list(await session.scalar(select(StageBatch.item_ids).where(StageBatch.id == command.batch_id)))
    assert len(ids) == 3
    await make_ineligible(fast, stage, ids)
    async with fast.sessions() as session:
        eligible = set((await session.scalars(eligible_ids(stage, site.id))).all()) & set(ids)
    return fast, site.id, command, ids, eligible


@pytest.mark.parametrize("stage", [3, 6])
async def test_the_claim_loads_exactly_what_the_seed_query_selects(deps, make_site, stage):
    """Each stage's load in the claim (and its `load`, the same SQL) against the seed's query
    (`shared.seed_queries`), with an item of the batch taken out of it meanwhile."""
    fast, site_id, command, ids, eligible = await a_batch_with_items_left_out(deps, make_site, stage)
    work = STAGE_WORK[stage]
    assert work.load_in_claim is not None
    async with autocommit_session(fast.sessions) as session:
        claim = await claim_batch(fast, command, session, work.load_in_claim)
        assert claim is not None
        assert claim.inputs == await work.load(session, site_id, ids)
    loaded = {idea_id for idea_id, _ in claim.inputs} if stage == 3 else {image.id for image in claim.inputs}
    assert loaded == eligible and len(eligible) == 2
    if stage == 3:  # what the task is made of: the idea's own title
        async with fast.sessions() as session:
            for idea_id, title in claim.inputs:
                assert await session.scalar(select(ContentIdea.title).where(ContentIdea.id == idea_id)) == title


@pytest.mark.parametrize("stage", [4, 5])
async def test_a_stage_loads_and_writes_only_what_the_seed_query_selects(deps, make_site, stage):
    """Stages 4 and 5 load after the claim, by prepared statements written in SQL: what they load, and
    the drafts stage 5 locks to write prompts for, against the seed's query (`shared.seed_queries`)."""
    fast, site_id, command, ids, eligible = await a_batch_with_items_left_out(deps, make_site, stage)
    work = STAGE_WORK[stage]
    async with autocommit_session(fast.sessions) as session:
        inputs = await work.load(session, site_id, ids)
    assert len(eligible) == (2 if stage == 4 else 1)
    async with fast.sessions() as session:
        if stage == 4:  # what the writer is given: the idea's fields and its cluster's name
            assert set(inputs) == eligible
            for task_id, idea in inputs.items():
                row = (await session.execute(
                    select(ContentIdea, Cluster.name).join(Task, Task.idea_id == ContentIdea.id)
                    .join(Cluster, Cluster.id == ContentIdea.cluster_id).where(Task.id == task_id))).one()
                assert (idea.id, idea.title, idea.content_type, idea.description, idea.cluster_name) == (
                    row[0].id, row[0].title, row[0].content_type, row[0].description, row[1])
                assert list(idea.target_keywords) == row[0].target_keywords and idea.target_keywords
                assert [{"h2": s.h2, "h3s": list(s.h3s)} for s in idea.outline] == row[0].outline
            return
        article, = inputs  # what the prompt writer is given: the draft and its idea's keywords
        assert {article.id} == eligible
        content = await session.get(Content, article.id)
        assert content is not None
        assert (article.title, article.markdown, list(article.sections)) == (
            content.title, content.markdown, content.sections)
        assert article.target_keywords
    # the write locks only the drafts still eligible: prompts for all three come back, one is written
    outputs = await work.generate(fast, [replace(article, id=i) for i in ids])
    claim = await claim_batch_for(fast, command)
    async with fast.sessions() as session, session.begin():
        written = await work.write(session, claim.ctx, inputs, outputs)
    async with fast.sessions() as session:
        made = (await session.scalars(select(Image.content_id).where(Image.content_id.in_(ids),
                                                                     Image.prompt != "an earlier attempt's"))).all()
    assert set(made) == eligible and written.items_out == len(made) == len(outputs[article.id])


async def claim_batch_for(deps: Deps, command: ProcessBatch) -> Claim:
    async with autocommit_session(deps.sessions) as session:
        claim = await claim_batch(deps, command, session)
    assert claim is not None
    return claim


def idea(title: str) -> IdeaOut:
    return IdeaOut(title=title, content_type="guide", target_keywords=("k one", "k two"),
                   outline=(OutlineSection("Part", ("a", "b")),), description="d", primary_keyword=f"{title} kw")


async def test_stage_2_writes_ideas_for_the_eligible_clusters_and_renames_a_taken_title(deps, make_site):
    """Stage 2's write (prepared statements): it locks and maps only the clusters the seed's query still
    selects; an idea whose title the site has, or that an earlier cluster of the batch took, keeps its
    idea under the title with its cluster's name; a cluster whose every title is taken fails the batch."""
    fast, site_id, command, ids, eligible = await a_batch_with_items_left_out(deps, make_site, 2)
    assert len(eligible) == 2
    first, second = sorted(eligible)
    async with fast.sessions() as session, session.begin():
        names = dict((await session.execute(select(Cluster.id, Cluster.name).where(Cluster.id.in_(ids)))).all())
        session.add(ContentIdea(site_id=site_id, cluster_id=ids[0], title="Taken title", content_type="guide",
                                target_keywords=[], outline=[], description="", status="new"))
    work = STAGE_WORK[2]
    inputs = IdeasInput([ClusterIn(i, names[i], "", ("kw",)) for i in ids], frozenset())
    outputs = IdeasOutput({ids[0]: [idea("Never written")], first: [idea("Taken title"), idea("Shared title")],
                           second: [idea("Shared title")]}, asked=set(ids))
    claim = await claim_batch_for(fast, command)
    async with fast.sessions() as session, session.begin():
        written = await work.write(session, claim.ctx, inputs, outputs)
    async with fast.sessions() as session:
        made = (await session.execute(select(ContentIdea.id, ContentIdea.cluster_id, ContentIdea.title,
                                             ContentIdea.target_keywords, ContentIdea.outline)
                                      .where(ContentIdea.id.in_(written.handed_on)).order_by(ContentIdea.id))).all()
        statuses = dict((await session.execute(select(Cluster.id, Cluster.status).where(Cluster.id.in_(ids)))).all())
    assert [(row.cluster_id, row.title) for row in made] == [
        (first, "Shared title"), (first, f"Taken title ({names[first]})"), (second, f"Shared title ({names[second]})")]
    assert written.handed_on == [row.id for row in made if row.cluster_id == first] + [
        row.id for row in made if row.cluster_id == second]
    assert written.items_out == 3 and written.credits == GenerateIdeas.credits(2)
    assert all(row.target_keywords == ["k one", "k two"] and row.outline == [{"h2": "Part", "h3s": ["a", "b"]}]
               for row in made)
    assert statuses[first] == statuses[second] == "mapped"
    async with fast.sessions() as session:  # the cluster taken out of the seed's query got nothing
        assert await session.scalar(select(ContentIdea.id).where(ContentIdea.title == "Never written")) is None

    # every title of a cluster taken, its own and the one with its name: the batch fails
    async with fast.sessions() as session, session.begin():  # reopened: "Shared title" and the renamed one exist
        await session.execute(update(Cluster).where(Cluster.id == second).values(status="reopened"))
    outputs = IdeasOutput({second: [idea("Shared title")]}, asked={second})
    with pytest.raises(InvalidAIOutput, match=f"cluster {second}"):
        async with fast.sessions() as session, session.begin():
            await work.write(session, claim.ctx, IdeasInput([ClusterIn(second, names[second], "", ())], frozenset()),
                             outputs)
