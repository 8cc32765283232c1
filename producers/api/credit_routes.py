"""Credit analytics and forecast under /api/v1/automation/credits/: usage by day, stage, site or run,
the balance over time, top-ups, and when the balance runs out at the current schedules. Every table
also downloads as CSV (`format=csv`), the same rows as the JSON."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from producers.api.auth import UNAUTHORIZED, current_account, request_session
from producers.api.schemas import Refusal
from shared import analytics
from shared.models import Account, Site

router = APIRouter(prefix="/api/v1/automation/credits", tags=["credits"], responses=UNAUTHORIZED)
AccountDep = Annotated[Account, Depends(current_account)]
SessionDep = Annotated[AsyncSession, Depends(request_session)]
Days = Annotated[int, Query(ge=1, le=366, description="How many days back, today included.")]
Format = Annotated[Literal["json", "csv"], Query(description="json, or csv to download the same rows.")]
CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "The rows (JSON), or the same rows as CSV."}}


class UsageRowOut(BaseModel):
    key: str = Field(description="The day (YYYY-MM-DD), stage number, site id or run id.")
    credits: int
    charges: int = Field(description="Ledger rows (one per batch).")


class Usage(BaseModel):
    group: str
    since: datetime
    total: int
    rows: list[UsageRowOut]


class BalancePointOut(BaseModel):
    day: date
    balance: int = Field(description="At the end of the day.")
    charged: int
    added: int


class BalanceHistory(BaseModel):
    points: list[BalancePointOut]


class TopUp(BaseModel):
    at: datetime
    credits: int
    reason: str


class TopUps(BaseModel):
    top_ups: list[TopUp]


class SlotOut(BaseModel):
    site_id: int
    at: datetime
    keywords: int = Field(description="Keywords expected to wait for this run.")
    credits: int
    affordable: bool = Field(description="The balance left by earlier slots covers it (with the start buffer); "
                                         "a slot that is not is skipped by the scheduler with the reason.")
    balance_after: int


class SiteHistoryOut(BaseModel):
    keywords_per_day: float
    keywords_per_day_trend: float = Field(description="Change of keywords_per_day per day (last four weeks).")
    credits_per_keyword: float
    pending_credits: int
    runs_measured: int


class ForecastOut(BaseModel):
    balance: int
    spend_7_days: int
    spend_30_days: int
    runs_out_at: datetime | None = Field(description="The first scheduled run the balance cannot pay; null: none "
                                                     "within 30 days.")
    slots: list[SlotOut]
    sites: dict[int, SiteHistoryOut]


def _csv(name: str, rows: list[dict[str, Any]], columns: list[str]) -> Response:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return Response(buffer.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


async def _own_site(session: AsyncSession, account: Account, site_id: int | None) -> None:
    if site_id is not None and await session.scalar(
            select(Site.id).where(Site.id == site_id, Site.account_id == account.id)) is None:
        raise HTTPException(404, f"site {site_id} not found")


@router.get("/usage/", response_model=Usage, responses={**CSV, 404: {"model": Refusal}})
async def usage(account: AccountDep, session: SessionDep, days: Days = 30,
                group: Annotated[Literal["day", "stage", "site", "run"], Query()] = "day",
                site_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
                format: Format = "json") -> Usage | Response:
    await _own_site(session, account, site_id)
    since = datetime.combine(date.today() - timedelta(days=days - 1), datetime.min.time(), tzinfo=UTC)
    rows = await analytics.usage(session, account.id, since, group, site_id)
    if format == "csv":
        return _csv(f"credit-usage-by-{group}", [asdict(r) for r in rows], ["key", "credits", "charges"])
    return Usage(group=group, since=since, total=sum(r.credits for r in rows),
                 rows=[UsageRowOut(**asdict(r)) for r in rows])


@router.get("/balance/", response_model=BalanceHistory, responses=CSV)
async def balance(account: AccountDep, session: SessionDep, days: Days = 30, format: Format = "json"
                  ) -> BalanceHistory | Response:
    points = await analytics.balance_history(session, account.id, days, datetime.now(UTC).date())
    if format == "csv":
        return _csv("credit-balance", [asdict(p) for p in points], ["day", "balance", "charged", "added"])
    return BalanceHistory(points=[BalancePointOut(**asdict(p)) for p in points])


@router.get("/top_ups/", response_model=TopUps)
async def top_ups(account: AccountDep, session: SessionDep) -> TopUps:
    rows = await analytics.top_ups(session, account.id)
    return TopUps(top_ups=[TopUp(at=r.created_at, credits=r.delta, reason=r.reason) for r in rows])


@router.get("/forecast/", response_model=ForecastOut, responses=CSV)
async def forecast(request: Request, account: AccountDep, session: SessionDep, format: Format = "json"
                   ) -> ForecastOut | Response:
    result = await analytics.forecast(session, account.id, datetime.now(UTC), request.app.state.settings.credit_buffer)
    slots = [SlotOut(**asdict(s)) for s in result.slots]
    if format == "csv":
        return _csv("credit-forecast", [s.model_dump() for s in slots],
                    ["at", "site_id", "keywords", "credits", "affordable", "balance_after"])
    return ForecastOut(balance=result.balance, spend_7_days=result.spend_7_days, spend_30_days=result.spend_30_days,
                       runs_out_at=result.runs_out_at, slots=slots,
                       sites={k: SiteHistoryOut(**asdict(v)) for k, v in result.sites.items()})
