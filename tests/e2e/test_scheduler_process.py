"""The real scheduler process starts a scheduled run that the real consumers complete."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from automation.supervisor import ConsumerFleet, settings_env
from shared.models import AutomationConfig, AutomationRun, ScheduleSlot
from tests.e2e.conftest import delete_topology, wait_for

pytestmark = pytest.mark.e2e


async def test_a_config_due_shortly_is_run_by_the_scheduler_process(settings, sessions, make_site, output_dir):
    own = settings.model_copy(update={"queue_prefix": f"{settings.queue_prefix}{uuid.uuid4().hex[:4]}",
                                      "ai_provider": "simulated", "schedule_resync_seconds": 1.0})
    site = await make_site(keywords=8, synthetic=True)
    # the next whole minute at least 20 s away, so the process is up before the slot (times are HH:MM)
    due = (datetime.now(UTC) + timedelta(seconds=80)).replace(second=0, microsecond=0)
    async with sessions() as session, session.begin():
        await session.execute(update(AutomationConfig).where(AutomationConfig.site_id == site.id).values(
            is_enabled=True, frequency="daily", scheduled_time=due.time(), schedule_changed_at=datetime.now(UTC)))
    fleet = ConsumerFleet(own, concurrency=4, log_dir=output_dir / f"fleet-{own.queue_prefix}")
    fleet.start_all()
    log = (output_dir / f"scheduler-{own.queue_prefix}.out").open("wb")
    scheduler = subprocess.Popen([sys.executable, "-m", "automation.cli", "scheduler"], env=settings_env(own),
                                 stdout=log, stderr=subprocess.STDOUT)
    try:
        async def next_run_is_due() -> bool:
            async with sessions() as session:
                return await session.scalar(select(AutomationConfig.next_run_at).where(
                    AutomationConfig.site_id == site.id)) == due

        await wait_for(next_run_is_due, timeout=30)

        async def completed() -> AutomationRun | None:
            async with sessions() as session:
                return await session.scalar(select(AutomationRun).where(
                    AutomationRun.site_id == site.id, AutomationRun.status == "completed"))

        run = await wait_for(completed, timeout=150)
        async with sessions() as session:
            slots = (await session.scalars(select(ScheduleSlot).where(ScheduleSlot.site_id == site.id))).all()
    finally:
        scheduler.terminate()
        scheduler.wait(timeout=30)
        fleet.stop()
        await delete_topology(own)
    assert run.trigger == "scheduled" and run.idempotency_key == f"schedule:{site.id}:{due:%Y-%m-%dT%H:%M} UTC"
    assert [(s.action, s.slot_at) for s in slots] == [("fired", due)]
    assert scheduler.returncode == 0
