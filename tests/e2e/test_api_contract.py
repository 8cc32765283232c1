"""What the API answers with no consumer running: the OpenAPI document, validation, and run_now when
run control is down (issue 13). Real database and broker, the test's own queue prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import httpx
import pytest
from fastapi import FastAPI

from producers.api.app import create_app
from shared.api_keys import create_api_key
from shared.settings import Settings
from shared.topology import Topology

pytestmark = pytest.mark.e2e
BASE = "/api/v1/automation"


@pytest.fixture(scope="module")
def api_settings(e2e_settings: Settings) -> Settings:
    return e2e_settings.model_copy(update={"db_pool_size": 4})


@pytest.fixture(scope="module")
async def app(api_settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(api_settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        yield http


async def new_site(sessions, make_module_site):  # type: ignore[no-untyped-def]
    site = await make_module_site(keywords=8, synthetic=True)
    async with sessions() as session, session.begin():
        key = await create_api_key(session, site.account_id)
    return site, {"X-API-Key": key}


async def control_queue_depth(settings: Settings) -> int:
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(Topology.from_settings(settings).control_queue().name, passive=True)
        return queue.declaration_result.message_count or 0


async def test_the_api_engine_pool_follows_db_pool_size(app: FastAPI) -> None:
    assert app.state.sessions.kw["bind"].pool.size() == 4
