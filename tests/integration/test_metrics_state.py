"""The pipeline-state gauges' SQL against the real database (compared before and after, since the
test database is shared by the whole run)."""

from __future__ import annotations

import asyncio
import uuid

from shared.db import make_engine, make_sessionmaker
from shared.metrics import PipelineState, Snapshot
from shared.models import AutomationRun, CreditLedger, StageBatch


def delta(after: Snapshot, before: Snapshot) -> dict[str, dict]:
    def diff(a: dict, b: dict) -> dict:
        return {k: a.get(k, 0) - b.get(k, 0) for k in set(a) | set(b) if a.get(k, 0) != b.get(k, 0)}

    return {"runs": diff(after.runs, before.runs),
            "open_batches": diff(after.open_batches, before.open_batches),
            "credits_charged": diff(after.credits_charged, before.credits_charged)}


async def test_runs_open_batches_and_credits_are_read_per_status_and_stage(sessions, make_site):
    state = PipelineState()
    before = await state.refresh(sessions)
    assert set(before.runs) >= {"running", "paused", "completed", "failed"}
    site = await make_site(keywords=1, synthetic=True)
    async with sessions() as session, session.begin():
        runs = [AutomationRun(run_id=f"run_metrics_{uuid.uuid4().hex[:10]}", site_id=site.id, status=status)
                for status in ("paused", "completed", "failed", "failed")]
        session.add_all(runs)
        await session.flush()
        batches = [StageBatch(run_id=runs[0].id, stage=stage, seq=seq, item_ids=[1], status=status)
                   for seq, (stage, status) in enumerate([(2, "pending"), (2, "pending"), (2, "claimed"),
                                                          (5, "pending"), (5, "done")])]
        session.add_all(batches)
        await session.flush()
        session.add_all([
            CreditLedger(account_id=site.account_id, run_id=runs[0].id, batch_id=batches[0].id, stage=2, delta=-4,
                         reason="stage 2 batch"),
            CreditLedger(account_id=site.account_id, run_id=runs[0].id, batch_id=batches[1].id, stage=2, delta=-3,
                         reason="stage 2 batch"),
            CreditLedger(account_id=site.account_id, run_id=runs[0].id, batch_id=batches[4].id, stage=5, delta=-2,
                         reason="stage 5 batch"),
            CreditLedger(account_id=site.account_id, delta=500, reason="top-up"),  # a grant is not a charge
        ])
    after = await state.refresh(sessions)
    assert delta(after, before) == {
        "runs": {"paused": 1, "completed": 1, "failed": 2},
        "open_batches": {(2, "pending"): 2, (2, "claimed"): 1, (5, "pending"): 1},
        "credits_charged": {2: 7, 5: 2},
    }
    assert after.taken_at > before.taken_at


async def test_a_failed_refresh_keeps_the_last_snapshot_and_goes_on(sessions, settings):
    state = PipelineState()
    good = await state.refresh(sessions)
    missing = settings.model_copy(update={"database_url": f"{settings.database_url}_missing"})
    engine = make_engine(missing, pool_size=1)
    task = asyncio.create_task(state.refresh_forever(make_sessionmaker(engine), every=0.05))
    try:
        await asyncio.sleep(0.3)
        assert not task.done() and state.snapshot is good
    finally:
        task.cancel()
        await engine.dispose()
