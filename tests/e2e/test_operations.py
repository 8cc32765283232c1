"""/metrics, /healthz and /readyz of the real processes: consumers, API and scheduler."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from automation.supervisor import ConsumerFleet, settings_env
from consumers.app import PROCESSES
from producers.client import AutomationClient
from shared.catalogue import STAGE_NUMBERS
from shared.models import AutomationRun, CreditLedger, RunStage
from shared.settings import Settings
from tests.e2e.conftest import api_server, delete_topology, fleet_with, free_port, wait_for

pytestmark = pytest.mark.e2e
AI_FUNCTIONS = {1: "AutoCluster", 2: "GenerateIdeas", 4: "GenerateContent", 5: "GenerateImagePrompts",
                6: "GenerateImages"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def get(url: str) -> httpx.Response | None:
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            return await http.get(url)
    except httpx.HTTPError:
        return None


async def scrape(base: str) -> Samples:
    answer = await get(f"{base}/metrics")
    assert answer is not None and answer.status_code == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named `name` that carry these labels (among others)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def refreshed(base: str):  # type: ignore[no-untyped-def]
    """A check: the process's scrape, once it has read the pipeline state from the database."""

    async def check() -> Samples | None:
        samples = await scrape(base)
        return samples if any(name == "automation_runs" for name, _ in samples) else None

    return check


def answers(url: str, status: int):  # type: ignore[no-untyped-def]
    async def check() -> httpx.Response | None:
        answer = await get(url)
        return answer if answer is not None and answer.status_code == status else None

    return check


@pytest.fixture(scope="module")
async def metered(settings: Settings, sessions, output_dir) -> AsyncIterator[tuple[ConsumerFleet, Settings]]:
    """Every consumer on a metrics port of its own, all ready."""
    async with fleet_with(settings, output_dir, metrics=True, metrics_refresh_seconds=0.5) as (fleet, own):
        for name in PROCESSES:
            await wait_for(answers(f"{fleet.metrics_url(name)}/readyz", 200), timeout=60)
        yield fleet, own


async def test_every_consumer_is_live_and_ready(metered):
    fleet, _own = metered
    for name in PROCESSES:
        base = fleet.metrics_url(name)
        live = await get(f"{base}/healthz")
        assert live is not None and live.status_code == 200 and live.json() == {"status": "ok"}
        ready = await get(f"{base}/readyz")
        assert ready is not None and ready.status_code == 200, name
        assert ready.json() == {"status": "ready", "down": [], "checks": {"database": "ok", "broker": "ok"}}


async def test_a_run_moves_the_message_batch_ai_and_state_metrics(metered, sessions, make_site):
    fleet, own = metered
    control = fleet.metrics_url("control")
    before: Samples = await wait_for(refreshed(control), timeout=30)  # type: ignore[assignment]
    site = await make_site(keywords=20, synthetic=True)
    async with AutomationClient(own) as client:
        await client.start_run(site.id, idempotency_key=f"metrics-{uuid.uuid4().hex}")

    async def completed() -> AutomationRun | None:
        async with sessions() as session:
            return await session.scalar(select(AutomationRun).where(
                AutomationRun.site_id == site.id, AutomationRun.status.in_(("completed", "failed"))))

    run: AutomationRun = await wait_for(completed, timeout=120)  # type: ignore[assignment]
    assert run.status == "completed", run.error_message
    async with sessions() as session:
        stages = {s.stage: s for s in (await session.scalars(select(RunStage).where(RunStage.run_id == run.id)))}

    for stage in range(1, 7):
        samples = await scrape(fleet.metrics_url(f"stage{stage}"))
        batches = stages[stage].batches_total
        assert value(samples, "automation_messages_total", stage=str(stage), kind="batch", outcome="ok") >= batches > 0
        assert value(samples, "automation_messages_total", stage=str(stage), kind="plan", outcome="ok") >= 1
        assert value(samples, "automation_batch_duration_seconds_count", stage=str(stage)) >= batches
        assert value(samples, "faststream_received_processed_messages_total", app_name=f"stage{stage}",
                     status="acked") >= batches
        if stage in AI_FUNCTIONS:
            assert value(samples, "automation_ai_call_duration_seconds_count", function=AI_FUNCTIONS[stage],
                         provider="simulated", outcome="ok") >= 1, stage
    samples = await scrape(fleet.metrics_url("stage7"))
    assert value(samples, "automation_messages_total", stage="7", kind="plan", outcome="ok") >= 1
    samples = await scrape(control)
    assert value(samples, "automation_messages_total", stage="control", kind="command", outcome="ok") >= 1

    async def state_caught_up() -> Samples | None:
        """The gauges equal the database's own totals, read at the same moment. Earlier tests share
        this database and may leave runs that the fleet's watchdog hands out again, so the totals
        are compared with the database rather than with `before` plus this run."""
        now = await scrape(control)
        async with sessions() as session:
            charged = dict((await session.execute(
                select(CreditLedger.stage, func.sum(-CreditLedger.delta))
                .where(CreditLedger.delta < 0, CreditLedger.stage.is_not(None)).group_by(CreditLedger.stage))).all())
            by_status = dict((await session.execute(
                select(AutomationRun.status, func.count()).group_by(AutomationRun.status))).all())
        matches = all(value(now, "automation_credits_charged_total", stage=str(n)) == charged.get(n, 0)
                      for n in STAGE_NUMBERS) and \
            all(value(now, "automation_runs", status=status) == by_status.get(status, 0)
                for status in ("running", "paused", "completed", "failed"))
        return now if matches else None

    after: Samples = await wait_for(state_caught_up, timeout=60)  # type: ignore[assignment]
    assert sum(stages[n].credits for n in range(1, 7)) == run.total_credits_used > 0
    for n in range(1, 7):
        assert value(after, "automation_credits_charged_total", stage=str(n)) \
            - value(before, "automation_credits_charged_total", stage=str(n)) >= stages[n].credits
    assert value(after, "automation_runs", status="completed") > value(before, "automation_runs", status="completed")
    assert value(after, "automation_state_refreshed_timestamp_seconds") > 0


async def test_readiness_is_503_naming_the_database_when_it_is_missing(settings: Settings, sessions, output_dir):
    broken = settings.model_copy(update={
        "queue_prefix": f"{settings.queue_prefix}{uuid.uuid4().hex[:4]}",
        "database_url": f"{settings.database_url}_missing"})
    fleet = ConsumerFleet(broken, log_dir=output_dir / f"fleet-{broken.queue_prefix}",
                          metrics_ports={"stage3": free_port()})
    process = fleet.start("stage3")
    try:
        base = fleet.metrics_url("stage3")
        await wait_for(answers(f"{base}/healthz", 200), timeout=60)
        answer = await wait_for(answers(f"{base}/readyz", 503), timeout=30)
        body = answer.json()  # type: ignore[attr-defined]
        assert body["status"] == "unavailable" and body["down"] == ["database"]
        assert body["checks"]["broker"] == "ok" and "does not exist" in body["checks"]["database"]
        # readiness answers before the broker has started consuming; stop it once it has (a SIGTERM
        # in the middle of start-up is another matter), and the metrics server leaves the exit graceful
        output = fleet.log_dir / "stage3-0.out"  # type: ignore[operator]

        async def consuming() -> bool:
            return "stage3 consuming" in output.read_text(errors="replace")

        await wait_for(consuming, timeout=60)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 40) == 0
    finally:
        fleet.stop()
        await delete_topology(broken)


async def test_the_api_serves_metrics_health_and_readiness_without_a_key(metered, output_dir):
    _fleet, own = metered
    async with api_server(own, output_dir) as base:
        live = await get(f"{base}/healthz")
        assert live is not None and live.status_code == 200
        ready = await get(f"{base}/readyz")
        assert ready is not None and ready.status_code == 200
        assert ready.json() == {"status": "ready", "down": [], "checks": {"database": "ok"}}
        samples = await wait_for(refreshed(base), timeout=30)
        assert value(samples, "automation_runs", status="completed") >= 1  # type: ignore[arg-type]


async def test_the_scheduler_serves_health_readiness_and_metrics(metered, output_dir):
    _fleet, own = metered
    port = free_port()
    env = settings_env(own) | {"AUTOMATION_METRICS_PORT": str(port)}
    log = (output_dir / f"scheduler-metrics-{port}.out").open("wb")
    scheduler = subprocess.Popen([sys.executable, "-m", "automation.cli", "scheduler"], env=env, stdout=log,
                                 stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        live = await wait_for(answers(f"{base}/healthz", 200), timeout=60)
        assert live.json() == {"status": "ok"}  # type: ignore[attr-defined]
        ready = await wait_for(answers(f"{base}/readyz", 200), timeout=30)
        assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}  # type: ignore[attr-defined]
        assert value(await scrape(base), "process_start_time_seconds") > 0
    finally:
        scheduler.terminate()
        code = await asyncio.to_thread(scheduler.wait, 30)
        log.close()
    assert code == 0
