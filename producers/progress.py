"""Watching a run from the database: live progress lines and the closing per-stage summary."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.catalogue import BY_NUMBER, STAGE_NUMBERS
from shared.models import AutomationRun, RunStage


async def snapshot(sessions: async_sessionmaker[AsyncSession], run_id: str
                   ) -> tuple[AutomationRun | None, dict[int, RunStage]]:
    async with sessions() as session:
        run = await session.scalar(select(AutomationRun).where(AutomationRun.run_id == run_id))
        if run is None:
            return None, {}
        stages = (await session.scalars(select(RunStage).where(RunStage.run_id == run.id))).all()
        return run, {s.stage: s for s in stages}


def progress_line(run: AutomationRun, stages: dict[int, RunStage], elapsed: float) -> str:
    parts = []
    for number in STAGE_NUMBERS:
        stage = stages.get(number)
        if stage is None:
            parts.append(f"S{number} ⏳")
        elif stage.status == "completed":
            parts.append(f"S{number} ✅")
        else:
            parts.append(f"S{number} 🔄 {stage.batches_done}/{stage.batches_total}")
    return f"[{elapsed:6.1f}s] {run.status:<9} {'  '.join(parts)}  credits {run.total_credits_used:,}"


async def find_run_id(sessions: async_sessionmaker[AsyncSession], site_id: int, idempotency_key: str,
                      timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with sessions() as session:
            run_id = await session.scalar(select(AutomationRun.run_id).where(
                AutomationRun.site_id == site_id, AutomationRun.idempotency_key == idempotency_key))
        if run_id:
            return run_id
        await asyncio.sleep(0.2)
    return None


async def watch(sessions: async_sessionmaker[AsyncSession], run_id: str, *, timeout: float,
                still_ok: Callable[[], bool] = lambda: True, echo: Callable[[str], None] = print,
                every: float = 0.5) -> AutomationRun | None:
    """Print a line whenever the run changes; return it once completed, failed or paused."""
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < timeout and still_ok():
        run, stages = await snapshot(sessions, run_id)
        if run is not None:
            line = progress_line(run, stages, time.monotonic() - started)
            if line.split("] ", 1)[1] != last:
                echo(line)
                last = line.split("] ", 1)[1]
            if run.status in ("completed", "failed", "paused"):
                return run
        await asyncio.sleep(every)
    return None


def summary(run: AutomationRun) -> str:
    rows = [f"{'stage':<28}{'items in':>10}{'items out':>11}{'batches':>9}{'credits':>9}"]
    for number in STAGE_NUMBERS:
        result = run.stage_result(number) or {}
        rows.append(f"{number} {BY_NUMBER[number].name:<26}{result.get('items_in', '-'):>10}"
                    f"{result.get('items_out', '-'):>11}{result.get('batches', '-'):>9}{result.get('credits', '-'):>9}")
    rows.append(f"{'total credits used':<58}{run.total_credits_used:>9}")
    return "\n".join(rows)
