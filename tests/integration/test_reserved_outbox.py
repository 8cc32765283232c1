"""A batch finish sends the batch messages it queued itself, right after its commit (reserved outbox rows).

Asserted as an operator would see it: every message reaches the broker exactly once, whether its
process sends it, its send fails, or the process dies between its commit and the send (then the relay's
sweep sends it once the reservation has run out, and the run still completes with clean totals).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from consumers.batches import claim_batch, process_batch
from consumers.registry import STAGE_WORK
from shared.events import ProcessBatch
from shared.models import AutomationRun, OutboxMessage, StageBatch
from shared.outbox import OutboxRelay, ReservedRow, add_events
from tests.integration.test_finish_groups import quick
from tests.integration.test_streaming import run_pk_of
from tests.support import site_outcome, stage_batches


class Recording:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Mapping[str, Any]]] = []

    async def send(self, routing_key: str, payload: Mapping[str, Any]) -> None:
        self.sent.append((routing_key, payload))


class BrokerAway:
    async def send(self, routing_key: str, payload: Mapping[str, Any]) -> None:
        raise ConnectionError("broker away")


class DiesAfterCommit(OutboxRelay):
    """A process killed between a finish's commit and its send."""

    async def send_reserved(self, rows: Sequence[ReservedRow]) -> None:
        self.lost = [*getattr(self, "lost", []), *rows]


async def outbox_ids(sessions: Any) -> list[int]:
    async with sessions() as session:
        return list((await session.scalars(select(OutboxMessage.id).order_by(OutboxMessage.id))).all())


async def test_reserved_rows_are_sent_once_by_their_process_or_by_the_sweep(sessions):
    """The sweep leaves a reserved row alone until its reservation runs out, sent or not; a sent row is
    deleted by the relay's next deletion; a failed send hands the rows to the sweep at once; a row whose
    process died is swept once its reservation has run out. Each row reaches the broker once."""
    async with sessions() as session, session.begin():
        rows = (await session.execute(
            insert(OutboxMessage).values([
                {"routing_key": "stage.2.batch", "payload": ProcessBatch.for_stage("r", 2, n).model_dump(mode="json"),
                 "available_at": func.now() + timedelta(seconds=30)} for n in range(1, 5)])
            .returning(OutboxMessage.id, OutboxMessage.routing_key, OutboxMessage.payload))).all()
        add_events(session, ProcessBatch.for_stage("r", 2, 99))
    reserved = [ReservedRow(row.id, row.routing_key, row.payload) for row in rows]
    recording = Recording()
    relay = OutboxRelay(sessions, recording, 1.0)

    assert await relay.due()
    assert await relay.flush() == 1  # only the row nobody reserved
    assert not await relay.due()  # a poll finds nothing to sweep: no sweep transaction
    await relay.send_reserved(reserved[:2])
    assert await relay.flush() == 0  # sent, not deleted yet, still reserved
    assert await outbox_ids(sessions) == [row.id for row in reserved]
    await relay.delete_sent()
    assert await outbox_ids(sessions) == [row.id for row in reserved[2:]]

    await OutboxRelay(sessions, BrokerAway(), 1.0).send_reserved(reserved[2:3])  # never raises
    assert await relay.flush() == 1  # released at once
    assert await outbox_ids(sessions) == [reserved[3].id]

    async with sessions() as session, session.begin():  # its process died and the reservation ran out
        await session.execute(update(OutboxMessage).values(available_at=func.now() - timedelta(seconds=1)))
    assert await relay.flush() == 1
    assert await outbox_ids(sessions) == [] and await relay.flush() == 0
    sent = Counter(payload["batch_id"] for _, payload in recording.sent)
    assert sent == {1: 1, 2: 1, 3: 1, 4: 1, 99: 1}


async def test_a_finish_sends_its_refill_and_hand_on_itself_and_leaves_no_row(deps, make_site):
    fast = quick(deps, True)
    fast = replace(fast, settings=fast.settings.model_copy(update={"batch_window": 2}))
    site = await make_site(keywords=40, synthetic=True, stage_4_batch_size=1, stage_5_batch_size=1)
    _, batches = await stage_batches(fast, site.id)
    assert len(batches) == 2  # the window
    recording = Recording()
    direct = replace(fast, relay=OutboxRelay(fast.sessions, recording, 1.0))
    before = await outbox_ids(fast.sessions)  # other stages' messages, still waiting for the sweep

    await process_batch(direct, batches[0], STAGE_WORK[4])
    assert len(await outbox_ids(fast.sessions)) == len(before) + 2  # sent; the next claim deletes them
    await process_batch(direct, batches[0], STAGE_WORK[4])  # a redelivery finishes nothing and sends nothing
    keys = Counter(key for key, _ in recording.sent)
    assert keys == {"stage.4.batch": 1, "stage.5.batch": 1}  # the window's refill, the article's prompts
    sent = [ProcessBatch.model_validate(payload) for _, payload in recording.sent]
    assert all(message.run_id == batches[0].run_id for message in sent)
    assert await outbox_ids(fast.sessions) == before  # what it queued is sent and gone with that claim
    assert direct.relay.take_sent_ids() == ""
    async with fast.sessions() as session:
        emitted = (await session.scalars(select(StageBatch.id).where(StageBatch.id.in_([m.batch_id for m in sent]),
                                                                   StageBatch.emitted_at.is_not(None)))).all()
    assert sorted(emitted) == sorted(m.batch_id for m in sent)


async def test_messages_of_a_process_that_died_after_its_commit_are_swept_and_the_run_completes(deps, make_site):
    fast = quick(deps, True)
    fast = replace(fast, settings=fast.settings.model_copy(update={"batch_window": 2}))
    site = await make_site(keywords=40, synthetic=True, stage_4_batch_size=1)
    bus, batches = await stage_batches(fast, site.id)
    dying = DiesAfterCommit(fast.sessions, Recording(), 1.0)
    before = await outbox_ids(fast.sessions)
    await process_batch(replace(fast, relay=dying), batches[0], STAGE_WORK[4])
    assert dying.lost and await outbox_ids(fast.sessions) == sorted(before + [row.id for row in dying.lost])
    assert await bus.relay.flush() == len(before)  # the others; the reserved rows wait
    assert await outbox_ids(fast.sessions) == sorted(row.id for row in dying.lost)

    async with fast.sessions() as session, session.begin():  # the reservation runs out
        await session.execute(update(OutboxMessage).values(available_at=func.now()))
    await bus.deliver(batches[1].type, batches[1].model_dump(mode="json"))
    await bus.pump()
    run_pk = await run_pk_of(fast, site.id)
    async with fast.sessions() as session:
        assert (await session.get(AutomationRun, run_pk)).status == "completed"
    outcome = await site_outcome(fast, site.id)
    assert outcome["content"] == outcome["tasks"] and outcome["tasks_without_one_content"] == 0
    assert outcome["credits_used"] == outcome["ledger_charged"]
    lost = {row.payload["batch_id"] for row in dying.lost}
    assert Counter(p["batch_id"] for k, p in bus.seen if p.get("batch_id") in lost) == dict.fromkeys(lost, 1)


async def test_sent_rows_a_failed_claim_took_are_deleted_later_and_the_relay_deletes_when_no_claim_comes(
        deps, make_site):
    """A claim that fails hands the sent rows it was to delete back; with no claim coming, the running
    relay's next poll deletes them. Nothing is sent twice."""
    fast = quick(deps, True)
    fast = replace(fast, settings=fast.settings.model_copy(update={"batch_window": 2}))
    site = await make_site(keywords=40, synthetic=True, stage_4_batch_size=1)
    _, batches = await stage_batches(fast, site.id)
    recording = Recording()
    relay = OutboxRelay(fast.sessions, recording, 0.05)
    direct = replace(fast, relay=relay)
    await process_batch(direct, batches[0], STAGE_WORK[4])
    sent = relay.take_sent_ids()
    ids = [int(i) for i in sent.split(",")]
    assert len(ids) == 2 and set(ids) <= set(await outbox_ids(fast.sessions))
    relay.put_back_sent_ids(sent)

    class DatabaseAway:
        async def execute(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("database away")

    with pytest.raises(ConnectionError):
        await claim_batch(direct, batches[1], DatabaseAway())  # type: ignore[arg-type]
    assert relay.take_sent_ids() == sent  # handed back
    relay.put_back_sent_ids(sent)

    running = asyncio.create_task(relay.run())
    try:
        for _ in range(100):
            if not set(ids) & set(await outbox_ids(fast.sessions)):
                break
            await asyncio.sleep(0.05)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert not set(ids) & set(await outbox_ids(fast.sessions)) and relay.take_sent_ids() == ""
    mine = Counter(payload["batch_id"] for key, payload in recording.sent[:2])
    assert len(mine) == 2 and all(payload.get("batch_id") not in mine for _, payload in recording.sent[2:])
