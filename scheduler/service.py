"""The scheduler: one APScheduler job per enabled site config, emitting `run.start` (trigger=scheduled).

It only publishes. Each slot is claimed in the database (unique per site and local slot name)
before it is published, and carries the idempotency key `schedule:<site>:<slot>`, so two
scheduler replicas never start two runs for one slot. Changes to configs are picked up by a
resync every `resync_seconds`; missed slots within the grace window fire once on resync.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.slots import Slot, slots_between
from shared.events import StartRun
from shared.models import Account, AutomationConfig, ScheduleSlot, Site
from shared.schedule import Schedule, ScheduleError, check_schedule, next_run_at, schedule_of
from shared.start_policy import start_refusal

log = logging.getLogger("automation.scheduler")
LOOKBACK = timedelta(days=32)  # longer than any period, so one missed slot of each config is found


@dataclass(frozen=True)
class Plan:
    """What the scheduler knows of one enabled config."""

    site_id: int
    schedule: Schedule
    changed_at: datetime


class SchedulerService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], publish: Callable[[StartRun], Awaitable[object]],
                 *, grace_seconds: int, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 name: str | None = None, credit_buffer: float = 1.2) -> None:
        self.sessions = sessions
        self.publish = publish
        self.grace = timedelta(seconds=grace_seconds)
        self.credit_buffer = credit_buffer
        self.clock = clock
        self.name = name or f"scheduler@{socket.gethostname()}:{os.getpid()}"
        self.plans: dict[int, Plan] = {}

    async def load_plans(self) -> dict[int, Plan]:
        async with self.sessions() as session:
            rows = (await session.execute(
                select(AutomationConfig, Site.timezone).join(Site, Site.id == AutomationConfig.site_id)
                .where(AutomationConfig.is_enabled.is_(True)))).all()
        plans = {}
        for config, timezone in rows:
            try:
                plans[config.site_id] = Plan(config.site_id, schedule_of(config, timezone), config.schedule_changed_at)
                check_schedule(plans[config.site_id].schedule)
            except (ScheduleError, ValueError) as error:  # written around the API's checks: not scheduled
                plans.pop(config.site_id, None)
                log.error("site %s: schedule not usable (%s); no runs are scheduled for it", config.site_id, error)
        return plans

    async def sync(self, scheduler: AsyncIOScheduler | None = None) -> None:
        """Reload configs, (re)place jobs, fire or skip missed slots, refresh next_run_at."""
        plans = await self.load_plans()
        now = self.clock()
        if scheduler is not None:
            for site_id in set(self.plans) - set(plans):
                scheduler.remove_job(f"site-{site_id}")
                log.info("site %s: schedule removed", site_id)
            for site_id, plan in plans.items():
                if site_id not in self.plans or self.plans[site_id].schedule != plan.schedule:
                    scheduler.add_job(self.fire_due, plan.schedule.trigger(), args=[site_id],
                                      id=f"site-{site_id}", replace_existing=True, coalesce=True,
                                      misfire_grace_time=int(self.grace.total_seconds()), max_instances=1)
                    log.info("site %s: scheduled %s", site_id, plan.schedule.describe())
        self.plans = plans
        for plan in plans.values():
            await self.catch_up(plan, now)
        await self.refresh_next_run(now)

    async def catch_up(self, plan: Plan, now: datetime) -> None:
        """Slots since the schedule last changed that nobody handled: the newest fires if within grace."""
        slots = slots_between(plan.schedule, max(plan.changed_at, now - LOOKBACK), now)
        if not slots:
            return
        async with self.sessions() as session:
            handled = set((await session.scalars(select(ScheduleSlot.slot).where(
                ScheduleSlot.site_id == plan.site_id, ScheduleSlot.slot.in_([s.label for s in slots])))).all())
        pending = [s for s in slots if s.label not in handled]
        for slot in pending:
            late = now - slot.at
            if slot is pending[-1] and late <= self.grace:
                await self.fire(plan.site_id, slot, now)
            else:
                await self.claim(plan.site_id, slot, "skipped",
                                 f"missed by {int(late.total_seconds() // 60)} min (grace "
                                 f"{int(self.grace.total_seconds() // 60)} min)")

    async def fire_due(self, site_id: int) -> None:
        """APScheduler's job: fire the slot that is due now (its newest slot)."""
        plan = self.plans.get(site_id)
        if plan is None:
            return
        now = self.clock()
        slots = slots_between(plan.schedule, now - LOOKBACK, now)
        if slots and now - slots[-1].at <= self.grace:
            await self.fire(site_id, slots[-1], now)

    async def claim(self, site_id: int, slot: Slot, action: str, reason: str | None) -> bool:
        """Record the slot as handled; False if another replica already did."""
        async with self.sessions() as session, session.begin():
            claimed = await session.scalar(
                insert(ScheduleSlot).values(site_id=site_id, slot=slot.label, slot_at=slot.at, action=action,
                                            reason=reason, scheduler=self.name)
                .on_conflict_do_nothing(index_elements=["site_id", "slot"]).returning(ScheduleSlot.id))
        if claimed is not None:
            log.info("site %s slot %s: %s%s", site_id, slot.label, action, f" ({reason})" if reason else "")
        return claimed is not None

    async def fire(self, site_id: int, slot: Slot, now: datetime) -> None:
        """Start the slot's run, or record it skipped with run control's reason (an active run, nothing
        to process, credits short of the estimate) rather than start a run that is refused or pauses."""
        async with self.sessions() as session:
            balance = await session.scalar(select(Account.credits_balance).join(Site, Site.account_id == Account.id)
                                           .where(Site.id == site_id))
            refusal = await start_refusal(session, site_id, int(balance or 0), self.credit_buffer)
        if refusal is not None:
            detail = f" ({refusal.details['active_run_id']})" if refusal.kind == "active_run" else ""
            await self.claim(site_id, slot, "skipped", refusal.reason + detail)
            return
        if await self.claim(site_id, slot, "fired", None):
            await self.publish(StartRun(site_id=site_id, trigger="scheduled", requested_by=self.name,
                                        idempotency_key=f"schedule:{site_id}:{slot.label}"))
        await self.refresh_next_run(now)

    async def refresh_next_run(self, now: datetime) -> None:
        """Keep AutomationConfig.next_run_at true for every config (None when disabled)."""
        async with self.sessions() as session, session.begin():
            rows = (await session.execute(select(AutomationConfig, Site.timezone)
                                          .join(Site, Site.id == AutomationConfig.site_id))).all()
            for config, timezone in rows:
                try:
                    wanted = next_run_at(schedule_of(config, timezone), now) if config.is_enabled else None
                except (ScheduleError, ValueError):
                    wanted = None
                if config.next_run_at != wanted:
                    await session.execute(update(AutomationConfig).where(AutomationConfig.id == config.id)
                                          .values(next_run_at=wanted))
