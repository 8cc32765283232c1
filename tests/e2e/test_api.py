"""The HTTP API against the real database and broker, with the consumers running as processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from automation.contract import asyncapi_document
from producers.api.app import create_app
from shared.accounts import create_account
from shared.api_keys import create_api_key
from shared.catalogue import STAGES
from shared.models import AutomationConfig, AutomationRun
from shared.settings import Settings
from tests.e2e.conftest import api_server, fleet_with, wait_for

pytestmark = pytest.mark.e2e
BASE = "/api/v1/automation"


@pytest.fixture(scope="module")
async def api_settings(settings: Settings, sessions, output_dir) -> AsyncIterator[Settings]:
    """The consumers running as processes on the module's own queue prefix; yields their settings (with a
    secret key, as a deployment that publishes has; outbound checks of fuzzed addresses give up quickly)."""
    async with fleet_with(settings, output_dir, ai_latency_ms=5, secret_key=SecretStr(uuid.uuid4().hex),
                          publish_timeout_seconds=3.0) as (_fleet, own):
        yield own


@pytest.fixture(scope="module")
async def client(api_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(api_settings, asyncapi_document(api_settings))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            yield http


async def new_account(sessions, credits: int = 100_000) -> tuple[int, dict[str, str]]:
    async with sessions() as session, session.begin():
        account = await create_account(session, f"api-{uuid.uuid4().hex[:8]}", credits)
        key = await create_api_key(session, account.id)
    return account.id, {"X-API-Key": key}


async def new_site(sessions, make_module_site, credits: int = 100_000, keywords: int = 16):
    site = await make_module_site(keywords=keywords, credits=credits, synthetic=True)
    async with sessions() as session, session.begin():
        key = await create_api_key(session, site.account_id)
    return site, {"X-API-Key": key}


async def test_requests_need_a_valid_key(client):
    assert (await client.get(f"{BASE}/credits/")).status_code == 401
    answer = await client.get(f"{BASE}/credits/", headers={"X-API-Key": "ak_not-a-key"})
    assert answer.status_code == 401 and answer.json()["detail"] == "invalid API key"


async def test_config_reads_and_updates_with_field_errors_that_change_nothing(client, sessions, make_module_site):
    site, key = await new_site(sessions, make_module_site)
    config = (await client.get(f"{BASE}/config/", params={"site_id": site.id}, headers=key)).json()
    assert config["stage_1_batch_size"] == 20 and config["frequency"] == "daily" and config["next_run_at"] is None
    update = {"is_enabled": True, "frequency": "weekly", "scheduled_time": "06:30", "timezone": "Asia/Tokyo",
              "stage_4_batch_size": 3}
    answer = await client.put(f"{BASE}/update_config/", params={"site_id": site.id}, json=update, headers=key)
    assert answer.status_code == 200, answer.text
    saved = answer.json()
    assert saved["timezone"] == "Asia/Tokyo" and saved["scheduled_time"] == "06:30"
    assert saved["next_run_at"] is not None and saved["stage_4_batch_size"] == 3
    bad = [({"stage_2_batch_size": 0}, "stage_2_batch_size"), ({"stage_1_batch_size": 1001}, "stage_1_batch_size"),
           ({"frequency": "hourly"}, "frequency"), ({"scheduled_time": "24:00"}, "scheduled_time"),
           ({"scheduled_time": "7:5"}, "scheduled_time"), ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
           ({"is_enabled": False, "colour": "red"}, "colour")]
    for body, field in bad:
        refused = await client.put(f"{BASE}/update_config/", params={"site_id": site.id}, json=body, headers=key)
        assert refused.status_code == 422, body
        assert field in [str(part) for error in refused.json()["detail"] for part in error["loc"]], refused.json()
    after = (await client.get(f"{BASE}/config/", params={"site_id": site.id}, headers=key)).json()
    assert after == saved


async def test_a_run_is_started_paused_resumed_and_completed_through_the_api(client, sessions, make_module_site):
    site, key = await new_site(sessions, make_module_site, keywords=24)
    estimate = (await client.get(f"{BASE}/estimate/", params={"site_id": site.id}, headers=key)).json()
    assert estimate["can_start"] and estimate["buffer"] == 0.2 and estimate["per_stage"]["1"] == 5
    started = await client.post(f"{BASE}/run_now/", params={"site_id": site.id}, headers=key)
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    assert run_id and started.json()["status"] == "running"

    again = await client.post(f"{BASE}/run_now/", params={"site_id": site.id}, headers=key)
    assert again.status_code == 409 and again.json()["active_run_id"] == run_id

    paused = await client.post(f"{BASE}/pause/", params={"run_id": run_id}, headers=key)
    assert paused.status_code == 200 and paused.json()["status"] in ("paused", "completed")
    current = (await client.get(f"{BASE}/current_run/", params={"site_id": site.id}, headers=key)).json()
    if paused.json()["status"] == "paused":
        assert current["run"]["run_id"] == run_id and len(current["run"]["stages"]) == 7
        resumed = await client.post(f"{BASE}/resume/", params={"run_id": run_id}, headers=key)
        assert resumed.status_code == 200 and resumed.json()["status"] in ("running", "completed")

    async def finished() -> bool:
        answer = await client.get(f"{BASE}/current_run/", params={"site_id": site.id}, headers=key)
        return answer.json()["run"] is None

    await wait_for(finished, timeout=120)
    detail = (await client.get(f"{BASE}/runs/{run_id}", headers=key)).json()
    assert detail["status"] == "completed" and detail["idempotency_key"] == started.json()["idempotency_key"]
    assert [s["status"] for s in detail["stages"]] == ["completed"] * 7
    assert detail["stages"][3]["items_out"] == 9 and detail["stages"][3]["batches_done"] == 9
    assert detail["total_credits_used"] == sum(s["credits"] for s in detail["stages"])
    history = (await client.get(f"{BASE}/history/", params={"site_id": site.id}, headers=key)).json()["runs"]
    assert history[0]["run_id"] == run_id and history[0]["status"] == "completed"
    logs = (await client.get(f"{BASE}/logs/", params={"run_id": run_id, "lines": 50}, headers=key)).json()["lines"]
    assert len(logs) == 50 and "Run completed" in logs[-1]
    stage_logs = (await client.get(f"{BASE}/logs/", params={"run_id": run_id, "stage": 4}, headers=key)).json()
    # streamed: stage 4 opens with stage 2, empty, and takes each task as stage 3 makes it
    assert stage_logs["lines"][0].endswith("Stage 4 started: 0 tasks in 0 batches of up to 1; streamed: more as "
                                           "stage 3 hands them on")
    assert stage_logs["lines"][-1].endswith("9 tasks in, 9 content out, 45 credits, 9 batches")
    assert all("Stage 4" in line for line in stage_logs["lines"])
    assert (await client.get(f"{BASE}/logs/", params={"run_id": run_id, "lines": 7}, headers=key)).status_code == 422
    credits = (await client.get(f"{BASE}/credits/", headers=key)).json()
    assert credits["credits_balance"] == 100_000 - detail["total_credits_used"]
    for action in ("pause", "resume"):
        refused = await client.post(f"{BASE}/{action}/", params={"run_id": run_id}, headers=key)
        assert refused.status_code == 409 and refused.json()["detail"] == "run is completed"


async def test_run_now_without_enough_credits_answers_402_with_the_figures(client, sessions, make_module_site):
    site, key = await new_site(sessions, make_module_site, credits=10, keywords=40)
    answer = await client.post(f"{BASE}/run_now/", params={"site_id": site.id}, headers=key)
    assert answer.status_code == 402
    body = answer.json()
    assert body["balance"] == 10 and body["buffer"] == 0.2 and body["required"] > body["estimate"] > 10
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AutomationRun)
                                    .where(AutomationRun.site_id == site.id)) == 0


async def test_history_filters_by_status_trigger_and_date(client, sessions, make_module_site):
    site, key = await new_site(sessions, make_module_site, keywords=8)
    run_id = (await client.post(f"{BASE}/run_now/", params={"site_id": site.id}, headers=key)).json()["run_id"]

    async def done() -> bool:
        return (await client.get(f"{BASE}/runs/{run_id}", headers=key)).json()["status"] == "completed"

    await wait_for(done, timeout=60)
    params = {"site_id": site.id}
    assert len((await client.get(f"{BASE}/history/", params=params | {"status": "completed"}, headers=key))
               .json()["runs"]) == 1
    assert (await client.get(f"{BASE}/history/", params=params | {"status": "failed"}, headers=key)).json() == {
        "runs": []}
    assert (await client.get(f"{BASE}/history/", params=params | {"trigger": "scheduled"}, headers=key)
            ).json() == {"runs": []}
    assert (await client.get(f"{BASE}/history/", params=params | {"date_from": "2000-01-01", "date_to": "2000-01-02"},
                             headers=key)).json() == {"runs": []}
    assert (await client.get(f"{BASE}/history/", params=params | {"status": "lost"}, headers=key)).status_code == 422


async def test_another_accounts_ids_answer_404_and_change_nothing(client, sessions, make_module_site):
    site, owner_key = await new_site(sessions, make_module_site, keywords=8)
    run_id = (await client.post(f"{BASE}/run_now/", params={"site_id": site.id}, headers=owner_key)).json()["run_id"]
    _, stranger = await new_account(sessions)
    sid, rid = {"site_id": site.id}, {"run_id": run_id}
    answers = [
        await client.get(f"{BASE}/config/", params=sid, headers=stranger),
        await client.put(f"{BASE}/update_config/", params=sid, json={"is_enabled": True}, headers=stranger),
        await client.post(f"{BASE}/run_now/", params=sid, headers=stranger),
        await client.get(f"{BASE}/current_run/", params=sid, headers=stranger),
        await client.post(f"{BASE}/pause/", params=rid, headers=stranger),
        await client.post(f"{BASE}/resume/", params=rid, headers=stranger),
        await client.get(f"{BASE}/history/", params=sid, headers=stranger),
        await client.get(f"{BASE}/logs/", params=rid, headers=stranger),
        await client.get(f"{BASE}/estimate/", params=sid, headers=stranger),
        await client.get(f"{BASE}/runs/{run_id}", headers=stranger),
    ]
    assert [a.status_code for a in answers] == [404] * len(answers)
    assert all(str(site.id) not in a.text or "not found" in a.text for a in answers)
    async with sessions() as session:
        assert not (await session.scalar(select(AutomationConfig.is_enabled).where(
            AutomationConfig.site_id == site.id)))
        runs = (await session.scalars(select(AutomationRun.status).where(AutomationRun.site_id == site.id))).all()
    assert len(runs) == 1 and runs[0] in ("running", "completed")


async def test_malformed_run_ids_are_refused_before_the_database(client, sessions):
    _, key = await new_account(sessions)
    for bad in ("M\x00\u00d5'\u00f9", "x" * 65, "run id with spaces"):
        for method, path, params in (("post", "pause/", {"run_id": bad}), ("post", "resume/", {"run_id": bad}),
                                     ("get", "logs/", {"run_id": bad})):
            answer = await getattr(client, method)(f"{BASE}/{path}", params=params, headers=key)
            assert answer.status_code == 422, (path, bad, answer.text)
            assert "run_id" in [str(part) for error in answer.json()["detail"] for part in error["loc"]]
    assert (await client.get(f"{BASE}/runs/bad%00id", headers=key)).status_code == 422


async def test_the_stage_catalogue_is_served_to_key_holders_and_documented(client, sessions):
    assert (await client.get(f"{BASE}/stages")).status_code == 401
    _, key = await new_account(sessions)
    answer = await client.get(f"{BASE}/stages", headers=key)
    assert answer.status_code == 200, answer.text
    stages = answer.json()["stages"]
    assert stages == [stage.describe() for stage in STAGES]
    assert [s["number"] for s in stages] == [1, 2, 3, 4, 5, 6, 7]
    assert stages[0] == {"number": 1, "name": "keywords → clusters", "input": "keywords", "output": "clusters",
                         "default_batch_size": 20, "ai_function": "AutoCluster", "credits": 1, "credits_per": 5,
                         "seed_query": "keywords with status 'new', no cluster, not disabled"}
    assert stages[-1]["name"] == "review gate" and stages[-1]["default_batch_size"] is None
    operation = (await client.get("/openapi.json")).json()["paths"][f"{BASE}/stages"]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Stages"}
    assert "401" in operation["responses"] and operation["security"] == [{"APIKeyHeader": []}]


async def test_openapi_docs_and_asyncapi_are_served(client):
    assert (await client.get("/docs")).status_code == 200
    paths = (await client.get("/openapi.json")).json()["paths"]
    for name in ("config/", "update_config/", "run_now/", "current_run/", "pause/", "resume/", "history/", "logs/",
                 "estimate/", "credits/", "runs/{run_id}", "stages"):
        assert f"{BASE}/{name}" in paths
    contract = (await client.get("/asyncapi.json")).json()
    assert contract["asyncapi"].startswith("3.") and "control" in contract["channels"]


async def test_schemathesis_finds_no_server_error(api_settings, sessions, make_module_site, output_dir):
    _site, key = await new_site(sessions, make_module_site, keywords=8)
    async with api_server(api_settings, output_dir) as base:
        result = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "schemathesis.cli", "run", f"{base}/openapi.json",
            "--checks", "not_a_server_error", "-H", f"X-API-Key: {key['X-API-Key']}", "--max-examples", "30",
            "--generation-deterministic", "--phases", "examples,fuzzing",
        ], capture_output=True, text=True, timeout=600)
    (output_dir / "schemathesis.txt").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-4000:]
