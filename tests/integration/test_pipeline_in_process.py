"""The whole pipeline against the real database, messages delivered by the in-memory bus."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping

import pytest
from sqlalchemy import func, select, text, update

from consumers.batches import process_batch
from consumers.registry import STAGE_WORK
from shared.accounts import create_account, create_site
from shared.credits import grant
from shared.events import PauseRun, ProcessBatch, ResumeRun, StartRun
from shared.models import (
    Account,
    AutomationRun,
    Cluster,
    Content,
    ContentIdea,
    Image,
    Keyword,
    OutboxMessage,
    RunStage,
    StageBatch,
    Task,
)
from shared.outbox import OutboxRelay, add_events
from tests.support import Bus, drain_outbox, site_outcome


async def run_of(deps, site_id: int) -> AutomationRun:
    async with deps.sessions() as session:
        return (await session.scalars(select(AutomationRun).where(AutomationRun.site_id == site_id)
                                      .order_by(AutomationRun.id.desc()))).first()


# larger batches for the AI-heavy stages keep these tests quick; test_batch_sizes_hold covers the defaults
QUICK = {"stage_4_batch_size": 4, "stage_5_batch_size": 4, "stage_6_batch_size": 8}


def assert_complete_and_consistent(outcome: dict[str, int], starting_credits: int) -> None:
    assert outcome["keywords_eligible_left"] == 0
    assert outcome["content"] == outcome["tasks"] == outcome["ideas"] > 0
    assert outcome["tasks_without_one_content"] == 0
    assert outcome["content_in_review"] == outcome["content"]
    assert outcome["review_with_pending_images"] == 0
    assert outcome["images_generated"] == outcome["images"] > 0
    assert outcome["credits_used"] == outcome["ledger_charged"] == starting_credits - outcome["balance"]


async def test_full_run_reaches_the_review_gate(deps, make_site):
    site = await make_site(keywords=60, **QUICK)
    bus = Bus(deps)
    await bus.send(StartRun(site_id=site.id))
    await bus.pump()

    run = await run_of(deps, site.id)
    assert run.status == "completed" and run.current_stage == 7 and run.completed_at is not None
    outcome = await site_outcome(deps, site.id)
    assert outcome["keywords_clustered"] == 60
    assert_complete_and_consistent(outcome, 100_000)
    assert run.stage_7_result["items_in"] == outcome["content_in_review"]
    async with deps.sessions() as session:
        in_review = (await session.scalars(select(Content.id).where(Content.site_id == site.id,
                                                                    Content.status == "review")
                                           .order_by(Content.id))).all()
    assert run.stage_7_result["content_ids"] == list(in_review)  # the seed's output: the ids, in order
    [stage_7_event] = bus.keys("stage.7.completed")
    assert stage_7_event["result"]["items_in"] == len(in_review)  # the event carries the count ...
    assert "content_ids" not in stage_7_event["result"]  # ... so it stays small however big the site
    assert [p["type"] for p in bus.keys("run.")][-1] == "run.completed"
    # credits at the seed's rates: stage 1 is one per 5 keywords of each batch of 20
    assert run.stage_1_result["credits"] == 3 * math.ceil(20 / 5)
    assert run.stage_4_result["credits"] == 5 * outcome["content"]
    assert run.stage_6_result["credits"] == 2 * outcome["images"]
    # what stages 4 and 5 wrote, field by field: each task completed with its draft, the draft's
    # sections its H2 headings, and its images numbered from the featured one, each in a section
    async with deps.sessions() as session:
        task_states = (await session.scalars(select(Task.status).where(Task.site_id == site.id))).all()
        drafts = (await session.execute(select(Content.id, Content.sections, Content.markdown)
                                        .where(Content.site_id == site.id))).all()
        images = (await session.execute(select(Image.content_id, Image.kind, Image.position, Image.section)
                                        .where(Image.site_id == site.id).order_by(Image.content_id, Image.position)
                                        )).all()
    assert set(task_states) == {"completed"}
    sections_of = {content_id: sections for content_id, sections, _ in drafts}
    for _, sections, markdown in drafts:
        assert sections and all(isinstance(h, str) and f"## {h}" in markdown for h in sections), sections
    assert {content_id for content_id, *_ in images} == set(sections_of)
    for content_id in sections_of:
        own = [image for image in images if image.content_id == content_id]
        assert [image.position for image in own] == list(range(len(own)))
        assert [image.kind for image in own] == ["featured"] + ["in_article"] * (len(own) - 1)
        assert all(image.section in sections_of[content_id] for image in own[1:])


async def test_seed_queries_leave_ineligible_items_alone(deps, make_site):
    site = await make_site(keywords=30, **QUICK)
    async with deps.sessions() as session, session.begin():
        disabled = (await session.scalars(select(Keyword.id).where(Keyword.site_id == site.id)
                                          .order_by(Keyword.id).limit(3))).all()
        await session.execute(update(Keyword).where(Keyword.id.in_(disabled)).values(disabled=True))
        done_cluster = Cluster(site_id=site.id, name="Pre-existing cluster", status="new")
        session.add(done_cluster)
        await session.flush()
        premade = (await session.scalars(select(Keyword.id).where(Keyword.site_id == site.id)
                                         .order_by(Keyword.id.desc()).limit(2))).all()
        await session.execute(update(Keyword).where(Keyword.id.in_(premade))
                              .values(cluster_id=done_cluster.id, status="new"))
        idea = ContentIdea(site_id=site.id, cluster_id=done_cluster.id, title="An idea written by hand",
                           content_type="guide", target_keywords=[], outline=[], status="queued")
        session.add(idea)
        await session.flush()
        task = Task(site_id=site.id, idea_id=idea.id, title=idea.title, status="queued")
        session.add(task)
        await session.flush()
        session.add(Content(site_id=site.id, task_id=task.id, title="Hand-written", meta_title="m",
                            meta_description="d", slug="hand-written", html="<p>x</p>", markdown="x",
                            sections=[], word_count=1, status="published"))

    bus = Bus(deps)
    await bus.send(StartRun(site_id=site.id))
    await bus.pump()

    async with deps.sessions() as session:
        assert (await session.scalars(select(Keyword.cluster_id).where(Keyword.id.in_(disabled)))).all() == [None] * 3
        assert set((await session.scalars(select(Keyword.cluster_id).where(Keyword.id.in_(premade)))).all()) \
            == {done_cluster.id}
        ideas = (await session.scalars(select(ContentIdea.title).where(ContentIdea.cluster_id == done_cluster.id)
                                       )).all()
        assert ideas == ["An idea written by hand"]
        assert await session.scalar(select(text("count(*)")).select_from(Content).where(
            Content.task_id == task.id)) == 1
    run = await run_of(deps, site.id)
    assert run.status == "completed"
    assert run.stage_1_result["items_in"] == 30 - 3 - 2


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "stage-by-stage"])
async def test_batch_sizes_hold(deps, make_site, provider, streamed):
    deps.settings = deps.settings.model_copy(update={"stream_stages": streamed})
    sizes = {1: 7, 2: 2, 3: 5, 4: 3, 5: 2, 6: 4}
    site = await make_site(keywords=45, **{f"stage_{n}_batch_size": size for n, size in sizes.items()})
    calls = {"cluster": 0}
    original = provider.cluster_keywords

    async def counting(keywords, existing):
        calls["cluster"] += 1
        return await original(keywords, existing)

    provider.cluster_keywords = counting
    try:
        bus = Bus(deps)
        await bus.send(StartRun(site_id=site.id))
        await bus.pump()
    finally:
        del provider.cluster_keywords
    run = await run_of(deps, site.id)
    assert run.status == "completed"
    assert calls["cluster"] == math.ceil(45 / 7)
    async with deps.sessions() as session:
        run_stages = {row.stage: row for row in (await session.scalars(
            select(RunStage).where(RunStage.run_id == run.id))).all()}
        for stage, size in sizes.items():
            batches = (await session.scalars(select(StageBatch).where(
                StageBatch.run_id == run.id, StageBatch.stage == stage))).all()
            eligible = run.stage_result(stage)["items_in"]
            items = [i for batch in batches for i in batch.item_ids]
            assert len(items) == len(set(items)) == eligible and max(len(b.item_ids) for b in batches) <= size
            if not streamed or stage <= 2:  # a streamed stage's batches are cut from what each batch hands on
                assert len(batches) == math.ceil(eligible / size)
            assert bool(run_stages[stage].streamed) == (streamed and stage > 2)
            # the provider calls made: one per batch for clustering, none for the local task queue,
            # one per item for the rest (ideas per cluster, articles, prompts, images)
            calls_made = {1: len(batches), 3: 0}.get(stage, eligible)
            assert run.stage_result(stage)["ai_calls"] == calls_made, stage
            assert all(len(b.item_ids) <= size for b in batches)
            assert sum(len(b.item_ids) for b in batches) == eligible


async def test_duplicated_batch_messages_change_nothing(deps, make_site):
    clean_site = await make_site(keywords=24, **QUICK)
    dup_site = await make_site(keywords=24, **QUICK)
    clean = Bus(deps)
    await clean.send(StartRun(site_id=clean_site.id))
    await clean.pump()
    duplicated = Bus(deps)
    await duplicated.send(StartRun(site_id=dup_site.id))
    await duplicated.pump(duplicate_batches=True)
    # and once more, every batch message of the finished run
    for payload in [p for k, p in duplicated.seen if k.endswith(".batch")]:
        await duplicated.send(ProcessBatch.model_validate(payload))
    await duplicated.pump()

    first, second = await site_outcome(deps, clean_site.id), await site_outcome(deps, dup_site.id)
    assert_complete_and_consistent(second, 100_000)
    assert first == second


async def test_racing_replicas_process_a_batch_once(deps, make_site):
    site = await make_site(keywords=20)
    bus = Bus(deps)
    await bus.send(StartRun(site_id=site.id))
    # deliver run.start and stage 1 planning, then race every batch message against itself
    batches: list[ProcessBatch] = []
    while not batches:
        pending = await drain_outbox(deps)
        assert pending, "stage 1 was never planned"
        batches = [ProcessBatch.model_validate(p) for k, p in pending if k.endswith(".batch")]
        for key, payload in pending:
            if not key.endswith(".batch"):
                await bus.deliver(key, payload)
    await asyncio.gather(*(process_batch(deps, b, STAGE_WORK[1]) for b in batches for _ in range(4)))
    outcome = await site_outcome(deps, site.id)
    assert outcome["keywords_clustered"] == 20
    run = await run_of(deps, site.id)
    assert run.stage_1_result is not None and run.stage_1_result["credits"] == 4
    assert outcome["ledger_charged"] == 4


async def test_start_is_refused_with_an_active_run_or_short_credits(deps, make_site, sessions):
    site = await make_site(keywords=10)
    bus = Bus(deps)
    await bus.send(StartRun(site_id=site.id), StartRun(site_id=site.id))
    messages = await drain_outbox(deps)
    for key, payload in messages:
        await bus.deliver(key, payload)
    rejected = [p for k, p in await drain_outbox(deps) if k == "run.rejected"]
    assert len(rejected) == 1 and rejected[0]["reason"] == "site has an active run"
    assert rejected[0]["active_run_id"] == (await run_of(deps, site.id)).run_id

    poor = await make_site(keywords=200, credits=50)
    await bus.send(StartRun(site_id=poor.id))
    await bus.pump()
    reasons = [p["reason"] for p in bus.keys("run.rejected")]
    assert any(r.startswith("insufficient credits: need ") for r in reasons)
    assert await run_of(deps, poor.id) is None

    await bus.send(StartRun(site_id=987654321))
    await bus.pump()
    assert bus.keys("run.rejected")[-1]["reason"] == "unknown site 987654321"


async def test_fifty_concurrent_starts_make_one_run(deps, make_site):
    site = await make_site(keywords=10)
    from consumers.run_control import start_run

    results = await asyncio.gather(*(start_run(deps, StartRun(site_id=site.id)) for _ in range(50)))
    runs = [r for r in results if isinstance(r, AutomationRun)]
    assert len(runs) == 1
    assert all(r.reason == "site has an active run" for r in results if not isinstance(r, AutomationRun))
    async with deps.sessions() as session:
        assert await session.scalar(select(text("count(*)")).select_from(AutomationRun).where(
            AutomationRun.site_id == site.id)) == 1


async def test_pause_and_resume_give_the_totals_of_an_uninterrupted_run(deps, make_site):
    straight_site = await make_site(keywords=24, **QUICK)
    paused_site = await make_site(keywords=24, **QUICK)
    straight = Bus(deps)
    await straight.send(StartRun(site_id=straight_site.id))
    await straight.pump()

    bus = Bus(deps)
    await bus.send(StartRun(site_id=paused_site.id))
    for _ in range(3):  # a few rounds of messages, then pause mid-run
        for key, payload in await drain_outbox(deps):
            await bus.deliver(key, payload)
    run = await run_of(deps, paused_site.id)
    await bus.send(PauseRun(run_id=run.run_id))
    await bus.pump()
    run = await run_of(deps, paused_site.id)
    assert run.status == "paused" and run.completed_at is None
    await bus.send(ResumeRun(run_id=run.run_id))
    await bus.pump()
    assert (await run_of(deps, paused_site.id)).status == "completed"
    assert await site_outcome(deps, straight_site.id) == await site_outcome(deps, paused_site.id)


async def test_running_out_of_credits_pauses_then_resume_completes(deps, make_site):
    site = await make_site(keywords=24, stage_5_batch_size=4, stage_6_batch_size=8)  # stage 4: one article a batch
    bus = Bus(deps)
    await bus.send(StartRun(site_id=site.id))
    # run stages 1-3, then take the account's credits away before content generation
    while True:
        messages = await drain_outbox(deps)
        if any(k == "stage.4.batch" for k, _ in messages):
            break
        for key, payload in messages:
            await bus.deliver(key, payload)
    async with deps.sessions() as session, session.begin():
        await session.execute(update(Account).where(Account.id == site.account_id).values(credits_balance=7))
    for key, payload in messages:
        await bus.deliver(key, payload)
    await bus.pump()
    run = await run_of(deps, site.id)
    assert run.status == "paused" and run.pause_reason == "insufficient credits"
    outcome = await site_outcome(deps, site.id)
    assert outcome["content"] == 1 and outcome["balance"] == 2  # one article paid, nothing half-written
    async with deps.sessions() as session, session.begin():
        await grant(session, site.account_id, 100_000, "top-up")
    await bus.send(ResumeRun(run_id=run.run_id))
    await bus.pump()
    run = await run_of(deps, site.id)
    assert run.status == "completed"
    outcome = await site_outcome(deps, site.id)
    assert outcome["tasks_without_one_content"] == 0
    assert outcome["credits_used"] == outcome["ledger_charged"]


async def test_a_run_that_cannot_pay_for_the_rest_pauses_before_the_stage_with_the_figures(deps, make_site):
    # stage by stage: each stage is checked before it is planned (a streamed run's stages 3-6 are checked
    # with stage 2, then each batch's debit pauses it: test_credits_running_out_mid_stream_pause...)
    deps.settings = deps.settings.model_copy(update={"stream_stages": False})
    site = await make_site(keywords=24, stage_5_batch_size=4, stage_6_batch_size=8)
    bus = Bus(deps)
    await bus.send(StartRun(site_id=site.id))
    while True:  # run stages 1 and 2; stage 2's completion (which plans stage 3) is held back
        messages = await drain_outbox(deps)
        if held := [(k, p) for k, p in messages if k == "stage.2.completed"]:
            break
        for key, payload in messages:
            await bus.deliver(key, payload)
    async with deps.sessions() as session, session.begin():  # spent elsewhere meanwhile
        await session.execute(update(Account).where(Account.id == site.account_id).values(credits_balance=50))
    for key, payload in messages:
        await bus.deliver(key, payload)
    await bus.pump()
    run = await run_of(deps, site.id)
    assert (run.status, run.current_stage) == ("paused", 3)
    assert run.pause_reason.startswith("insufficient credits: stages 3-7 need about ")
    assert run.pause_reason.endswith("balance 50") and " tasks" not in run.pause_reason.split("(")[0]
    outcome = await site_outcome(deps, site.id)
    assert outcome["tasks"] == outcome["content"] == 0 and outcome["balance"] == 50  # nothing started, nothing paid
    assert held

    await bus.send(ResumeRun(run_id=run.run_id))  # still short: paused again, with the same figures
    await bus.pump()
    assert (await run_of(deps, site.id)).status == "paused"
    async with deps.sessions() as session, session.begin():
        await grant(session, site.account_id, 100_000, "top-up")
    await bus.send(ResumeRun(run_id=run.run_id))
    await bus.pump()
    run = await run_of(deps, site.id)
    assert run.status == "completed"
    outcome = await site_outcome(deps, site.id)
    assert outcome["tasks_without_one_content"] == 0 and outcome["content_in_review"] == outcome["tasks"] > 0


async def test_keywords_added_later_get_ideas_for_their_new_intents_only(deps, make_site):
    from ai.intents import intent_key
    from shared.accounts import add_keywords
    from shared.demo_data import demo_keywords, keyword_volume

    site = await make_site(keywords=40)
    bus = Bus(deps)
    await bus.send(StartRun(site_id=site.id))
    await bus.pump()
    async with deps.sessions() as session, session.begin():
        before = {i.id: (i.cluster_id, i.primary_keyword) for i in (await session.scalars(
            select(ContentIdea).where(ContentIdea.site_id == site.id))).all()}
        more = [(k, keyword_volume(k)) for k, _ in demo_keywords(70)[40:]]
        more += [("best " + primary + " guide", 10) for _, primary in list(before.values())[:5]]  # same intents
        await add_keywords(session, site, more)
    await bus.send(StartRun(site_id=site.id))
    await bus.pump()
    async with deps.sessions() as session:
        ideas = (await session.scalars(select(ContentIdea).where(ContentIdea.site_id == site.id))).all()
        runs = (await session.scalars(select(AutomationRun).where(AutomationRun.site_id == site.id))).all()
    assert [r.status for r in runs] == ["completed", "completed"]
    added = [i for i in ideas if i.id not in before]
    assert added  # the new keywords' intents got articles, in clusters old and new
    assert any(i.cluster_id in {c for c, _ in before.values()} for i in added)
    per_cluster: dict[int, set[frozenset[str]]] = {}
    for idea in ideas:  # no cluster targets one intent twice, across both runs
        key = intent_key(idea.primary_keyword)
        assert key not in per_cluster.setdefault(idea.cluster_id, set()), idea.primary_keyword
        per_cluster[idea.cluster_id].add(key)
    assert len(ideas) <= 75  # at most one idea per keyword


async def test_accounts_and_sites_are_created_with_default_config(sessions):
    async with sessions() as session, session.begin():
        account = await create_account(session, "defaults-check", 10)
        site = await create_site(session, account, "defaults-site")
        await session.flush()
        row = (await session.execute(text(
            "SELECT stage_1_batch_size, stage_2_batch_size, stage_3_batch_size, stage_4_batch_size, "
            "stage_5_batch_size, stage_6_batch_size, frequency, is_enabled FROM automation_configs "
            "WHERE site_id = :s"), {"s": site.id})).one()
    assert tuple(row) == (20, 1, 20, 1, 1, 1, "daily", False)


class FailingLoad:
    """Stage 1's work whose load fails: the batch must be handed back."""

    def __init__(self, work):
        self.work = work

    def __getattr__(self, name):
        return getattr(self.work, name)

    async def load(self, session, site_id, item_ids):
        raise RuntimeError("load failed")


async def test_every_handler_works_on_one_pooled_connection(deps, make_site, settings):
    """A handler that held one pooled connection while asking for a second would stall once the
    concurrency reaches the pool's size (concurrent starts did: each held its read while its
    refusal asked for another). With a pool of exactly one connection and a short checkout
    timeout, any such handler fails here at once instead of in production under load."""
    from dataclasses import replace

    from sqlalchemy.ext.asyncio import create_async_engine

    from consumers.run_control import start_run
    from shared.db import make_sessionmaker

    engine = create_async_engine(settings.database_url, pool_size=1, max_overflow=0, pool_timeout=5)
    one = replace(deps, sessions=make_sessionmaker(engine))
    try:
        site = await make_site(keywords=16, **QUICK)
        bus = Bus(one)
        first = await start_run(one, StartRun(site_id=site.id))
        assert isinstance(first, AutomationRun)
        refused = [await start_run(one, StartRun(site_id=site_id)) for site_id in (site.id, 987654321)]
        assert [r.reason for r in refused] == ["site has an active run", "unknown site 987654321"]
        messages = await drain_outbox(one)
        [request] = [p for k, p in messages if k == "stage.1.requested" and p["run_id"] == first.run_id]
        await bus.deliver("stage.1.requested", request)
        [batch, *_] = [p for k, p in await drain_outbox(one) if k == "stage.1.batch" and p["run_id"] == first.run_id]
        try:
            await process_batch(one, ProcessBatch.model_validate(batch), FailingLoad(STAGE_WORK[1]))
        except RuntimeError:
            pass
        async with one.sessions() as session:
            status = await session.scalar(select(StageBatch.status).where(StageBatch.id == batch["batch_id"]))
        assert status == "pending"  # handed back
        await bus.send(ProcessBatch.model_validate(batch), PauseRun(run_id=first.run_id))
        await bus.pump()
        await bus.send(ResumeRun(run_id=first.run_id))
        await bus.pump()
        assert (await run_of(one, site.id)).status == "completed"
    finally:
        await engine.dispose()


async def test_the_relay_deletes_rows_only_with_a_confirmed_send(sessions):
    """`OutboxRelay.flush` deletes the rows it takes in the statement that takes them: a send that fails
    rolls the delete back (the rows stay, all of them, for the next try); a chunk that sends commits it,
    and the rows go out oldest first."""
    async with sessions() as session, session.begin():
        add_events(session, *(ProcessBatch.for_stage("relay-run", 2, n) for n in range(1, 6)))

    class Failing:
        def __init__(self) -> None:
            self.calls = 0

        async def send(self, routing_key: str, payload: Mapping[str, object]) -> None:
            self.calls += 1
            if self.calls == 3:
                raise ConnectionError("broker away")

    class Recording:
        def __init__(self) -> None:
            self.sent: list[tuple[str, Mapping[str, object]]] = []

        async def send(self, routing_key: str, payload: Mapping[str, object]) -> None:
            self.sent.append((routing_key, payload))

    async def unsent() -> int:
        async with sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)

    failing = Failing()
    with pytest.raises(ConnectionError):
        await OutboxRelay(sessions, failing, 1.0).flush()
    assert failing.calls == 5 and await unsent() == 5
    recording = Recording()
    relay = OutboxRelay(sessions, recording, 1.0)
    assert await relay.flush() == 5 == relay.sent
    assert await unsent() == 0
    assert [(key, p["batch_id"]) for key, p in recording.sent] == [("stage.2.batch", n) for n in range(1, 6)]
    assert ProcessBatch.model_validate(recording.sent[0][1]).run_id == "relay-run"
    assert await relay.flush() == 0
