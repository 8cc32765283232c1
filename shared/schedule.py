"""When a site's automation runs: its schedule (forms, times, timezone) over APScheduler's triggers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import cache
from itertools import pairwise
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, available_timezones

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

if TYPE_CHECKING:
    from shared.models import AutomationConfig

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


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FREQUENCIES = ("daily", "weekly", "monthly", "cron")
MAX_TIMES_PER_DAY = 24
MIN_CRON_GAP = timedelta(minutes=15)  # a cron expression may not start runs more often than this
_STANDARD_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")  # cron's 0-7, 0 and 7 both Sunday


class ScheduleError(ValueError):
    """A schedule that cannot be used; the message says what to change."""


@dataclass(frozen=True)
class Schedule:
    """When a site runs, in its timezone: daily, weekly on some weekdays, monthly on some days of the
    month, each at one or more times of day; or a cron expression for the rest."""

    frequency: str
    times: tuple[time, ...]
    timezone: str
    weekdays: tuple[str, ...] = ("mon",)
    month_days: tuple[int, ...] = (1,)
    cron: str | None = None

    def trigger(self) -> BaseTrigger:
        """APScheduler's trigger: DST-aware, one cron trigger per time of day (a single trigger with an
        hour list and a minute list would fire at every combination of the two)."""
        zone = ZoneInfo(self.timezone)
        if self.frequency == "cron":
            return cron_trigger(self.cron or "", zone)
        days: dict[str, str] = {"daily": {}, "weekly": {"day_of_week": ",".join(self.weekdays)},
                                "monthly": {"day": ",".join(map(str, sorted(self.month_days)))}}[self.frequency]
        triggers = [CronTrigger(hour=at.hour, minute=at.minute, timezone=zone, **days)
                    for at in sorted(set(self.times))]
        return triggers[0] if len(triggers) == 1 else OrTrigger(triggers)

    def next_runs(self, now: datetime, count: int = 5) -> list[datetime]:
        """The next `count` run times after `now`, in UTC; a wall-clock time repeated when clocks go
        back runs once (the scheduler names slots by local time)."""
        trigger, zone = self.trigger(), ZoneInfo(self.timezone)
        found: list[datetime] = []
        local_names: set[str] = set()
        moment = trigger.get_next_fire_time(None, now + timedelta(microseconds=1))
        while moment is not None and len(found) < count:
            name = f"{moment.astimezone(zone):%Y-%m-%dT%H:%M}"
            if name not in local_names:
                local_names.add(name)
                found.append(moment.astimezone(UTC))
            moment = fire_time_after(trigger, moment)
        return found

    def describe(self) -> str:
        """In words, e.g. "Mon, Thu at 09:00 and 17:30 (Europe/Paris)"."""
        if self.frequency == "cron":
            return f"cron '{self.cron}' ({self.timezone})"
        at = " and ".join(t.strftime("%H:%M") for t in sorted(set(self.times)))
        when = {"daily": "every day",
                "weekly": ", ".join(d.capitalize() for d in sorted(set(self.weekdays), key=WEEKDAYS.index)),
                "monthly": "on day " + ", ".join(map(str, sorted(set(self.month_days)))) + " of the month"}
        return f"{when[self.frequency]} at {at} ({self.timezone})"


def fire_time_after(trigger: BaseTrigger, moment: datetime) -> datetime | None:
    """The next fire time strictly after `moment`. APScheduler 3.11's cron trigger can answer the same
    or an earlier instant inside a repeated DST hour, so the search start steps forward a minute at a
    time until it moves on; an or-trigger is asked per part, so one stuck part hides no other's slot."""
    if isinstance(trigger, OrTrigger):
        times = [t for t in (fire_time_after(part, moment) for part in trigger.triggers) if t is not None]
        return min(times, default=None)
    search = moment + timedelta(seconds=1)
    for _ in range(3 * 24 * 60):
        following: datetime | None = trigger.get_next_fire_time(None, search)
        if following is None or following > moment:
            return following
        search += timedelta(minutes=1)
    raise RuntimeError(f"trigger does not advance past {moment.isoformat()}")


def _day_of_week(field: str) -> str:
    """Cron's day-of-week field (0 or 7 Sunday, 1 Monday ... names too) as APScheduler 3 reads it: its
    own numbers start at Monday, so "1-5" would silently mean Tuesday to Saturday."""
    days: set[str] = set()
    for part in field.lower().split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            first, last = 0, 6
        elif "-" in body:
            low, high = body.split("-", 1)
            first, last = _day_number(low), _day_number(high)
        else:
            first = last = _day_number(body)
            if step_text:
                last = 6
        if step < 1 or first > last:
            raise ScheduleError(f"day of week {part!r}: a range must go from the earlier day to the later one")
        days.update(_STANDARD_DAYS[n] for n in range(first, last + 1, step))
    return ",".join(d for d in WEEKDAYS if d in days)


def _day_number(token: str) -> int:
    if token in _STANDARD_DAYS:
        return _STANDARD_DAYS.index(token)
    if token.isdigit() and int(token) <= 7:
        return int(token)
    raise ScheduleError(f"day of week {token!r}: use 0-7 (0 and 7 are Sunday) or mon ... sun")


def cron_trigger(expression: str, zone: ZoneInfo) -> CronTrigger:
    """A standard five-field cron expression (minute hour day-of-month month day-of-week)."""
    fields = expression.split()
    if len(fields) != 5:
        raise ScheduleError("cron needs five fields: minute hour day-of-month month day-of-week, e.g. '0 9 * * 1-5'")
    minute, hour, day, month, weekday = fields
    try:
        return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=_day_of_week(weekday),
                           timezone=zone)
    except ScheduleError:
        raise
    except ValueError as error:
        raise ScheduleError(f"cron {expression!r}: {error}") from None


def check_schedule(schedule: Schedule) -> None:
    """Raise ScheduleError naming what is wrong: an unknown form, empty lists, too many times, a cron
    expression that does not parse, never fires, or fires more often than every 15 minutes."""
    if schedule.frequency not in FREQUENCIES:
        raise ScheduleError(f"frequency must be one of {', '.join(FREQUENCIES)}")
    if schedule.frequency == "cron":
        if not schedule.cron:
            raise ScheduleError("frequency 'cron' needs a cron expression")
        runs = Schedule("cron", (), schedule.timezone, cron=schedule.cron).next_runs(datetime.now(UTC), 50)
        if not runs:
            raise ScheduleError(f"cron {schedule.cron!r} never fires")
        gaps = [b - a for a, b in pairwise(runs)]
        if gaps and min(gaps) < MIN_CRON_GAP:
            raise ScheduleError(f"cron {schedule.cron!r} starts runs less than 15 minutes apart; a site runs at most "
                                "every 15 minutes")
        return
    if not schedule.times:
        raise ScheduleError("give at least one time of day")
    if len(set(schedule.times)) > MAX_TIMES_PER_DAY:
        raise ScheduleError(f"at most {MAX_TIMES_PER_DAY} times of day")
    if schedule.frequency == "weekly" and not schedule.weekdays:
        raise ScheduleError("a weekly schedule needs at least one weekday")
    if schedule.frequency == "monthly" and not schedule.month_days:
        raise ScheduleError("a monthly schedule needs at least one day of the month")


def next_run_at(schedule: Schedule, now: datetime) -> datetime | None:
    """The next slot after `now`, in UTC (as stored)."""
    runs = schedule.next_runs(now, 1)
    return runs[0] if runs else None


def parse_time(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def schedule_of(config: AutomationConfig, timezone: str) -> Schedule:
    """A site's schedule as stored: `scheduled_times` when set, else the seed's one `scheduled_time`."""
    times = tuple(parse_time(t) for t in (config.scheduled_times or [])) or (config.scheduled_time,)
    return Schedule(frequency=config.frequency, times=times, timezone=timezone,
                    weekdays=tuple(config.weekdays or ("mon",)), month_days=tuple(config.month_days or (1,)),
                    cron=config.cron)
