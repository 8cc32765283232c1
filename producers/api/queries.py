"""Reads behind the API: every lookup is scoped to the caller's account (others' ids are 'not found')."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from producers.api.schemas import ConfigOut, RunDetail, RunOut, StageProgress
from shared.catalogue import BY_NUMBER, DEFAULT_BATCH_SIZES, STAGE_NUMBERS
from shared.models import ACTIVE_RUN_STATUSES, AutomationConfig, AutomationRun, RunLogLine, RunStage, Site
from shared.schedule import schedule_of


async def owned_site(session: AsyncSession, account_id: int, site_id: int) -> Site | None:
    return await session.scalar(select(Site).where(Site.id == site_id, Site.account_id == account_id))


async def owned_run(session: AsyncSession, account_id: int, run_id: str) -> AutomationRun | None:
    return await session.scalar(select(AutomationRun).join(Site, Site.id == AutomationRun.site_id)
                                .where(AutomationRun.run_id == run_id, Site.account_id == account_id))


def config_out(site: Site, config: AutomationConfig) -> ConfigOut:
    schedule = schedule_of(config, site.timezone)
    return ConfigOut(
        site_id=site.id, is_enabled=config.is_enabled, frequency=config.frequency,
        scheduled_time=min(schedule.times).strftime("%H:%M") if schedule.times else "",
        scheduled_times=[t.strftime("%H:%M") for t in sorted(set(schedule.times))],
        weekdays=list(schedule.weekdays), month_days=list(schedule.month_days), cron=config.cron,
        schedule=schedule.describe(),
        next_runs=schedule.next_runs(datetime.now(UTC), 5) if config.is_enabled else [],
        timezone=site.timezone, last_run_at=config.last_run_at, next_run_at=config.next_run_at,
        auto_publish=config.auto_publish, skip_review=config.skip_review,
        **{f"stage_{n}_batch_size": config.batch_size(n) for n in DEFAULT_BATCH_SIZES})


def run_out(run: AutomationRun) -> RunOut:
    return RunOut.model_validate(run, from_attributes=True)


async def run_detail(session: AsyncSession, run: AutomationRun) -> RunDetail:
    rows = {s.stage: s for s in (await session.scalars(select(RunStage).where(RunStage.run_id == run.id))).all()}
    stages = []
    for number in STAGE_NUMBERS:
        row = rows.get(number)
        if row is None:
            status = "pending"
        elif row.status == "completed":
            status = "completed"
        else:
            status = "failed" if run.status == "failed" else "active"
        stages.append(StageProgress(
            stage=number, name=BY_NUMBER[number].name, status=status,
            batches_done=row.batches_done if row else 0, batches_total=row.batches_total if row else 0,
            items_in=row.items_in if row else 0, items_out=row.items_out if row else 0,
            credits=row.credits if row else 0, result=run.stage_result(number)))
    return RunDetail(**run_out(run).model_dump(), stages=stages)


async def active_run(session: AsyncSession, site_id: int) -> AutomationRun | None:
    return await session.scalar(select(AutomationRun).where(AutomationRun.site_id == site_id,
                                                            AutomationRun.status.in_(ACTIVE_RUN_STATUSES)))


async def history(session: AsyncSession, site_id: int, *, status: str | None, trigger: str | None,
                  date_from: date | None, date_to: date | None, limit: int = 20) -> list[AutomationRun]:
    query = select(AutomationRun).where(AutomationRun.site_id == site_id)
    if status:
        query = query.where(AutomationRun.status == status)
    if trigger:
        query = query.where(AutomationRun.trigger == trigger)
    if date_from:
        query = query.where(AutomationRun.started_at >= datetime.combine(date_from, time.min, tzinfo=UTC))
    if date_to:
        query = query.where(AutomationRun.started_at < datetime.combine(date_to + timedelta(days=1), time.min,
                                                                        tzinfo=UTC))
    return list((await session.scalars(query.order_by(AutomationRun.started_at.desc(), AutomationRun.id.desc())
                                       .limit(limit))).all())


async def log_tail(session: AsyncSession, run: AutomationRun, lines: int, stage: int | None) -> list[str]:
    """The last `lines` lines of the run's main log, or of one stage's log."""
    query: Any = select(RunLogLine).where(RunLogLine.run_id == run.id)
    if stage:
        query = query.where(RunLogLine.stage == stage)
    rows = (await session.scalars(query.order_by(RunLogLine.id.desc()).limit(lines))).all()
    return [f"[{r.created_at:%Y-%m-%d %H:%M:%S}] {r.level} {r.message}" for r in reversed(rows)]
