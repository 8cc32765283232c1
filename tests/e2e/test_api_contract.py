"""What the API answers with no consumer running: the OpenAPI document, validation, and run_now when
run control is down (issue 13). Real database and broker, the test's own queue prefix."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aio_pika
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from automation.contract import asyncapi_document
from producers.api import routes
from producers.api.app import create_app
from shared.api_keys import create_api_key
from shared.models import AutomationRun
from shared.settings import Settings
from shared.topology import Topology

pytestmark = pytest.mark.e2e
BASE = "/api/v1/automation"


@pytest.fixture(scope="module")
def api_settings(e2e_settings: Settings) -> Settings:
    return e2e_settings.model_copy(update={"db_pool_size": 4})


@pytest.fixture(scope="module")
async def app(api_settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(api_settings, asyncapi_document(api_settings))
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
    pool = app.state.sessions.kw["bind"].pool
    assert (pool.size(), pool._max_overflow) == (5, 0)  # 4 and a quarter (at least one), all kept


async def test_run_now_with_run_control_down_answers_503_at_once_and_queues_nothing(
        client, api_settings, sessions, make_module_site) -> None:
    site, key = await new_site(sessions, make_module_site)
    answer = await client.post(f"{BASE}/run_now/", params={"site_id": site.id}, headers=key)
    # a 503 comes only from the check before anything is sent, never after the wait for control (that
    # answers 202 `queued`): "at once" is this branch, not a timing, which a loaded machine would break
    assert answer.status_code == 503, answer.text
    assert answer.json()["detail"].startswith("run control is not consuming")
    assert await control_queue_depth(api_settings) == 0  # nothing left to start a run when control comes back
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AutomationRun)
                                    .where(AutomationRun.site_id == site.id)) == 0


async def test_run_now_unanswered_by_control_says_queued_and_where_to_look(
        client, api_settings, sessions, make_module_site, monkeypatch) -> None:
    site, key = await new_site(sessions, make_module_site)
    received: list[dict[str, object]] = []

    async def stuck_control(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        received.append(json.loads(message.body))  # takes the command and never answers

    connection = await aio_pika.connect(api_settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(Topology.from_settings(api_settings).control_queue().name, passive=True)
        await queue.consume(stuck_control, no_ack=True)
        monkeypatch.setattr(routes, "WAIT_FOR_RUN_SECONDS", 0.5)
        answer = await client.post(f"{BASE}/run_now/", params={"site_id": site.id}, headers=key)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["run_id"] is None and body["status"] == "queued"
    assert [m["idempotency_key"] for m in received] == [body["idempotency_key"]]
    assert "current_run" in body["detail"] and body["idempotency_key"] in body["detail"]


async def test_every_endpoint_that_needs_a_key_documents_its_401(client) -> None:
    document = (await client.get("/openapi.json")).json()
    secured = [(path, operation) for path, item in document["paths"].items() for operation in item.values()
               if operation.get("security")]
    assert len(secured) >= 15
    for path, operation in secured:
        unauthorized = operation["responses"].get("401")
        assert unauthorized, f"{path} does not document 401"
        assert unauthorized["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Unauthorized"}
    schema = document["components"]["schemas"]["Unauthorized"]
    for headers in ({}, {"X-API-Key": "ak_not-a-key"}):
        refused = await client.get(f"{BASE}/credits/", headers=headers)
        assert refused.status_code == 401 and set(refused.json()) == set(schema["properties"]) == {"detail"}
        assert refused.json()["detail"] in schema["properties"]["detail"]["enum"]
    run_now = document["paths"][f"{BASE}/run_now/"]["post"]["responses"]
    assert run_now["503"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Refusal"}


async def test_log_lines_are_bounded_in_openapi_and_out_of_range_is_422(client, sessions, make_module_site) -> None:
    document = (await client.get("/openapi.json")).json()
    parameters = document["paths"][f"{BASE}/logs/"]["get"]["parameters"]
    lines = next(p["schema"] for p in parameters if p["name"] == "lines")
    assert (lines["minimum"], lines["maximum"], lines["enum"]) == (50, 500, [50, 100, 200, 500])
    _site, key = await new_site(sessions, make_module_site)
    for count in ("0", "-1", "5000", "99999999999999999999", "150"):
        answer = await client.get(f"{BASE}/logs/", params={"run_id": "run_x", "lines": count}, headers=key)
        assert answer.status_code == 422, (count, answer.text)
        assert ["query", "lines"] in [error["loc"] for error in answer.json()["detail"]]


async def test_update_config_takes_only_iana_zone_names(client, sessions, make_module_site) -> None:
    site, key = await new_site(sessions, make_module_site)
    params = {"site_id": site.id}
    for name in ("localtime", "posixrules", "Factory", "posix/Europe/Paris", "../../etc/localtime"):
        refused = await client.put(f"{BASE}/update_config/", params=params, json={"timezone": name}, headers=key)
        assert refused.status_code == 422, (name, refused.text)
        [error] = refused.json()["detail"]
        assert error["loc"] == ["body", "timezone"] and "not an IANA timezone name" in error["msg"], error
    assert (await client.get(f"{BASE}/config/", params=params, headers=key)).json()["timezone"] == "UTC"
    for name in ("Europe/Paris", "UTC", "America/Argentina/Buenos_Aires"):
        saved = await client.put(f"{BASE}/update_config/", params=params, json={"timezone": name}, headers=key)
        assert saved.status_code == 200 and saved.json()["timezone"] == name, saved.text
