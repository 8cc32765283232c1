"""Credit analytics and forecast, read from the ledger and the sites' history.

Usage is the ledger's charges grouped by day, stage, site or run; the balance over time is the
current balance walked back through the ledger, so both always equal the ledger's sums exactly.

The forecast answers "when do I run out": for every scheduled slot of the account's enabled sites
in the horizon, the expected cost is the keywords that will be waiting then (those eligible now for
the first slot, plus the site's recent arrival rate times the time since the previous slot) times
the credits the site's runs have cost per keyword (the seed's rates carried through the site's
yields where it has no run yet). Slots are paid in time order from the balance; the first one the
balance cannot cover (with the start buffer) is the day the balance runs out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from sqlalchemy import Date, Integer, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.credits import estimate_for_site, estimate_from_counts, site_yields
from shared.models import Account, AutomationConfig, AutomationRun, CreditLedger, Keyword, Site
from shared.schedule import ScheduleError, schedule_of

Grouping = Literal["day", "stage", "site", "run"]
ARRIVAL_WINDOW = timedelta(days=28)  # four whole weeks: a weekly cycle averages out of the trend
HISTORY_RUNS = 5  # completed runs whose cost per keyword is averaged
MAX_SLOTS_PER_SITE = 2000


@dataclass(frozen=True)
class UsageRow:
    key: str
    credits: int
    charges: int


async def usage(session: AsyncSession, account_id: int, since: datetime, group: Grouping,
                site_id: int | None = None) -> list[UsageRow]:
    """Credits charged (positive numbers) since `since`, grouped; a site filter keeps that site's runs."""
    key = {"day": cast(func.date_trunc("day", CreditLedger.created_at), Date),
           "stage": CreditLedger.stage, "site": AutomationRun.site_id, "run": AutomationRun.run_id}[group]
    query = (select(key, -func.sum(CreditLedger.delta), func.count())
             .select_from(CreditLedger).outerjoin(AutomationRun, AutomationRun.id == CreditLedger.run_id)
             .where(CreditLedger.account_id == account_id, CreditLedger.delta < 0, CreditLedger.created_at >= since)
             .group_by(key).order_by(key))
    if site_id is not None:
        query = query.where(AutomationRun.site_id == site_id)
    return [UsageRow(str(k), int(c), int(n)) for k, c, n in (await session.execute(query)).all()]


@dataclass(frozen=True)
class BalancePoint:
    day: date
    balance: int = field(metadata={"doc": "The balance at the end of the day."})
    charged: int
    added: int


async def balance_history(session: AsyncSession, account_id: int, days: int, today: date) -> list[BalancePoint]:
    """End-of-day balances for the last `days` days: today's balance minus what happened after each day."""
    balance = int(await session.scalar(select(Account.credits_balance).where(Account.id == account_id)) or 0)
    first = today - timedelta(days=days - 1)
    day = cast(func.date_trunc("day", CreditLedger.created_at), Date)
    rows = dict((d, (int(c), int(a))) for d, c, a in (await session.execute(
        select(day, func.coalesce(-func.sum(CreditLedger.delta).filter(CreditLedger.delta < 0), 0),
               func.coalesce(func.sum(CreditLedger.delta).filter(CreditLedger.delta > 0), 0))
        .where(CreditLedger.account_id == account_id, CreditLedger.created_at >= first)
        .group_by(day))).all())
    points: list[BalancePoint] = []
    end_balance = balance
    for offset in range(days):
        current = today - timedelta(days=offset)
        charged, added = rows.get(current, (0, 0))
        points.append(BalancePoint(current, end_balance, charged, added))
        end_balance = end_balance + charged - added  # the balance at the end of the day before
    return list(reversed(points))


async def top_ups(session: AsyncSession, account_id: int, limit: int = 100) -> list[CreditLedger]:
    return list((await session.scalars(select(CreditLedger).where(
        CreditLedger.account_id == account_id, CreditLedger.delta > 0)
        .order_by(CreditLedger.id.desc()).limit(limit))).all())


@dataclass(frozen=True)
class SlotForecast:
    site_id: int
    at: datetime
    keywords: int
    credits: int
    affordable: bool
    balance_after: int


@dataclass(frozen=True)
class SiteHistory:
    """What a site's past says about its future: keywords per day now and their daily trend (a
    least-squares line over the last four weeks), and credits per keyword."""

    keywords_per_day: float
    credits_per_keyword: float
    pending_credits: int  # what a run started now would cost (the estimate)
    runs_measured: int
    keywords_per_day_trend: float = 0.0  # change of keywords_per_day per day

    def arrivals(self, start_days: float, end_days: float) -> float:
        """Keywords expected between `start_days` and `end_days` from now: the line's integral, never
        below zero (a falling trend ends at no arrivals, not negative ones)."""
        def rate(t: float) -> float:
            return max(0.0, self.keywords_per_day + self.keywords_per_day_trend * t)

        steps = max(1, math.ceil((end_days - start_days) * 4))
        width = (end_days - start_days) / steps
        return sum(rate(start_days + (i + 0.5) * width) * width for i in range(steps))


@dataclass(frozen=True)
class Forecast:
    balance: int
    spend_7_days: int
    spend_30_days: int
    runs_out_at: datetime | None
    slots: list[SlotForecast]
    sites: dict[int, SiteHistory]


async def site_history(session: AsyncSession, site_id: int, now: datetime) -> SiteHistory:
    first = await session.scalar(select(func.min(Keyword.created_at)).where(Keyword.site_id == site_id))
    window_days = max(1, min(ARRIVAL_WINDOW.days, math.floor((now - first) / timedelta(days=1)))) if first else 1
    since = now - timedelta(days=window_days)
    age = cast(func.floor(func.extract("epoch", now - Keyword.created_at) / 86400), Integer)
    counts = dict((int(a), int(n)) for a, n in (await session.execute(
        select(age, func.count()).where(Keyword.site_id == site_id, Keyword.created_at >= since,
                                        Keyword.created_at <= now).group_by(age))).all())
    daily = [counts.get(window_days - 1 - day, 0) for day in range(window_days)]  # oldest day first
    # the trend is fitted to whole weeks' rates (a weekday/weekend cycle would tilt a daily fit), at
    # each week's middle; with less than two whole weeks only the mean rate is used
    weeks = [(7 * k + 3.5, sum(daily[7 * k:7 * k + 7]) / 7) for k in range(window_days // 7)]
    if len(weeks) >= 2:
        mean_x, mean_y = sum(x for x, _ in weeks) / len(weeks), sum(y for _, y in weeks) / len(weeks)
        slope = (sum((x - mean_x) * (y - mean_y) for x, y in weeks) / sum((x - mean_x) ** 2 for x, _ in weeks))
        per_day = mean_y + slope * (7 * len(weeks) - mean_x)  # the line's value at the end of the window: now
    else:
        slope, per_day = 0.0, sum(daily) / window_days
    runs = (await session.execute(
        select(AutomationRun.total_credits_used, AutomationRun.stage_1_result)
        .where(AutomationRun.site_id == site_id, AutomationRun.status == "completed")
        .order_by(AutomationRun.id.desc()).limit(HISTORY_RUNS))).all()
    measured = [(credits, int((result or {}).get("items_in", 0))) for credits, result in runs]
    measured = [(c, k) for c, k in measured if k > 0]
    if measured:
        per_keyword = sum(c for c, _ in measured) / sum(k for _, k in measured)
    else:
        reference = estimate_from_counts({1: 1000, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0}, await site_yields(session, site_id))
        per_keyword = reference.total / 1000
    pending = (await estimate_for_site(session, site_id)).total
    return SiteHistory(max(per_day, 0.0), per_keyword, pending, len(measured), slope)


async def forecast(session: AsyncSession, account_id: int, now: datetime, buffer: float,
                   horizon: timedelta = timedelta(days=30)) -> Forecast:
    balance = int(await session.scalar(select(Account.credits_balance).where(Account.id == account_id)) or 0)
    configs = (await session.execute(
        select(AutomationConfig, Site.timezone).join(Site, Site.id == AutomationConfig.site_id)
        .where(Site.account_id == account_id, AutomationConfig.is_enabled.is_(True)))).all()
    planned: list[tuple[datetime, int, int, int]] = []  # (when, site, keywords, credits)
    histories: dict[int, SiteHistory] = {}
    for config, timezone in configs:
        try:
            runs = [t for t in schedule_of(config, timezone).next_runs(now, MAX_SLOTS_PER_SITE) if t <= now + horizon]
        except (ScheduleError, ValueError):
            continue
        history = histories[config.site_id] = await site_history(session, config.site_id, now)
        previous = now
        for index, at in enumerate(runs):
            arriving = history.arrivals((previous - now) / timedelta(days=1), (at - now) / timedelta(days=1))
            credits = math.ceil(arriving * history.credits_per_keyword) + (history.pending_credits if index == 0 else 0)
            planned.append((at, config.site_id, round(arriving), credits))
            previous = at
    slots: list[SlotForecast] = []
    left, runs_out = balance, None
    carried: dict[int, int] = {}  # a skipped slot's keywords wait for the site's next slot
    for at, site_id, keywords, credits in sorted(planned):
        credits += carried.pop(site_id, 0)
        affordable = credits == 0 or left >= math.ceil(credits * buffer)
        if affordable:
            left -= credits
        else:
            carried[site_id] = credits
            runs_out = runs_out or at
        slots.append(SlotForecast(site_id, at, keywords, credits, affordable, left))

    def spend(days: int) -> int:
        return sum(s.credits for s in slots if s.affordable and s.at <= now + timedelta(days=days))

    return Forecast(balance, spend(7), spend(30), runs_out, slots, histories)


def utc_now() -> datetime:
    return datetime.now(UTC)
