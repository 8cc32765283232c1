"""Pure slot arithmetic over APScheduler's CronTrigger (timezone- and DST-aware).

A slot is named by its local wall-clock time; the repeated hour when clocks go back is one
slot even though the trigger yields two instants, and a time that does not exist when clocks
go forward fires once, an hour later in wall-clock terms (APScheduler's behaviour).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from shared.schedule import Schedule, fire_time_after


@dataclass(frozen=True)
class Slot:
    at: datetime  # the instant (aware)
    label: str  # local wall-clock name, e.g. "2026-11-01T01:30 America/New_York"


def slot_label(at: datetime, timezone: str) -> str:
    return f"{at.astimezone(ZoneInfo(timezone)):%Y-%m-%dT%H:%M} {timezone}"


def slots_between(schedule: Schedule, start: datetime, end: datetime) -> list[Slot]:
    """Every slot in (start, end], oldest first, each label once."""
    trigger, timezone = schedule.trigger(), schedule.timezone
    slots: list[Slot] = []
    seen: set[str] = set()
    moment = trigger.get_next_fire_time(None, start + timedelta(microseconds=1))
    while moment is not None and moment <= end:
        label = slot_label(moment, timezone)
        if label not in seen:
            seen.add(label)
            slots.append(Slot(at=moment, label=label))
        moment = fire_time_after(trigger, moment)
    return slots
