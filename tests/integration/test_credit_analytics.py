"""Credit analytics against the ledger of a real run, and the forecast against synthetic histories.

Analytics must equal the ledger's sums exactly, by every grouping and in CSV. The forecast is checked
on three 60-day keyword-arrival histories continued 30 days (steady, growing, weekly-seasonal): its
30-day spend against what the same arrivals would cost. Errors measured (printed with -s):
steady -1.3%, growing -1.3%, seasonal +1.0% (a trend fitted to four whole weeks' rates).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import func, select, update

from shared import analytics
from shared.api_keys import create_api_key
from shared.credits import grant
from shared.events import StartRun
from shared.models import Account, AutomationConfig, AutomationRun, CreditLedger, Keyword, Site
from tests.support import Bus

BASE = "/api/v1/automation/credits"
QUICK = {"stage_4_batch_size": 8, "stage_5_batch_size": 8, "stage_6_batch_size": 16}


async def test_usage_and_balance_equal_the_ledger(client, deps, make_site):
    site = await make_site(keywords=16, credits=50_000, **QUICK)
    bus = Bus(deps)
    await bus.send(StartRun(site_id=site.id))
    await bus.pump()
    async with deps.sessions() as session, session.begin():
        await grant(session, site.account_id, 1234, "top-up by the test")
        headers = {"X-API-Key": await create_api_key(session, site.account_id)}
    async with deps.sessions() as session:
        charged = -int(await session.scalar(select(func.sum(CreditLedger.delta)).where(
            CreditLedger.account_id == site.account_id, CreditLedger.delta < 0)))
        by_stage = dict((str(s), -int(d)) for s, d in (await session.execute(
            select(CreditLedger.stage, func.sum(CreditLedger.delta)).where(
                CreditLedger.account_id == site.account_id, CreditLedger.delta < 0)
            .group_by(CreditLedger.stage))).all())
        run_id = await session.scalar(select(AutomationRun.run_id).where(AutomationRun.site_id == site.id))
    assert charged > 0
    for group, keys in (("day", None), ("stage", set(by_stage)), ("site", {str(site.id)}), ("run", {run_id})):
        answer = (await client.get(f"{BASE}/usage/", params={"group": group}, headers=headers)).json()
        assert answer["total"] == charged and sum(r["credits"] for r in answer["rows"]) == charged
        if keys is not None:
            assert {r["key"] for r in answer["rows"]} == keys
    stages = (await client.get(f"{BASE}/usage/", params={"group": "stage", "site_id": site.id}, headers=headers)).json()
    assert {r["key"]: r["credits"] for r in stages["rows"]} == by_stage
    downloaded = await client.get(f"{BASE}/usage/", params={"group": "stage", "format": "csv"}, headers=headers)
    assert downloaded.headers["content-type"].startswith("text/csv")
    assert {r["key"]: int(r["credits"]) for r in csv.DictReader(io.StringIO(downloaded.text))} == by_stage

    points = (await client.get(f"{BASE}/balance/", params={"days": 3}, headers=headers)).json()["points"]
    assert points[-1]["balance"] == 50_000 - charged + 1234
    assert points[-1]["charged"] == charged and points[-1]["added"] == 50_000 + 1234  # the opening grant too
    assert points[-2]["balance"] == 0  # the account did not exist the day before
    [top_up] = [t for t in (await client.get(f"{BASE}/top_ups/", headers=headers)).json()["top_ups"]
                if t["reason"] == "top-up by the test"]
    assert top_up["credits"] == 1234
    assert (await client.get(f"{BASE}/usage/", params={"site_id": 2**31 - 1}, headers=headers)).status_code == 404


HISTORY_DAYS, HORIZON_DAYS, CREDITS_PER_KEYWORD = 60, 30, 4.0
Arrivals = Callable[[int], int]  # day index (0 = 60 days ago) -> keywords that arrived that day
HISTORIES: dict[str, Arrivals] = {
    "steady": lambda day: 20,
    "growing": lambda day: 5 + day // 3,
    "seasonal": lambda day: 30 if day % 7 < 5 else 0,  # weekdays only
}


async def synthetic_site(deps, make_site, arrivals: Arrivals, now: datetime) -> int:
    """A site with a daily 02:00 schedule, 60 days of keyword arrivals (all processed), and one completed
    run that cost CREDITS_PER_KEYWORD per keyword."""
    site = await make_site(keywords=0, credits=10**7)
    async with deps.sessions() as session, session.begin():
        rows = []
        for day in range(HISTORY_DAYS):
            at = now - timedelta(days=HISTORY_DAYS - day) + timedelta(hours=12)
            rows += [Keyword(site_id=site.id, keyword=f"kw {day} {n}", volume=10, status="clustered", created_at=at)
                     for n in range(arrivals(day))]
        session.add_all(rows)
        session.add(AutomationRun(run_id=f"run_synthetic_{site.id}", site_id=site.id, status="completed",
                                  current_stage=7, total_credits_used=int(100 * CREDITS_PER_KEYWORD),
                                  stage_1_result={"items_in": 100}))
        await session.execute(update(AutomationConfig).where(AutomationConfig.site_id == site.id).values(
            is_enabled=True, frequency="daily", scheduled_time=time(2, 0), scheduled_times=["02:00"]))
    return site.id


@pytest.mark.parametrize("name", list(HISTORIES))
async def test_forecast_error_on_synthetic_histories(deps, make_site, name):
    arrivals = HISTORIES[name]
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    site_id = await synthetic_site(deps, make_site, arrivals, now)
    async with deps.sessions() as session:
        account_id = (await session.get(Site, site_id)).account_id
        result = await analytics.forecast(session, account_id, now, 1.2)
    truth = sum(math.ceil(arrivals(HISTORY_DAYS + day) * CREDITS_PER_KEYWORD) for day in range(HORIZON_DAYS))
    error = (result.spend_30_days - truth) / truth
    print(f"forecast {name}: {result.spend_30_days} vs {truth} credits over 30 days, error {error:+.1%}")
    history = result.sites[site_id]
    assert history.credits_per_keyword == CREDITS_PER_KEYWORD and history.runs_measured == 1
    assert len(result.slots) == 30 and all(s.affordable for s in result.slots) and result.runs_out_at is None
    bound = {"steady": 0.03, "seasonal": 0.05, "growing": 0.05}[name]
    assert abs(error) <= bound


async def test_forecast_finds_the_day_the_balance_runs_out(deps, make_site):
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    site_id = await synthetic_site(deps, make_site, HISTORIES["steady"], now)
    async with deps.sessions() as session, session.begin():
        site = await session.get(Site, site_id)
        await session.execute(update(Account).where(Account.id == site.account_id).values(credits_balance=1000))
    async with deps.sessions() as session:
        result = await analytics.forecast(session, site.account_id, now, 1.2)
    # 20 keywords a day at 4 credits: 80 a run (the first, 14 h after now, 47); each needs 1.2x its cost left
    first, *rest = result.slots
    assert first.credits == math.ceil(20 * 14 / 24 * 4) and {s.credits for s in rest[:10]} <= {80, 81}
    paid = [s for s in result.slots if s.affordable]
    assert len(paid) == 12 and result.runs_out_at == result.slots[12].at
    assert 1000 - sum(s.credits for s in paid) == paid[-1].balance_after < math.ceil(80 * 1.2)
    assert result.spend_7_days == sum(s.credits for s in result.slots[:7])  # the slots of the first 7 days
