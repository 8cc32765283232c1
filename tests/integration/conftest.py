"""Integration fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import delete

from producers.api.app import create_app
from shared.models import OutboxMessage
from tests.support import close_buses


@pytest.fixture(autouse=True)
async def empty_outbox(sessions) -> AsyncIterator[None]:
    """Each in-process test starts and ends with an empty outbox. The in-memory bus delivers every
    pending message, so an earlier test's unfinished run (50 starts, a paused run) would otherwise
    be carried on by this test's bus, with this test's provider and counters; and an end-to-end
    test after it on the same worker would have its consumers carry on that run."""
    async def empty() -> None:
        async with sessions() as session, session.begin():
            await session.execute(delete(OutboxMessage))

    await empty()
    yield
    await close_buses()
    await empty()


@pytest.fixture(scope="module")
async def client(settings, sessions) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP API in this process (its lifespan run), on the worker's database; a module needing other
    settings defines its own `client`."""
    app = create_app(settings, {})
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            yield http
