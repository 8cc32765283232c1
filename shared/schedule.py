"""When a site's automation is next due, from its frequency, time and timezone (APScheduler's cron)."""

from __future__ import annotations

from datetime import UTC, datetime, time
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from apscheduler.triggers.cron import CronTrigger

# Files beside the zones in /usr/share/zoneinfo that available_timezones() lists on some systems: loadable,
# but no place. "localtime" follows whatever zone the machine runs in, "posixrules" is the POSIX default
# rule, "Factory" is the "-00" zone of an unconfigured system; a site set to one would run at nobody's time.
NOT_PLACES = frozenset({"localtime", "posixrules", "Factory"})


@cache
def _zones() -> frozenset[str]:
    """Read once per process: it walks the zoneinfo directories (a tzdata upgrade needs a restart anyway)."""
    return frozenset(available_timezones()) - NOT_PLACES


def is_iana_zone(name: str) -> bool:
    """True for an IANA zone name (Europe/Paris, America/Argentina/Buenos_Aires, UTC) that ZoneInfo loads;
    False for the zone files that name no place and for paths (posix/..., ../../etc/localtime)."""
    return name in _zones()


def iana_zone_error(name: str) -> str:
    """The message a refused timezone gets, the same from the API and the CLI."""
    return f"{name!r} is not an IANA timezone name; use one such as Europe/Paris, America/New_York or UTC"


def trigger_for(frequency: str, at: time, timezone: str) -> CronTrigger:
    """Daily at `at`, weekly on Mondays, monthly on the 1st, in the site's timezone (DST-aware)."""
    fields: dict[str, dict[str, str | int]] = {"daily": {}, "weekly": {"day_of_week": "mon"}, "monthly": {"day": 1}}
    extra = fields[frequency]
    return CronTrigger(hour=at.hour, minute=at.minute, timezone=ZoneInfo(timezone), **extra)


def next_run_at(frequency: str, at: time, timezone: str, now: datetime) -> datetime | None:
    """The next slot after `now`, in UTC (as stored)."""
    slot = trigger_for(frequency, at, timezone).get_next_fire_time(None, now)
    return slot.astimezone(UTC) if slot else None
