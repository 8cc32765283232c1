"""Creating accounts, sites and keywords (the demo, the bench and the tests use these)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.credits import grant
from shared.models import Account, AutomationConfig, Keyword, Site


async def create_account(session: AsyncSession, name: str, credits: int = 0) -> Account:
    account = Account(name=name, credits_balance=0)
    session.add(account)
    await session.flush()
    if credits:
        account.credits_balance = await grant(session, account.id, credits, "initial credits")
    return account


async def create_site(session: AsyncSession, account: Account, name: str, timezone: str = "UTC",
                      **config: object) -> Site:
    """A site with its automation config (defaults unless given)."""
    site = Site(account_id=account.id, name=name, timezone=timezone)
    session.add(site)
    await session.flush()
    session.add(AutomationConfig(site_id=site.id, **config))
    await session.flush()
    return site


async def add_keywords(session: AsyncSession, site: Site, keywords: Iterable[tuple[str, int]],
                       chunk: int = 5000) -> int:
    """Insert (keyword, volume) pairs as new keywords; existing ones are left alone."""
    rows = [{"site_id": site.id, "keyword": k, "volume": v, "status": "new", "disabled": False}
            for k, v in keywords]
    added = 0
    for start in range(0, len(rows), chunk):
        result = await session.execute(insert(Keyword).values(rows[start:start + chunk])
                                       .on_conflict_do_nothing(index_elements=["site_id", "keyword"]))
        added += result.rowcount  # type: ignore[attr-defined]
    return added


async def get_or_create_config(session: AsyncSession, site_id: int) -> AutomationConfig:
    """The site's automation config, created with the defaults on first use."""
    config = await session.scalar(select(AutomationConfig).where(AutomationConfig.site_id == site_id))
    if config is None:
        config = AutomationConfig(site_id=site_id)
        session.add(config)
        await session.flush()
    return config
