"""Group commit: finishes of one run's stage that are ready together commit in one transaction.

Every batch of stage 4 is worked at once, with a barrier after the AI call so that all of them are
ready for their finish at the same moment (the case group commit is for). Asserted as an operator sees
it: every batch done once, one transaction for the group (the batches' `completed_at`, the
transaction's start, is shared), progress that adds up, credits charged once per batch, and, when one
batch of a group cannot finish (its claim taken over, or the account unable to pay), the others
finish on their own, the failing one changes nothing, and the run pauses where credits ran out.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select, update

from ai.functions import GenerateImagePrompts, GenerateImages
from ai.simulated import SimulatedProvider
from consumers.batches import FinishGroups, process_batch
from consumers.deps import Deps
from consumers.registry import STAGE_WORK
from shared.credits import grant
from shared.events import ResumeRun
from shared.models import Account, AutomationRun, Content, Image, StageBatch, Task
from tests.integration.test_streaming import assert_progress_adds_up, run_pk_of
from tests.support import site_outcome, stage_batches

ARTICLE_CREDITS = 5  # stage 4's charge for one article (`shared.catalogue`)


class ReadyTogether:
    """A stage's work (stage 4's unless told) whose AI calls all return at once, when `size` of them
    have been made; `before` runs just before they return (to change the world between the AI call and
    the finish)."""

    def __init__(self, size: int, before: Any = None, stage: int = 4) -> None:
        self.work, self.size, self.before = STAGE_WORK[stage], size, before
        self.called, self.all_called = 0, asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.work, name)

    async def generate(self, deps: Deps, inputs: Any) -> Any:
        outputs = await self.work.generate(deps, inputs)
        self.called += 1
        if self.called == self.size:
            if self.before is not None:
                await self.before()
            self.all_called.set()
        await self.all_called.wait()
        return outputs


def quick(deps: Deps, stream: bool) -> Deps:
    return replace(deps, settings=deps.settings.model_copy(update={"stream_stages": stream, "batch_window": 0}),
                   provider=SimulatedProvider(0))


async def stage_4_rows(deps: Deps, run_pk: int) -> list[StageBatch]:
    async with deps.sessions() as session:
        return list((await session.scalars(select(StageBatch).where(StageBatch.run_id == run_pk, StageBatch.stage == 4)
                                           .order_by(StageBatch.seq))).all())


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "stage-by-stage"])
async def test_finishes_ready_together_commit_once_each_in_one_transaction(deps, make_site, stream):
    fast = quick(deps, stream)
    site = await make_site(keywords=40, synthetic=True, stage_4_batch_size=1, stage_5_batch_size=4,
                           stage_6_batch_size=8)
    bus, batches = await stage_batches(fast, site.id)
    assert len(batches) >= 4
    work, groups = ReadyTogether(len(batches)), FinishGroups()
    # each message twice, as a redelivery beside the original would come
    await asyncio.gather(*(process_batch(fast, b, work, asyncio.Semaphore(64), groups) for b in batches * 2))
    run_pk = await run_pk_of(fast, site.id)
    rows = await stage_4_rows(fast, run_pk)
    assert [r.status for r in rows] == ["done"] * len(batches)
    assert len({r.completed_at for r in rows}) == 1  # one transaction finished them all
    await assert_progress_adds_up(fast, run_pk)
    await bus.pump()
    async with fast.sessions() as session:
        assert (await session.get(AutomationRun, run_pk)).status == "completed"
    outcome = await site_outcome(fast, site.id)
    assert outcome["content"] == outcome["tasks"] == len(batches) and outcome["tasks_without_one_content"] == 0
    assert outcome["credits_used"] == outcome["ledger_charged"]


async def test_a_claim_taken_over_inside_a_group_loses_only_that_batch(deps, make_site, caplog):
    fast = quick(deps, True)
    site = await make_site(keywords=40, synthetic=True, stage_4_batch_size=1)
    _, batches = await stage_batches(fast, site.id)
    stolen = batches[len(batches) // 2].batch_id

    async def take_over() -> None:  # another consumer's claim, after ours ran out
        async with fast.sessions() as session, session.begin():
            await session.execute(update(StageBatch).where(StageBatch.id == stolen).values(claim_token="theirs"))

    work, groups = ReadyTogether(len(batches), take_over), FinishGroups()
    with caplog.at_level(logging.INFO, logger="automation.batches"):
        await asyncio.gather(*(process_batch(fast, b, work, asyncio.Semaphore(64), groups) for b in batches))
    assert f"a group of {len(batches)} finishes failed (ClaimLost" in caplog.text
    rows = {r.id: r for r in await stage_4_rows(fast, await run_pk_of(fast, site.id))}
    assert (rows[stolen].status, rows[stolen].claim_token, rows[stolen].items_out) == ("claimed", "theirs", 0)
    assert all(r.status == "done" and r.items_out == 1 for i, r in rows.items() if i != stolen)
    async with fast.sessions() as session:  # the lost batch wrote nothing
        task_id = rows[stolen].item_ids[0]
        assert await session.scalar(select(Content.id).where(Content.task_id == task_id)) is None
        assert await session.scalar(select(Task.id).where(Task.id == task_id)) == task_id
    outcome = await site_outcome(fast, site.id)
    assert outcome["content"] == len(batches) - 1
    assert outcome["credits_used"] == outcome["ledger_charged"]


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "stage-by-stage"])
async def test_credits_running_out_inside_a_group_pay_what_they_can_then_pause(deps, make_site, stream, caplog):
    fast = quick(deps, stream)
    site = await make_site(keywords=40, synthetic=True, stage_4_batch_size=1, stage_5_batch_size=4,
                           stage_6_batch_size=8)
    bus, batches = await stage_batches(fast, site.id)
    assert len(batches) >= 4
    async with fast.sessions() as session, session.begin():  # two articles and a bit
        await session.execute(update(Account).where(Account.id == site.account_id)
                              .values(credits_balance=2 * ARTICLE_CREDITS + 2))
    work, groups = ReadyTogether(len(batches)), FinishGroups()
    with caplog.at_level(logging.INFO, logger="automation.batches"):
        await asyncio.gather(*(process_batch(fast, b, work, asyncio.Semaphore(64), groups) for b in batches))
    assert f"a group of {len(batches)} finishes failed (InsufficientCredits" in caplog.text
    run_pk = await run_pk_of(fast, site.id)
    async with fast.sessions() as session:
        run = await session.get(AutomationRun, run_pk)
        assert (run.status, run.pause_reason) == ("paused", "insufficient credits")
    rows = await stage_4_rows(fast, run_pk)
    assert sorted(r.status for r in rows) == ["done"] * 2 + ["pending"] * (len(batches) - 2)
    outcome = await site_outcome(fast, site.id)
    assert (outcome["content"], outcome["balance"]) == (2, 2)  # two paid, nothing half-written
    await assert_progress_adds_up(fast, run_pk)
    async with fast.sessions() as session, session.begin():
        await grant(session, site.account_id, 100_000, "top-up")
    await bus.send(ResumeRun(run_id=run.run_id))
    await bus.pump()
    async with fast.sessions() as session:
        assert (await session.get(AutomationRun, run_pk)).status == "completed"
    outcome = await site_outcome(fast, site.id)
    assert outcome["content"] == outcome["tasks"] and outcome["tasks_without_one_content"] == 0
    assert outcome["credits_used"] == outcome["ledger_charged"]


async def test_images_ready_together_are_written_once_each_and_their_articles_reach_review(deps, make_site):
    """Stage 6 writes a group's images in one go (`WritesGroups`): each batch is charged for the images it
    generated, an image generated by someone else between the AI call and the finish is neither written
    again nor charged, and every article whose last image is in the group goes to review."""
    fast = quick(deps, False)
    site = await make_site(keywords=16, synthetic=True, stage_6_batch_size=2)
    _, batches = await stage_batches(fast, site.id, stage=6)
    assert len(batches) >= 4
    async with fast.sessions() as session:
        ids = await session.scalar(select(StageBatch.item_ids).where(StageBatch.id == batches[0].batch_id))
    assert ids is not None and len(ids) == 2

    async def generated_meanwhile() -> None:  # one image of the first batch, by someone else after our AI call
        async with fast.sessions() as session, session.begin():
            await session.execute(update(Image).where(Image.id == ids[0])
                                  .values(status="generated", image_url="earlier"))

    work, groups = ReadyTogether(len(batches), generated_meanwhile, stage=6), FinishGroups()
    await asyncio.gather(*(process_batch(fast, b, work, asyncio.Semaphore(64), groups) for b in batches))
    run_pk = await run_pk_of(fast, site.id)
    async with fast.sessions() as session:
        rows = (await session.scalars(select(StageBatch).where(StageBatch.id.in_([b.batch_id for b in batches]))
                                      .order_by(StageBatch.seq))).all()
        assert len({r.completed_at for r in rows}) == 1  # one transaction
        items = {r.id: r for r in rows}
        first = items[batches[0].batch_id]
        assert (first.items_out, first.credits) == (1, GenerateImages.credits(1))
        assert all((r.items_out, r.credits) == (len(r.item_ids), GenerateImages.credits(len(r.item_ids)))
                   for r in rows if r.id != first.id)
        assert await session.scalar(select(Image.image_url).where(Image.id == ids[0])) == "earlier"
    await assert_progress_adds_up(fast, run_pk)
    outcome = await site_outcome(fast, site.id)
    assert outcome["images_generated"] == outcome["images"]
    assert outcome["content_in_review"] == outcome["content"] > 0 and outcome["review_with_pending_images"] == 0
    assert outcome["credits_used"] == outcome["ledger_charged"]


async def test_a_group_hands_on_batch_by_batch_in_one_statement(deps, make_site):
    """A streamed group hands on what each of its batches made in one statement, chunked as if each had
    handed on alone: every appended batch holds tasks of one idea batch, numbered after the stage's last
    batch without a gap, and the next stage's totals count them."""
    fast = quick(deps, True)
    site = await make_site(keywords=40, synthetic=True, stage_3_batch_size=3, stage_4_batch_size=2)
    _, batches = await stage_batches(fast, site.id, stage=3)
    assert len(batches) >= 2
    work, groups = ReadyTogether(len(batches), stage=3), FinishGroups()
    await asyncio.gather(*(process_batch(fast, b, work, asyncio.Semaphore(64), groups) for b in batches))
    run_pk = await run_pk_of(fast, site.id)
    async with fast.sessions() as session:
        sources = (await session.scalars(select(StageBatch).where(StageBatch.run_id == run_pk, StageBatch.stage == 3)
                                         .order_by(StageBatch.seq))).all()
        assert len({r.completed_at for r in sources}) == 1 and all(r.status == "done" for r in sources)
        appended = (await session.scalars(select(StageBatch).where(StageBatch.run_id == run_pk, StageBatch.stage == 4)
                                          .order_by(StageBatch.seq))).all()
        idea_of = dict((await session.execute(select(Task.id, Task.idea_id).where(Task.site_id == site.id))).all())
    assert [r.seq for r in appended] == list(range(len(appended)))
    source_of_idea = {idea: r.id for r in sources for idea in r.item_ids}
    for batch in appended:  # each appended batch is made of one idea batch's tasks, at most two of them
        assert 1 <= len(batch.item_ids) <= 2
        assert len({source_of_idea[idea_of[task]] for task in batch.item_ids}) == 1, batch.item_ids
    made = sum(r.items_out for r in sources)
    assert sum(len(r.item_ids) for r in appended) == made > 0
    # batch by batch: a source of three tasks gives a batch of two and one of one
    assert len(appended) == sum(-(-r.items_out // 2) for r in sources)
    await assert_progress_adds_up(fast, run_pk)


async def test_prompts_ready_together_are_written_and_charged_batch_by_batch(deps, make_site):
    """Stage 5 writes a group's prompts in one go (`WritesGroups`): a draft an editor moved to review
    between the AI call and the finish gets no prompts and its batch is not charged; every other batch
    is charged for its draft and hands its images on."""
    fast = quick(deps, True)
    site = await make_site(keywords=24, synthetic=True, stage_5_batch_size=1)
    _, batches = await stage_batches(fast, site.id, stage=5)
    assert len(batches) >= 3
    async with fast.sessions() as session:
        moved = (await session.scalar(select(StageBatch.item_ids).where(StageBatch.id == batches[1].batch_id)))[0]

    async def moved_to_review() -> None:
        async with fast.sessions() as session, session.begin():
            await session.execute(update(Content).where(Content.id == moved).values(status="review"))

    work, groups = ReadyTogether(len(batches), moved_to_review, stage=5), FinishGroups()
    await asyncio.gather(*(process_batch(fast, b, work, asyncio.Semaphore(64), groups) for b in batches))
    run_pk = await run_pk_of(fast, site.id)
    async with fast.sessions() as session:
        rows = {r.id: r for r in (await session.scalars(
            select(StageBatch).where(StageBatch.id.in_([b.batch_id for b in batches])))).all()}
        assert len({r.completed_at for r in rows.values()}) == 1
        prompts = {row[0]: row[1] for row in (await session.execute(
            select(Image.content_id, func.count()).where(Image.site_id == site.id).group_by(Image.content_id))).all()}
        stage_6 = (await session.scalars(select(StageBatch.item_ids).where(StageBatch.run_id == run_pk,
                                                                           StageBatch.stage == 6))).all()
    assert moved not in prompts
    for batch in batches:
        row = rows[batch.batch_id]
        content_id = row.item_ids[0]
        expected = (0, 0) if content_id == moved else (prompts[content_id], GenerateImagePrompts.credits(1))
        assert (row.status, row.items_out, row.credits) == ("done", *expected)
    assert sum(len(ids) for ids in stage_6) == sum(prompts.values()) > 0  # every image handed on, once
    await assert_progress_adds_up(fast, run_pk)
    outcome = await site_outcome(fast, site.id)
    assert outcome["credits_used"] == outcome["ledger_charged"]
