"""The seed's nine endpoints under /api/v1/automation/, plus credits, run detail and the stage catalogue.

Write endpoints publish commands (the pipeline does the work); reads come from the database.
Every id is checked against the caller's account: another account's site or run is a 404.
"""

from __future__ import annotations

import asyncio
import time as clock
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from producers.api import queries
from producers.api.auth import UNAUTHORIZED, current_account, request_session
from producers.api.schemas import (
    ConfigOut,
    ConfigUpdate,
    Credits,
    CurrentRun,
    Estimate,
    History,
    LogLines,
    Refusal,
    RunAccepted,
    RunDetail,
    RunOut,
    ScheduleFields,
    SchedulePreview,
    StageOut,
    Stages,
)
from producers.client import AutomationClient
from shared.accounts import get_or_create_config
from shared.catalogue import LAST_STAGE, STAGES
from shared.credits import estimate_for_site
from shared.events import INT4_MAX, RUN_ID_PATTERN, PauseRun, ResumeRun, StartRun
from shared.models import Account, AutomationConfig, AutomationRun, RunRejection, Site
from shared.schedule import WEEKDAYS, Schedule, ScheduleError, check_schedule, next_run_at, parse_time, schedule_of
from shared.settings import Settings
from shared.start_policy import start_refusal

router = APIRouter(prefix="/api/v1/automation", tags=["automation"], responses=UNAUTHORIZED)
WAIT_FOR_RUN_SECONDS = 10.0
WAIT_FOR_STATE_SECONDS = 5.0
RUN_CONTROL_DOWN = ("run control is not consuming run commands (the control process is down), so nothing was "
                    "started or queued; start it (`automation consume control`) and try again")

SiteId = Annotated[int, Query(ge=1, le=INT4_MAX, description="The site's id.")]
RunId = Annotated[str, Query(pattern=RUN_ID_PATTERN, description="The run's id.")]
AccountDep = Annotated[Account, Depends(current_account)]
LOG_LINE_CHOICES = (50, 100, 200, 500)


def _log_line_choice(value: int) -> int:
    if value not in LOG_LINE_CHOICES:
        raise ValueError(f"must be one of {', '.join(map(str, LOG_LINE_CHOICES))}")
    return value


# Query first: after a validator, its bounds are neither enforced nor shown as minimum/maximum in OpenAPI.
LogLineCount = Annotated[int, Query(ge=min(LOG_LINE_CHOICES), le=max(LOG_LINE_CHOICES),
                                    json_schema_extra={"enum": list(LOG_LINE_CHOICES)},
                                    description="How many of the last lines: 50, 100, 200 or 500."),
                         AfterValidator(_log_line_choice)]


SessionDep = Annotated[AsyncSession, Depends(request_session)]


def client_of(request: Request) -> AutomationClient:
    return request.app.state.client  # type: ignore[no-any-return]


def settings_of(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def site_or_404(session: AsyncSession, account: Account, site_id: int) -> Site:
    site = await queries.owned_site(session, account.id, site_id)
    if site is None:
        raise HTTPException(404, f"site {site_id} not found")
    return site


async def run_or_404(session: AsyncSession, account: Account, run_id: str) -> AutomationRun:
    run = await queries.owned_run(session, account.id, run_id)
    if run is None:
        raise HTTPException(404, f"run {run_id} not found")
    return run


@router.get("/config/", response_model=ConfigOut, responses={404: {"model": Refusal}})
async def get_config(site_id: SiteId, account: AccountDep, session: SessionDep) -> ConfigOut:
    site = await site_or_404(session, account, site_id)
    config = await get_or_create_config(session, site.id)
    await session.commit()
    return queries.config_out(site, config)


SCHEDULE_FIELDS = ("frequency", "scheduled_times", "weekdays", "month_days", "cron")


def _schedule_with(config: AutomationConfig, timezone: str, fields: ScheduleFields) -> Schedule:
    """The config's schedule with `fields` applied, checked: 422 naming what to change."""
    changes = fields.model_dump(exclude_none=True, include=set(SCHEDULE_FIELDS))
    current = schedule_of(config, fields.timezone or timezone)
    times = tuple(parse_time(t) for t in changes["scheduled_times"]) if "scheduled_times" in changes \
        else current.times
    schedule = Schedule(frequency=changes.get("frequency", current.frequency), times=times,
                        timezone=current.timezone, weekdays=tuple(changes.get("weekdays", current.weekdays)),
                        month_days=tuple(changes.get("month_days", current.month_days)),
                        cron=changes.get("cron", current.cron))
    try:
        check_schedule(schedule)
    except ScheduleError as error:
        raise HTTPException(422, str(error)) from None
    return schedule


@router.put("/update_config/", response_model=ConfigOut, responses={404: {"model": Refusal}, 422: {"model": Refusal}})
async def update_config(site_id: SiteId, update: ConfigUpdate, account: AccountDep, session: SessionDep) -> ConfigOut:
    site = await site_or_404(session, account, site_id)
    config = await get_or_create_config(session, site.id)
    if update.scheduled_time is not None and update.scheduled_times is None:
        update = update.model_copy(update={"scheduled_times": [update.scheduled_time]})
    schedule = _schedule_with(config, site.timezone, update)
    before = (config.is_enabled, schedule_of(config, site.timezone))
    changes = update.model_dump(exclude_none=True, exclude={"scheduled_time", *SCHEDULE_FIELDS})
    if "timezone" in changes:
        site.timezone = changes.pop("timezone")
    for field, value in changes.items():
        setattr(config, field, value)
    config.frequency, config.cron = schedule.frequency, schedule.cron
    config.scheduled_times = [t.strftime("%H:%M") for t in sorted(set(schedule.times))]
    config.scheduled_time = min(schedule.times) if schedule.times else config.scheduled_time
    config.weekdays = sorted(set(schedule.weekdays), key=WEEKDAYS.index)
    config.month_days = sorted(set(schedule.month_days))
    if (config.is_enabled, schedule) != before:
        config.schedule_changed_at = datetime.now(UTC)  # earlier slots are not "missed" by the scheduler
    config.next_run_at = next_run_at(schedule, datetime.now(UTC)) if config.is_enabled else None
    await session.commit()
    return queries.config_out(site, config)


@router.post("/schedule_preview/", response_model=SchedulePreview,
             responses={404: {"model": Refusal}, 422: {"model": Refusal}},
             summary="The next five run times of a schedule, before saving it")
async def schedule_preview(site_id: SiteId, fields: ScheduleFields, account: AccountDep,
                           session: SessionDep) -> SchedulePreview:
    site = await site_or_404(session, account, site_id)
    config = await get_or_create_config(session, site.id)
    schedule = _schedule_with(config, site.timezone, fields)
    await session.rollback()
    return SchedulePreview(schedule=schedule.describe(), next_runs=schedule.next_runs(datetime.now(UTC), 5))


@router.post("/run_now/", status_code=202, response_model=RunAccepted,
             responses={402: {"model": Refusal}, 404: {"model": Refusal}, 409: {"model": Refusal},
                        503: {"model": Refusal, "description": "Run control is down: nothing was started or queued"}})
async def run_now(site_id: SiteId, request: Request, account: AccountDep, session: SessionDep
                  ) -> RunAccepted | JSONResponse:
    """202 with the run once run control has started it; 202 `queued` if control has it but has not
    answered within the wait; 503 at once, publishing nothing, when no control process is consuming
    (a command left in the queue would start a run whenever control came back, unasked by then)."""
    site = await site_or_404(session, account, site_id)
    refusal = await _start_refusal(session, site, account, settings_of(request).credit_buffer)
    await session.commit()  # end the read transaction (keeps loaded objects usable)
    if refusal is not None:
        return refusal
    client = client_of(request)
    if not await client.control_consumers():
        return JSONResponse(status_code=503, content=Refusal(detail=RUN_CONTROL_DOWN).model_dump())
    key = f"api-{uuid.uuid4().hex}"
    await client.send(StartRun(site_id=site.id, trigger="manual", requested_by=f"api:account-{account.id}",
                               idempotency_key=key))
    deadline = clock.monotonic() + WAIT_FOR_RUN_SECONDS
    while clock.monotonic() < deadline:
        run = await session.scalar(select(AutomationRun).where(AutomationRun.site_id == site.id,
                                                               AutomationRun.idempotency_key == key))
        if run is not None:
            return RunAccepted(run_id=run.run_id, status=run.status, idempotency_key=key)
        rejection = await session.scalar(select(RunRejection).where(RunRejection.site_id == site.id,
                                                                    RunRejection.idempotency_key == key))
        if rejection is not None:
            return _refusal_from(rejection.reason, rejection.details, settings_of(request).credit_buffer)
        await session.commit()
        await asyncio.sleep(0.1)
    return RunAccepted(run_id=None, status="queued", idempotency_key=key, detail=(
        f"run control has not picked the command up within {WAIT_FOR_RUN_SECONDS:g} s; it stays queued and "
        f"takes effect when control gets to it. GET current_run/?site_id={site.id} shows the run once it "
        f"exists, with idempotency_key {key}; if none appears, the start was refused (another run, credits)."))


async def _start_refusal(session: AsyncSession, site: Site, account: Account, buffer: float) -> JSONResponse | None:
    """Run control's policy (`shared.start_policy`), answered early: 409 active run or nothing to
    process, 402 credits."""
    refusal = await start_refusal(session, site.id, account.credits_balance, buffer)
    if refusal is None:
        return None
    extra = {"buffer": round(buffer - 1, 4)} if refusal.kind == "credits" else {}
    return JSONResponse(status_code=402 if refusal.kind == "credits" else 409,
                        content=Refusal(detail=refusal.reason, **refusal.details, **extra).model_dump())


def _refusal_from(reason: str, details: dict[str, object], buffer: float) -> JSONResponse:
    if reason.startswith("insufficient credits"):
        return JSONResponse(status_code=402, content=Refusal(detail=reason, buffer=round(buffer - 1, 4),
                                                             **details).model_dump())
    return JSONResponse(status_code=409, content=Refusal(detail=reason, **details).model_dump())


@router.get("/current_run/", response_model=CurrentRun, responses={404: {"model": Refusal}})
async def current_run(site_id: SiteId, account: AccountDep, session: SessionDep) -> CurrentRun:
    site = await site_or_404(session, account, site_id)
    run = await queries.active_run(session, site.id)
    return CurrentRun(run=await queries.run_detail(session, run) if run else None)


async def _wait_for_state(session: AsyncSession, run: AutomationRun, target: str) -> AutomationRun:
    deadline = clock.monotonic() + WAIT_FOR_STATE_SECONDS
    while clock.monotonic() < deadline:
        await session.commit()
        fresh = await session.scalar(select(AutomationRun).where(AutomationRun.id == run.id)
                                     .execution_options(populate_existing=True))
        if fresh is not None and fresh.status == target:
            return fresh
        await asyncio.sleep(0.1)
    return run


@router.post("/pause/", response_model=RunOut, responses={404: {"model": Refusal}, 409: {"model": Refusal}})
async def pause(run_id: RunId, request: Request, account: AccountDep, session: SessionDep) -> RunOut | JSONResponse:
    run = await run_or_404(session, account, run_id)
    if run.status != "running":
        return JSONResponse(status_code=409, content=Refusal(detail=f"run is {run.status}").model_dump())
    await client_of(request).send(PauseRun(run_id=run.run_id, reason=f"paused by account {account.id}"))
    return queries.run_out(await _wait_for_state(session, run, "paused"))


@router.post("/resume/", response_model=RunOut, responses={404: {"model": Refusal}, 409: {"model": Refusal}})
async def resume(run_id: RunId, request: Request, account: AccountDep, session: SessionDep) -> RunOut | JSONResponse:
    run = await run_or_404(session, account, run_id)
    if run.status not in ("paused", "failed"):
        return JSONResponse(status_code=409, content=Refusal(detail=f"run is {run.status}").model_dump())
    if run.status == "failed" and (active := await queries.active_run(session, run.site_id)) is not None:
        return JSONResponse(status_code=409, content=Refusal(detail="site has an active run",
                                                             active_run_id=active.run_id).model_dump())
    await client_of(request).send(ResumeRun(run_id=run.run_id))
    return queries.run_out(await _wait_for_state(session, run, "running"))


@router.get("/history/", response_model=History, responses={404: {"model": Refusal}})
async def history(site_id: SiteId, account: AccountDep, session: SessionDep,
                  status: Literal["running", "paused", "completed", "failed"] | None = None,
                  trigger: Literal["manual", "scheduled"] | None = None,
                  date_from: date | None = None, date_to: date | None = None) -> History:
    site = await site_or_404(session, account, site_id)
    runs = await queries.history(session, site.id, status=status, trigger=trigger, date_from=date_from,
                                 date_to=date_to)
    return History(runs=[queries.run_out(r) for r in runs])


@router.get("/logs/", response_model=LogLines, responses={404: {"model": Refusal}})
async def logs(run_id: RunId, account: AccountDep, session: SessionDep,
               lines: LogLineCount = 100,
               stage: Annotated[int | None, Query(ge=1, le=LAST_STAGE, description="One stage's log only.")] = None
               ) -> LogLines:
    run = await run_or_404(session, account, run_id)
    return LogLines(run_id=run.run_id, stage=stage, lines=await queries.log_tail(session, run, lines, stage))


@router.get("/estimate/", response_model=Estimate, responses={404: {"model": Refusal}})
async def estimate(site_id: SiteId, request: Request, account: AccountDep, session: SessionDep) -> Estimate:
    site = await site_or_404(session, account, site_id)
    buffer = settings_of(request).credit_buffer
    result = await estimate_for_site(session, site.id)
    required = result.required(buffer)
    refusal = await start_refusal(session, site.id, account.credits_balance, buffer)
    reason = None if refusal is None else "insufficient credits" if refusal.kind == "credits" else refusal.reason
    return Estimate(site_id=site.id, per_stage=result.per_stage, total=result.total, buffer=round(buffer - 1, 4),
                    required=required, balance=account.credits_balance, can_start=reason is None, reason=reason)


@router.get("/stages", response_model=Stages, summary="The stage catalogue")
async def stages(account: AccountDep) -> Stages:
    """The pipeline's stages in order, as the consumers run them: names, what each takes and writes, default
    batch sizes and credit rates (the dashboard names its stage cards, history and estimate from this)."""
    return Stages(stages=[StageOut(**stage.describe()) for stage in STAGES])


@router.get("/credits/", response_model=Credits)
async def credits(account: AccountDep) -> Credits:
    return Credits(account_id=account.id, credits_balance=account.credits_balance)


@router.get("/runs/{run_id}", response_model=RunDetail, responses={404: {"model": Refusal}})
async def run_detail(run_id: Annotated[str, Path(pattern=RUN_ID_PATTERN, description="The run's id.")],
                     account: AccountDep, session: SessionDep) -> RunDetail:
    return await queries.run_detail(session, await run_or_404(session, account, run_id))
