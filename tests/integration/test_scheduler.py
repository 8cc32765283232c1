"""The scheduler against the real database with a controllable clock (never real waiting)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from scheduler.service import SchedulerService
from scheduler.slots import slots_between
from shared.events import StartRun
from shared.models import AutomationConfig, AutomationRun, ScheduleSlot
from shared.schedule import Schedule, ScheduleError, check_schedule
from tests.support import Bus


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def local(timezone: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(timezone)).astimezone(UTC)


async def schedule(sessions, site_id: int, *, frequency: str = "daily", at: time = time(2, 0),
                   enabled: bool = True, changed_at: datetime) -> None:
    async with sessions() as session, session.begin():
        await session.execute(update(AutomationConfig).where(AutomationConfig.site_id == site_id).values(
            is_enabled=enabled, frequency=frequency, scheduled_time=at, schedule_changed_at=changed_at))


def scheduler_for(deps, clock: Clock, site_id: int, name: str = "s1") -> tuple[SchedulerService, list[StartRun]]:
    """A scheduler on a fake clock; it sees every test's sites, `published` keeps this test's."""
    published: list[StartRun] = []

    async def publish(command: StartRun) -> None:
        if command.site_id == site_id:
            published.append(command)
        await Bus(deps).send(command)

    return SchedulerService(deps.sessions, publish, grace_seconds=3600, clock=clock, name=name), published


async def slots_of(sessions, site_id: int) -> list[tuple[str, str, str | None]]:
    async with sessions() as session:
        return [tuple(r) for r in (await session.execute(
            select(ScheduleSlot.slot, ScheduleSlot.action, ScheduleSlot.reason)
            .where(ScheduleSlot.site_id == site_id).order_by(ScheduleSlot.id))).all()]


def test_weekly_runs_on_mondays_and_monthly_on_the_first():
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 31, tzinfo=UTC)
    weekly = slots_between(Schedule("weekly", (time(9, 0),), "Europe/Paris"), start, end)
    assert {s.at.astimezone(ZoneInfo("Europe/Paris")).weekday() for s in weekly} == {0}
    assert len(weekly) == 13
    monthly = slots_between(Schedule("monthly", (time(9, 0),), "Europe/Paris"), start, end)
    assert [s.label for s in monthly] == [f"{d}T09:00 Europe/Paris" for d in ("2026-11-01", "2026-12-01", "2027-01-01")]


def test_daylight_saving_changes_give_one_slot_per_day():
    back = slots_between(Schedule("daily", (time(1, 30),), "America/New_York"), datetime(2026, 10, 31, tzinfo=UTC),
                         datetime(2026, 11, 3, tzinfo=UTC))
    # 01:30 happens twice on 2026-11-01 in New York; it is one slot
    days = ("2026-10-31", "2026-11-01", "2026-11-02")
    assert [s.label for s in back] == [f"{d}T01:30 America/New_York" for d in days]
    forward = slots_between(Schedule("daily", (time(2, 30),), "America/New_York"), datetime(2026, 3, 7, 12, tzinfo=UTC),
                            datetime(2026, 3, 10, tzinfo=UTC))
    assert sum(s.at.astimezone(ZoneInfo("America/New_York")).day == 8 for s in forward) == 1


async def test_a_daily_slot_far_from_utc_fires_once_and_starts_a_scheduled_run(deps, make_site):
    zone = "Pacific/Kiritimati"  # UTC+14
    site = await make_site(keywords=8)
    async with deps.sessions() as session, session.begin():
        from shared.models import Site

        await session.execute(update(Site).where(Site.id == site.id).values(timezone=zone))
    slot = local(zone, 2026, 11, 28, 2, 0)
    await schedule(deps.sessions, site.id, changed_at=slot - timedelta(days=1))
    clock = Clock(slot - timedelta(seconds=5))
    service, published = scheduler_for(deps, clock, site.id)
    await service.sync()
    assert published == []
    async with deps.sessions() as session:
        assert await session.scalar(select(AutomationConfig.next_run_at).where(
            AutomationConfig.site_id == site.id)) == slot
    clock.now = slot + timedelta(milliseconds=3)
    await service.fire_due(site.id)
    await service.fire_due(site.id)
    await service.sync()
    assert [(c.site_id, c.trigger, c.idempotency_key) for c in published] == [
        (site.id, "scheduled", f"schedule:{site.id}:2026-11-28T02:00 {zone}")]
    bus = Bus(deps)
    await bus.pump()
    async with deps.sessions() as session:
        run = await session.scalar(select(AutomationRun).where(AutomationRun.site_id == site.id))
        config = await session.scalar(select(AutomationConfig).where(AutomationConfig.site_id == site.id))
    assert run.trigger == "scheduled" and run.status == "completed"
    assert config.last_run_at is not None and config.next_run_at == slot + timedelta(days=1)


async def test_two_scheduler_replicas_give_one_run_per_slot(deps, make_site):
    site = await make_site(keywords=8)
    slot = local("UTC", 2026, 11, 28, 2, 0)
    await schedule(deps.sessions, site.id, changed_at=slot - timedelta(days=1))
    clock = Clock(slot)
    first, published_1 = scheduler_for(deps, clock, site.id, "replica-1")
    second, published_2 = scheduler_for(deps, clock, site.id, "replica-2")
    await first.sync()
    await second.sync()
    import asyncio

    await asyncio.gather(first.fire_due(site.id), second.fire_due(site.id))
    assert len(published_1) + len(published_2) == 1
    await Bus(deps).pump()
    async with deps.sessions() as session:
        runs = (await session.scalars(select(AutomationRun).where(AutomationRun.site_id == site.id))).all()
    assert len(runs) == 1


async def test_disable_reenable_and_time_change(deps, make_site):
    site = await make_site(keywords=8)
    monday = local("UTC", 2026, 11, 30, 2, 0)
    await schedule(deps.sessions, site.id, enabled=False, changed_at=monday - timedelta(days=3))
    clock = Clock(monday + timedelta(minutes=1))
    service, published = scheduler_for(deps, clock, site.id)
    await service.sync()
    await service.fire_due(site.id)
    assert published == []
    async with deps.sessions() as session:
        assert await session.scalar(select(AutomationConfig.next_run_at).where(
            AutomationConfig.site_id == site.id)) is None
    # re-enabled after today's slot: today's slot is not "missed", tomorrow's fires
    await schedule(deps.sessions, site.id, enabled=True, changed_at=clock.now)
    await service.sync()
    assert published == []
    # the time moves to 03:00: tomorrow 02:00 is no slot any more, 03:00 is
    await schedule(deps.sessions, site.id, at=time(3, 0), changed_at=clock.now)
    await service.sync()
    async with deps.sessions() as session:
        assert await session.scalar(select(AutomationConfig.next_run_at).where(
            AutomationConfig.site_id == site.id)) == monday + timedelta(hours=1)
    clock.now = monday + timedelta(days=1)
    await service.fire_due(site.id)
    assert published == []
    clock.now = monday + timedelta(days=1, hours=1)
    await service.fire_due(site.id)
    assert [c.idempotency_key for c in published] == [f"schedule:{site.id}:2026-12-01T03:00 UTC"]


@pytest.mark.parametrize(("late_minutes", "fires"), [(30, True), (120, False)])
async def test_a_missed_slot_fires_within_the_grace_window_only(deps, make_site, late_minutes, fires):
    site = await make_site(keywords=8)
    slot = local("UTC", 2026, 11, 28, 2, 0)
    await schedule(deps.sessions, site.id, changed_at=slot - timedelta(days=1))
    service, published = scheduler_for(deps, Clock(slot + timedelta(minutes=late_minutes)), site.id)
    await service.sync()  # the scheduler comes back after being down at the slot
    await service.sync()
    assert len(published) == (1 if fires else 0)
    recorded = await slots_of(deps.sessions, site.id)
    if fires:
        assert recorded == [("2026-11-28T02:00 UTC", "fired", None)]
    else:
        assert recorded == [("2026-11-28T02:00 UTC", "skipped", "missed by 120 min (grace 60 min)")]


async def test_a_slot_during_an_active_run_is_skipped_with_the_reason(deps, make_site):
    site = await make_site(keywords=8)
    slot = local("UTC", 2026, 11, 28, 2, 0)
    await schedule(deps.sessions, site.id, changed_at=slot - timedelta(days=1))
    bus = Bus(deps)
    await bus.send(StartRun(site_id=site.id))
    from tests.support import drain_outbox

    for key, payload in await drain_outbox(deps):
        await bus.deliver(key, payload)  # the manual run is now active
    service, published = scheduler_for(deps, Clock(slot), site.id)
    await service.sync()
    assert published == []
    [(_label, action, reason)] = await slots_of(deps.sessions, site.id)
    assert action == "skipped" and reason.startswith("site has an active run (run_")
    await Bus(deps).pump()


def paris(schedule_slots) -> list[str]:
    return [s.label.removesuffix(" Europe/Paris") for s in schedule_slots]


def test_weekdays_several_times_a_day_and_days_of_the_month():
    start, end = datetime(2026, 11, 29, tzinfo=UTC), datetime(2026, 12, 6, tzinfo=UTC)  # Sunday to Sunday
    twice = Schedule("weekly", (time(17, 30), time(9, 0)), "Europe/Paris", weekdays=("thu", "mon"))
    assert paris(slots_between(twice, start, end)) == [
        "2026-11-30T09:00", "2026-11-30T17:30", "2026-12-03T09:00", "2026-12-03T17:30"]
    assert twice.describe() == "Mon, Thu at 09:00 and 17:30 (Europe/Paris)"
    monthly = Schedule("monthly", (time(6, 0),), "Europe/Paris", month_days=(31, 15, 1))
    labels = paris(slots_between(monthly, datetime(2027, 1, 31, 6, tzinfo=UTC), datetime(2027, 4, 2, tzinfo=UTC)))
    assert labels == ["2027-02-01T06:00", "2027-02-15T06:00", "2027-03-01T06:00", "2027-03-15T06:00",
                      "2027-03-31T06:00", "2027-04-01T06:00"]  # February has no 31st: skipped


def test_several_times_a_day_across_both_daylight_saving_changes():
    every = Schedule("daily", (time(1, 30), time(2, 30), time(12, 0)), "America/New_York")
    back = slots_between(every, datetime(2026, 11, 1, 4, tzinfo=UTC), datetime(2026, 11, 2, 4, tzinfo=UTC))
    assert [s.label[11:16] for s in back] == ["01:30", "02:30", "12:00"]  # 01:30 happens twice: one slot
    forward = slots_between(every, datetime(2026, 3, 8, 5, tzinfo=UTC), datetime(2026, 3, 9, 4, tzinfo=UTC))
    assert len(forward) == 3  # 02:30 does not exist that day: it fires once, an hour later
    assert len({s.at for s in forward}) == 3


def test_cron_reads_day_of_week_as_cron_does_and_refuses_bad_expressions():
    weekdays = Schedule("cron", (), "UTC", cron="0 9 * * 1-5")
    days = {s.at.strftime("%a") for s in slots_between(weekdays, datetime(2026, 11, 29, tzinfo=UTC),
                                                       datetime(2026, 12, 13, tzinfo=UTC))}
    assert days == {"Mon", "Tue", "Wed", "Thu", "Fri"}  # APScheduler alone would read 1-5 as Tue-Sat
    sundays = Schedule("cron", (), "UTC", cron="0 9 * * 0,7")
    assert {s.strftime("%a") for s in sundays.next_runs(datetime(2026, 11, 30, tzinfo=UTC), 3)} == {"Sun"}
    for expression, words in [("0 9 * *", "five fields"), ("61 9 * * *", "higher than the maximum"),
                              ("*/5 * * * *", "15 minutes"), ("0 9 * * 5-2", "earlier day"),
                              ("0 9 * * xyz", "day of week"), ("0 9 31 2 *", "never fires")]:
        with pytest.raises(ScheduleError, match=words):
            check_schedule(Schedule("cron", (), "UTC", cron=expression))
    with pytest.raises(ScheduleError, match="needs a cron expression"):
        check_schedule(Schedule("cron", (), "UTC"))


async def test_a_slot_with_nothing_to_do_or_too_few_credits_is_skipped_with_the_reason(deps, make_site):
    from shared.models import Account, Site

    empty = await make_site(keywords=0)
    poor = await make_site(keywords=40, credits=10)
    slot = local("UTC", 2026, 11, 28, 2, 0)
    for site in (empty, poor):
        await schedule(deps.sessions, site.id, changed_at=slot - timedelta(days=1))
    clock = Clock(slot)
    for site in (empty, poor):
        service, published = scheduler_for(deps, clock, site.id)
        await service.sync()
        await service.fire_due(site.id)
        assert published == []
    [(_, action, reason)] = await slots_of(deps.sessions, empty.id)
    assert action == "skipped" and reason.startswith("nothing to process: 0 new keywords")
    [(_, action, reason)] = await slots_of(deps.sessions, poor.id)
    assert action == "skipped" and reason.startswith("insufficient credits: need ") and reason.endswith("balance 10")
    async with deps.sessions() as session:
        assert await session.scalar(select(AutomationRun.id).where(AutomationRun.site_id.in_([empty.id, poor.id]))) \
            is None
        assert (await session.get(Account, (await session.get(Site, poor.id)).account_id)).credits_balance == 10


async def test_two_replicas_with_several_times_a_day_start_one_run_per_slot(deps, make_site):
    site = await make_site(keywords=8)
    async with deps.sessions() as session, session.begin():
        await session.execute(update(AutomationConfig).where(AutomationConfig.site_id == site.id).values(
            is_enabled=True, frequency="daily", scheduled_times=["02:00", "14:00"],
            schedule_changed_at=local("UTC", 2026, 11, 28, 1, 0)))
    clock = Clock(local("UTC", 2026, 11, 28, 2, 0))
    first, published_1 = scheduler_for(deps, clock, site.id, "replica-1")
    second, published_2 = scheduler_for(deps, clock, site.id, "replica-2")
    for moment in (local("UTC", 2026, 11, 28, 2, 0), local("UTC", 2026, 11, 28, 14, 0)):
        clock.now = moment
        await first.sync()
        await second.sync()
        import asyncio

        await asyncio.gather(first.fire_due(site.id), second.fire_due(site.id))
        await Bus(deps).pump()
    keys = sorted(c.idempotency_key for c in published_1 + published_2)
    assert keys == [f"schedule:{site.id}:2026-11-28T02:00 UTC", f"schedule:{site.id}:2026-11-28T14:00 UTC"] or \
        keys == [f"schedule:{site.id}:2026-11-28T02:00 UTC"]  # the 14:00 slot has nothing left to do
    slots = await slots_of(deps.sessions, site.id)
    assert [label for label, _, _ in slots] == ["2026-11-28T02:00 UTC", "2026-11-28T14:00 UTC"]
    assert slots[1][1] == "fired" or slots[1][2].startswith("nothing to process")
