"""When a site's automation is next due, from its frequency, time and timezone (APScheduler's cron)."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

FREQUENCIES = ("daily", "weekly", "monthly")


def trigger_for(frequency: str, at: time, timezone: str) -> CronTrigger:
    """Daily at `at`, weekly on Mondays, monthly on the 1st, in the site's timezone (DST-aware)."""
    extra = {"daily": {}, "weekly": {"day_of_week": "mon"}, "monthly": {"day": 1}}[frequency]
    return CronTrigger(hour=at.hour, minute=at.minute, timezone=ZoneInfo(timezone), **extra)


def next_run_at(frequency: str, at: time, timezone: str, now: datetime) -> datetime | None:
    """The next slot after `now`, in UTC (as stored)."""
    slot = trigger_for(frequency, at, timezone).get_next_fire_time(None, now)
    return slot.astimezone(UTC) if slot else None
