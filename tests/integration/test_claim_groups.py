"""Claims of one stage that arrive together share one statement (`ClaimGroups`).

Asserted as an operator sees it: every batch claimed once and worked once (its attempts, its outputs,
the credits), one statement for the group (the claims' leases, computed from the statement's start,
are equal), duplicates of a message inside a group finding nothing to do, a forged message in a group
dead-lettered on its own while the rest of the group is worked, a group whose statement fails claimed
again batch by batch, and a handler that goes away while its claim is in flight leaving its batch
pending at once rather than held until its lease runs out.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest
from sqlalchemy import select, text

from consumers.batches import ClaimGroups, FinishGroups, claim_batches, load_claimed, process_batch
from consumers.deps import Deps, LoadsGroups
from consumers.registry import STAGE_WORK
from shared.db import autocommit_session
from shared.events import ProcessBatch
from shared.messaging import PoisonMessage
from shared.models import StageBatch
from tests.integration.test_finish_groups import quick
from tests.integration.test_streaming import assert_progress_adds_up, run_pk_of
from tests.support import site_outcome, stage_batches, until_a_statement_waits_for_a_lock


async def batch_rows(deps: Deps, ids: list[int]) -> list[StageBatch]:
    async with deps.sessions() as session:
        return list((await session.scalars(select(StageBatch).where(StageBatch.id.in_(ids))
                                           .order_by(StageBatch.id))).all())


async def work_all(deps: Deps, commands: list[ProcessBatch], claims: ClaimGroups) -> list[BaseException | None]:
    finishes = FinishGroups()
    return await asyncio.gather(*(process_batch(deps, c, STAGE_WORK[c.stage], asyncio.Semaphore(64), finishes, claims)
                                  for c in commands), return_exceptions=True)


@pytest.mark.parametrize("stage", [2, 4, 5, 6], ids=["load-after-claim", "load-in-group", "load-in-group-5",
                                                     "load-in-claim"])
async def test_claims_together_share_a_statement_and_each_batch_is_worked_once(deps, make_site, stage):
    fast = quick(deps, False)
    site = await make_site(keywords=40, synthetic=True, stage_2_batch_size=1, stage_4_batch_size=1,
                           stage_5_batch_size=1, stage_6_batch_size=2)
    _, batches = await stage_batches(fast, site.id, stage=stage)
    assert len(batches) >= 4
    other_site = await make_site(keywords=16, synthetic=True)
    _, others = await stage_batches(fast, other_site.id, stage=stage)
    forged = [ProcessBatch.for_stage(others[0].run_id, stage, batches[0].batch_id),  # another run's id
              ProcessBatch.for_stage(batches[0].run_id, stage, 2**62)]  # a batch that does not exist
    commands = batches * 2 + forged  # every message twice, as a redelivery beside the original would come

    outcomes = await work_all(fast, commands, ClaimGroups())

    assert outcomes[:-2] == [None] * (2 * len(batches))
    assert all(isinstance(o, PoisonMessage) for o in outcomes[-2:]), outcomes[-2:]
    rows = await batch_rows(fast, [b.batch_id for b in batches])
    assert [(r.status, r.attempts) for r in rows] == [("done", 1)] * len(batches)
    assert len({r.lease_expires_at for r in rows}) == 1  # one statement claimed them all
    other_rows = await batch_rows(fast, [b.batch_id for b in others])
    assert {(r.status, r.attempts) for r in other_rows} == {("pending", 0)}  # the forged message touched nothing
    await assert_progress_adds_up(fast, await run_pk_of(fast, site.id))
    outcome = await site_outcome(fast, site.id)
    assert outcome["credits_used"] == outcome["ledger_charged"]
    made = {2: outcome["ideas"], 4: outcome["content"], 5: outcome["images"], 6: outcome["images_generated"]}[stage]
    assert made == sum(r.items_out for r in rows) > 0


class FailingOnce:
    """The process's relay, but the first claim statement that carries sent rows gets a malformed list,
    which makes the database refuse that statement (a failure of the group, not of a batch)."""

    def __init__(self, relay) -> None:  # type: ignore[no-untyped-def]
        self.relay, self.failed = relay, False

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.relay, name)

    def take_sent_ids(self) -> str:
        if not self.failed:
            self.failed = True
            return "not-an-id"
        return str(self.relay.take_sent_ids())

    def put_back_sent_ids(self, ids: str) -> None:
        if ids != "not-an-id":
            self.relay.put_back_sent_ids(ids)


async def test_a_group_whose_statement_fails_claims_each_batch_alone(deps, make_site, caplog):
    fast = quick(deps, False)
    site = await make_site(keywords=40, synthetic=True, stage_4_batch_size=1)
    _, batches = await stage_batches(fast, site.id, stage=4)
    failing = replace(fast, relay=FailingOnce(fast.relay))
    with caplog.at_level(logging.INFO, logger="automation.batches"):
        outcomes = await work_all(failing, batches, ClaimGroups())
    assert f"a group of {len(batches)} claims failed" in caplog.text
    assert outcomes == [None] * len(batches)  # no message goes to the retry path for the group's failure
    rows = await batch_rows(fast, [b.batch_id for b in batches])
    assert [(r.status, r.attempts) for r in rows] == [("done", 1)] * len(batches)
    outcome = await site_outcome(fast, site.id)
    assert outcome["content"] == len(batches) and outcome["tasks_without_one_content"] == 0


async def test_a_handler_gone_while_its_claim_runs_leaves_the_batch_pending(deps, make_site):
    fast = quick(deps, False)
    site = await make_site(keywords=16, synthetic=True, stage_4_batch_size=1)
    _, batches = await stage_batches(fast, site.id, stage=4)
    first = batches[0]
    claims = ClaimGroups()
    async with fast.sessions() as blocker, blocker.begin():  # the claim's statement waits for this row lock
        await blocker.execute(text("SELECT FROM stage_batches WHERE id = :id FOR UPDATE"), {"id": first.batch_id})
        handler = asyncio.create_task(process_batch(fast, first, STAGE_WORK[4], claims=claims))
        await until_a_statement_waits_for_a_lock(fast, "%claimed AS%")
        handler.cancel()  # the consumer stops
        with pytest.raises(asyncio.CancelledError):
            await handler
    for _ in range(100):  # the claimer finishes its statement once the lock is gone, then hands the batch back
        row, = await batch_rows(fast, [first.batch_id])
        if row.attempts == 1 and row.status == "pending":
            break
        await asyncio.sleep(0.05)
    assert (row.status, row.claim_token, row.attempts) == ("pending", None, 1)
    assert row.error == "its consumer stopped before working on it"
    await process_batch(fast, first, STAGE_WORK[4], claims=claims)  # the redelivery works it
    row, = await batch_rows(fast, [first.batch_id])
    assert (row.status, row.attempts, row.items_out) == ("done", 2, 1)


class LoadGroupFails:
    """Stage 4's work whose group load fails once (a statement refused), as the database might."""

    def __init__(self) -> None:
        self.work, self.failed = STAGE_WORK[4], False

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.work, name)

    async def load_group(self, session, site_id, batches):  # type: ignore[no-untyped-def]
        if not self.failed:
            self.failed = True
            raise RuntimeError("refused")
        return await self.work.load_group(session, site_id, batches)


async def test_a_group_whose_load_fails_loads_batch_by_batch(deps, make_site, caplog):
    fast = quick(deps, False)
    site = await make_site(keywords=40, synthetic=True, stage_4_batch_size=1)
    _, batches = await stage_batches(fast, site.id, stage=4)
    work, finishes, claims = LoadGroupFails(), FinishGroups(), ClaimGroups()
    with caplog.at_level(logging.WARNING, logger="automation.batches"):
        outcomes = await asyncio.gather(*(process_batch(fast, c, work, asyncio.Semaphore(64), finishes, claims)
                                          for c in batches), return_exceptions=True)
    assert work.failed and "loading a group of" in caplog.text
    assert outcomes == [None] * len(batches)
    rows = await batch_rows(fast, [b.batch_id for b in batches])
    assert [(r.status, r.attempts, r.items_out) for r in rows] == [("done", 1, 1)] * len(batches)
    outcome = await site_outcome(fast, site.id)
    assert outcome["content"] == len(batches) and outcome["tasks_without_one_content"] == 0


@pytest.mark.parametrize("stage", [4, 5])
async def test_a_claim_group_loads_each_batch_its_own_inputs(deps, make_site, stage):
    fast = quick(deps, False)
    site = await make_site(keywords=40, synthetic=True, stage_4_batch_size=2, stage_5_batch_size=2)
    _, batches = await stage_batches(fast, site.id, stage=stage)
    assert len(batches) >= 3
    work = STAGE_WORK[stage]
    assert isinstance(work, LoadsGroups)
    async with autocommit_session(fast.sessions) as session:
        claims = await claim_batches(fast, stage, batches, session)
        loaded = await load_claimed(session, work, claims)
        for claim in loaded:
            assert claim is not None and claim.loaded
            ids = set(claim.inputs) if stage == 4 else {draft.id for draft in claim.inputs}
            assert ids == set(claim.item_ids)
            assert claim.inputs == await work.load(session, site.id, claim.item_ids)
