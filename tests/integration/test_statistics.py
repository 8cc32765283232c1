"""Planning refreshes a stage's table statistics after a bulk change, so per-batch queries by id
keep using the primary key instead of walking the whole site (see `shared.db.analyze_if_stale`)."""

from __future__ import annotations

import asyncio

from sqlalchemy import select, text, update

from consumers import run_control
from consumers.planning import input_table, plan_stage
from consumers.stage1_clustering import ClusteringStage
from shared.db import analyze_if_stale, autocommit_session
from shared.events import RequestStage, StartRun
from shared.models import AutomationRun
from tests.support import drain_outbox


async def analyzed_at(sessions, table: str):  # type: ignore[no-untyped-def]
    async with sessions() as session:
        return await session.scalar(text(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = :t AND schemaname = current_schema()"),
            {"t": table})


async def test_a_bulk_import_is_analyzed_when_its_stage_is_planned(deps, sessions, make_site) -> None:
    assert input_table(ClusteringStage()) == "keywords"
    async with autocommit_session(sessions) as session:
        await session.execute(text("ANALYZE keywords"))
    assert await analyze_if_stale(sessions, "keywords") is False  # nothing changed since
    before = await analyzed_at(sessions, "keywords")

    site = await make_site(keywords=3000, synthetic=True)
    await run_control.start_run(deps, StartRun(site_id=site.id))
    async with sessions() as session:
        run_id = await session.scalar(select(AutomationRun.run_id).where(AutomationRun.site_id == site.id))
    for _ in range(50):  # a backend reports its row counts to the statistics up to a second late
        async with sessions() as session:
            changed = await session.scalar(text(
                "SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = 'keywords' "
                "AND schemaname = current_schema()"))
        if changed >= 3000:
            break
        await asyncio.sleep(0.2)
    await plan_stage(deps, RequestStage.for_stage(run_id, 1), ClusteringStage())
    await drain_outbox(deps)  # this run goes no further: leave no messages for the next test's bus
    async with sessions() as session, session.begin():
        await session.execute(update(AutomationRun).where(AutomationRun.run_id == run_id).values(status="failed"))

    assert await analyzed_at(sessions, "keywords") > before
    async with sessions() as session:
        plan = "\n".join((await session.execute(text(
            "EXPLAIN SELECT * FROM keywords WHERE id IN (1, 2, 3) AND site_id = :s AND status = 'new' "
            "AND cluster_id IS NULL AND NOT disabled"), {"s": site.id})).scalars())
    assert "keywords_pkey" in plan, plan
