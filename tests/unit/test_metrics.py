"""Metrics and health endpoints without I/O: FastStream's in-memory broker, an ASGI client."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from faststream import FastStream
from faststream.context import ContextRepo
from faststream.rabbit import TestRabbitBroker
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from ai.base import ImageOut
from ai.functions import GenerateImages
from shared.health import ops_app
from shared.messaging import FAILURES, FailureRouter, PoisonMessage, make_broker
from shared.metrics import REGISTRY, PipelineState, Snapshot, counted
from shared.settings import Settings
from shared.topology import Topology


def sample(name: str, labels: dict[str, str], registry: CollectorRegistry = REGISTRY) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_failures_swallowed_by_the_failure_router_are_still_counted():
    registry = CollectorRegistry()
    broker = make_broker(Settings(), registry=registry, app_name="stage9")
    router = FailureRouter(Settings(), Topology("unit"), broker)
    FastStream(broker, context=ContextRepo({FAILURES: router}))
    handled: list[str] = []

    async def retry(message, error) -> None:
        handled.append(f"retry {type(error).__name__}")

    async def dead_letter(message, reason) -> None:
        handled.append("dead-letter")

    router.retry, router.dead_letter = retry, dead_letter  # type: ignore[method-assign]

    @broker.subscriber("unit.q")
    async def handler(body: dict) -> None:
        if body["x"] == "transient":
            raise RuntimeError("boom")
        if body["x"] == "poison":
            raise PoisonMessage("bad")

    async with TestRabbitBroker(broker) as test_broker:
        for x in ("fine", "transient", "poison"):
            await test_broker.publish({"x": x}, queue="unit.q")
    assert handled == ["retry RuntimeError", "dead-letter"]
    labels = {"app_name": "stage9", "broker": "rabbitmq", "handler": "default.unit.q"}
    assert sample("faststream_received_processed_messages_total", {**labels, "status": "acked"}, registry) == 1
    assert sample("faststream_received_processed_messages_total", {**labels, "status": "error"}, registry) == 2
    assert sample("faststream_received_processed_messages_exceptions_total",
                  {**labels, "exception_type": "RuntimeError"}, registry) == 1


def test_counted_records_the_outcome_and_lets_the_error_through():
    before = {o: sample("automation_messages_total", {"stage": "9", "kind": "batch", "outcome": o})
              for o in ("ok", "error", "poison")}
    with counted("9", "batch"):
        pass
    with pytest.raises(RuntimeError), counted("9", "batch"):
        raise RuntimeError("transient")
    with pytest.raises(PoisonMessage), counted("9", "batch"):
        raise PoisonMessage("never")
    for outcome in ("ok", "error", "poison"):
        assert sample("automation_messages_total", {"stage": "9", "kind": "batch", "outcome": outcome}) == \
            before[outcome] + 1


class PngProvider:
    name = "unit-png"

    async def generate_image(self, prompt: str, width: int, height: int) -> ImageOut:
        await asyncio.sleep(0.01)
        return ImageOut(png=b"\x89PNG fake", width=width, height=height)


async def test_every_provider_call_of_an_ai_function_is_timed():
    labels = {"function": "GenerateImages", "provider": "unit-png", "outcome": "ok"}
    before = sample("automation_ai_call_duration_seconds_count", labels)
    await GenerateImages(PngProvider()).execute({1: "a", 2: "b", 3: "c"}, 16, 16)  # type: ignore[arg-type]
    assert sample("automation_ai_call_duration_seconds_count", labels) == before + 3
    assert sample("automation_ai_call_duration_seconds_sum", labels) >= 0.03


def test_the_state_collector_exposes_the_last_snapshot():
    state = PipelineState()
    registry = CollectorRegistry()
    registry.register(state)
    assert sample("automation_runs", {"status": "running"}, registry) == 0  # nothing until refreshed
    state.snapshot = Snapshot(runs={"running": 2, "completed": 5}, open_batches={(4, "pending"): 7},
                              credits_charged={1: 12, 4: 50}, taken_at=1234.0)
    assert sample("automation_runs", {"status": "completed"}, registry) == 5
    assert sample("automation_batches_open", {"stage": "4", "status": "pending"}, registry) == 7
    assert sample("automation_credits_charged_total", {"stage": "4"}, registry) == 50
    assert sample("automation_state_refreshed_timestamp_seconds", {}, registry) == 1234.0


async def test_health_endpoints_answer_and_readiness_names_what_is_down():
    async def up() -> None:
        pass

    async def down() -> None:
        raise ConnectionError("connection refused")

    async def hangs() -> None:
        await asyncio.sleep(60)

    def client(**checks) -> httpx.AsyncClient:
        app = ops_app(checks, timeout=0.2)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ops")

    async with client(database=up, broker=up) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "down": [], "checks": {"database": "ok", "broker": "ok"}}
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
        names = {family.name for family in text_string_to_metric_families(metrics.text)}
        assert {"automation_messages", "process_resident_memory_bytes"} <= names
        assert (await http.get("/nothing")).status_code == 404
    async with client(database=down, broker=up) as http:
        answer = await http.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["down"] == ["database"]
        assert answer.json()["checks"]["database"] == "ConnectionError: connection refused"
    async with client(database=up, broker=hangs) as http:
        answer = await http.get("/readyz")
        assert answer.status_code == 503 and answer.json()["down"] == ["broker"]
        assert answer.json()["checks"]["broker"] == "no answer within 0.2s"
