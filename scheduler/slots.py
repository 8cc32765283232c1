"""Pure slot arithmetic over APScheduler's CronTrigger (timezone- and DST-aware).

A slot is named by its local wall-clock time; the repeated hour when clocks go back is one
slot even though the trigger yields two instants, and a time that does not exist when clocks
go forward fires once, an hour later in wall-clock terms (APScheduler's behaviour).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from shared.schedule import trigger_for


@dataclass(frozen=True)
class Slot:
    at: datetime  # the instant (aware)
    label: str  # local wall-clock name, e.g. "2026-11-01T01:30 America/New_York"


def slot_label(at: datetime, timezone: str) -> str:
    return f"{at.astimezone(ZoneInfo(timezone)):%Y-%m-%dT%H:%M} {timezone}"


def slots_between(frequency: str, at: time, timezone: str, start: datetime, end: datetime) -> list[Slot]:
    """Every slot in (start, end], oldest first, each label once."""
    trigger = trigger_for(frequency, at, timezone)
    slots: list[Slot] = []
    seen: set[str] = set()
    moment = trigger.get_next_fire_time(None, start + timedelta(microseconds=1))
    while moment is not None and moment <= end:
        label = slot_label(moment, timezone)
        if label not in seen:
            seen.add(label)
            slots.append(Slot(at=moment, label=label))
        moment = _after(trigger, moment)
    return slots


def _after(trigger: CronTrigger, moment: datetime) -> datetime | None:
    """The next fire time strictly after `moment`. APScheduler 3.11 can answer the same or an
    earlier instant inside a repeated DST hour, so step the search start forward until it moves on."""
    search = moment + timedelta(seconds=1)
    for _ in range(48):
        following: datetime | None = trigger.get_next_fire_time(None, search)
        if following is None or following > moment:
            return following
        search += timedelta(hours=1)
    raise RuntimeError(f"cron trigger does not advance past {moment.isoformat()}")
