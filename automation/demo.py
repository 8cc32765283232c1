"""`automation demo`: a full run on demo data, with every consumer as its own OS process."""

from __future__ import annotations

import asyncio
import time
import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from automation.supervisor import ConsumerFleet
from producers.client import AutomationClient
from producers.progress import find_run_id, summary, watch
from shared.accounts import add_keywords, create_account, create_site
from shared.db import make_engine, make_sessionmaker, upgrade_schema
from shared.demo_data import DEMO_TOPICS, demo_keywords, keyword_volume
from shared.models import Account, Content, Site
from shared.settings import Settings

DEMO_ACCOUNT = "demo"
DEMO_CREDITS = 1_000_000


async def create_demo_site(sessions: async_sessionmaker[AsyncSession], keywords: int) -> Site:
    """A fresh demo account and site (the previous demo's data is removed first)."""
    async with sessions() as session, session.begin():
        await session.execute(delete(Account).where(Account.name == DEMO_ACCOUNT))
        account = await create_account(session, DEMO_ACCOUNT, DEMO_CREDITS)
        site = await create_site(session, account, "Demo blog")
        await add_keywords(session, site, [(k, keyword_volume(k)) for k, _ in demo_keywords(keywords)])
        return site


async def run_demo(settings: Settings, keywords: int, concurrency: int, timeout: float = 900) -> int:
    print(f"preparing database {settings.database_url.rsplit('/', 1)[-1]} ...", flush=True)
    await asyncio.to_thread(upgrade_schema, settings.database_url)
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    site = await create_demo_site(sessions, keywords)
    topics = len({topic for _, topic in demo_keywords(keywords)})
    print(f"demo site {site.id}: {keywords} keywords over {topics} of {len(DEMO_TOPICS)} topics, "
          f"{DEMO_CREDITS:,} credits", flush=True)
    fleet = ConsumerFleet(settings, concurrency=concurrency, log_dir=settings.log_dir / "processes")
    fleet.start_all()
    pids = ", ".join(str(p.pid) for replicas in fleet.processes.values() for p in replicas)
    print(f"started control and stage1..stage7 as separate processes (pids {pids})", flush=True)
    started = time.monotonic()
    try:
        key = f"demo-{uuid.uuid4().hex}"
        async with AutomationClient(settings) as client:
            await client.start_run(site.id, requested_by="demo", idempotency_key=key)
        run_id = await find_run_id(sessions, site.id, key, timeout=60)
        if run_id is None:
            print("the run did not start (is the control consumer running? see logs/automation/processes)")
            return 1
        print(f"run {run_id} started through the producers client", flush=True)
        run = await watch(sessions, run_id, timeout=timeout, still_ok=lambda: all(fleet.alive().values()),
                          echo=lambda line: print(line, flush=True))
    finally:
        fleet.stop()
    if run is None:
        print("the run did not finish in time or a consumer died; see logs/automation/processes")
        await engine.dispose()
        return 1
    async with sessions() as session:
        sample = (await session.scalars(select(Content.title).where(Content.site_id == site.id,
                                                                    Content.status == "review").limit(3))).all()
    await engine.dispose()
    print(f"\nrun {run.run_id}: {run.status} in {time.monotonic() - started:.1f}s")
    print(summary(run))
    if sample:
        print("\nin review, for example:\n" + "\n".join(f"  - {title}" for title in sample))
    print(f"\nlogs: {settings.log_dir}/{site.account_id}/{site.id}/{run.run_id}/   images: {settings.media_dir}/")
    return 0 if run.status == "completed" else 1
