"""Shared fixtures: a database and a queue prefix of their own for every test run.

Runs never collide: the database is `automation_test_<id>` and every exchange and queue
name starts with `t<id>` (a fresh prefix per end-to-end test), all removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ai import make_provider
from ai.base import AIProvider
from consumers.deps import Deps
from shared.accounts import add_keywords, create_account, create_site
from shared.automation_logger import AutomationLogger
from shared.db import drop_database, make_engine, make_sessionmaker, upgrade_schema
from shared.models import Site
from shared.outbox import NoRelay
from shared.settings import Settings
from tests.support import delete_topology

RUN_ID = uuid.uuid4().hex[:8]
PG_URL = os.environ.get("AUTOMATION_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")
AMQP_URL = os.environ.get("AUTOMATION_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")



@pytest.fixture(scope="session")
def output_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp(f"automation-{RUN_ID}")


@pytest.fixture(scope="session")
def settings(output_dir: Path) -> Settings:
    return Settings(database_url=f"{PG_URL}/automation_test_{RUN_ID}", amqp_url=AMQP_URL,
                    queue_prefix=f"t{RUN_ID}", log_dir=output_dir / "logs", media_dir=output_dir / "media",
                    ai_provider=os.environ.get("AUTOMATION_TEST_AI_PROVIDER", "local"), outbox_poll_seconds=0.5,
                    metrics_port=0, metrics_host="127.0.0.1",  # a process serves metrics only when a test asks
                    db_pool_size=3,  # two test workers' fleets side by side stay within max_connections (100)
                    # small images: rendering 512x288 PNGs was half the suite's CPU; the offline provider's
                    # images at full size are covered by tests/unit/test_local_provider.py
                    image_width=160, image_height=90)


@pytest.fixture(scope="session")
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    await asyncio.to_thread(upgrade_schema, settings.database_url)
    engine = make_engine(settings, pool_size=20)
    yield make_sessionmaker(engine)
    await engine.dispose()
    if not os.environ.get("AUTOMATION_KEEP_TEST_DB"):
        await drop_database(settings.database_url)


@pytest.fixture(scope="session", autouse=True)
async def broker_topology(settings: Settings) -> AsyncIterator[None]:
    """The run's exchanges and queues (its prefix) are removed when it ends, as its database is; the
    e2e fleets' own prefixes are removed by their fixtures. A broker that is down leaves nothing to
    remove, and must not fail a run of unit tests."""
    yield
    with contextlib.suppress(Exception):
        await delete_topology(settings)


@pytest.fixture(scope="session")
def provider(settings: Settings) -> AIProvider:
    return make_provider(settings)


@pytest.fixture
def deps(settings: Settings, sessions: async_sessionmaker[AsyncSession], provider: AIProvider) -> Deps:
    return Deps(settings=settings, sessions=sessions, logger=AutomationLogger(settings.log_dir),
                provider=provider, relay=NoRelay(), worker_id="pytest")


SiteFactory = Callable[..., Awaitable[Site]]


def site_factory(sessions: async_sessionmaker[AsyncSession]) -> SiteFactory:
    """`await make_site(keywords=40, credits=100_000, **config)`: a fresh account and site."""

    async def factory(keywords: int = 40, credits: int = 100_000, synthetic: bool = False, **config: object) -> Site:
        """Demo keywords (realistic topics), or `synthetic` ones: groups of 8 sharing a head, which the
        simulated provider clusters together (small, predictable runs for the resilience tests)."""
        from bench.pipeline import synthetic_keywords
        from shared.demo_data import demo_keywords, keyword_volume

        pairs = synthetic_keywords(keywords) if synthetic else [
            (k, keyword_volume(k)) for k, _ in demo_keywords(keywords)]
        name = uuid.uuid4().hex[:10]
        async with sessions() as session, session.begin():
            account = await create_account(session, f"acct-{name}", credits)
            site = await create_site(session, account, f"site-{name}", **config)
            await add_keywords(session, site, pairs)
        return site

    return factory


@pytest.fixture
def make_site(sessions: async_sessionmaker[AsyncSession]) -> SiteFactory:
    return site_factory(sessions)


@pytest.fixture(scope="module")
def make_module_site(sessions: async_sessionmaker[AsyncSession]) -> SiteFactory:
    return site_factory(sessions)
