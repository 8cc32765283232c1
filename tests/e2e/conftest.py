"""End-to-end fixtures: real consumer processes on a queue prefix of their own."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from automation.supervisor import ConsumerFleet, settings_env
from consumers.app import PROCESSES
from producers.client import AutomationClient
from shared.settings import Settings
from tests.support import delete_topology

CHROMIUM = Path("/usr/bin/chromium")  # Debian's, installed by scripts/setup-browser
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
async def e2e_settings(settings: Settings, sessions) -> AsyncIterator[Settings]:
    own = settings.model_copy(update={"queue_prefix": f"{settings.queue_prefix}{uuid.uuid4().hex[:4]}"})
    yield own
    await delete_topology(own)


async def wait_for(check: Callable[[], Awaitable[object]], timeout: float = 120.0, every: float = 0.3) -> object:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture(scope="module")
def fleet(e2e_settings: Settings, output_dir) -> Iterator[ConsumerFleet]:
    """control and stage1..stage7 as separate OS processes, two replicas of stages 4 and 6."""
    processes = ConsumerFleet(e2e_settings, concurrency=4, log_dir=output_dir / f"fleet-{e2e_settings.queue_prefix}")
    processes.start_all()
    processes.start("stage4")
    processes.start("stage6")
    yield processes
    processes.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def fleet_with(settings: Settings, output_dir: Path, *, metrics: bool = False, **overrides: object
                     ) -> AsyncIterator[tuple[ConsumerFleet, Settings]]:
    """Every consumer as its own process, on a fresh queue prefix (removed afterwards), with the
    simulated provider unless `overrides` say otherwise; with `metrics`, each on a free metrics port
    (`fleet.metrics_url(name)`)."""
    own = settings.model_copy(update={"queue_prefix": f"{settings.queue_prefix}{uuid.uuid4().hex[:4]}",
                                      "ai_provider": "simulated", **overrides})
    ports = {name: free_port() for name in PROCESSES} if metrics else {}
    fleet = ConsumerFleet(own, concurrency=4, log_dir=output_dir / f"fleet-{own.queue_prefix}", metrics_ports=ports)
    fleet.start_all()
    try:
        async with AutomationClient(own) as client:  # the API's run_now answers 503 until control consumes
            await wait_for(client.control_consumers, timeout=60, every=0.2)
        yield fleet, own
    finally:
        fleet.stop()
        with contextlib.suppress(Exception):
            await delete_topology(own)


@contextlib.asynccontextmanager
async def api_server(settings: Settings, output_dir: Path) -> AsyncIterator[str]:
    """`automation api` (uvicorn) as its own process on a free port; yields its base URL once healthy."""
    port = free_port()
    log = (output_dir / f"api-{port}.log").open("wb")
    command = [sys.executable, "-m", "automation.cli", "api", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, env=settings_env(settings), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    async def up() -> bool:
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"{base}/healthz")).status_code == 200
        except httpx.HTTPError:
            return process.poll() is not None  # stop waiting if it died (the assertion below says so)

    try:
        await wait_for(up, timeout=60)
        assert process.poll() is None, f"the API process exited; see {log.name}"
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
async def browser():
    """Headless Chromium through Playwright, one per test module (the modules that use it skip without it)."""
    from playwright import async_api as playwright_api

    async with playwright_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        await chromium.close()


@pytest.fixture(scope="module")
def shots(output_dir: Path) -> Path:
    """Where the browser tests' screenshots go: `<output_dir>/screenshots/<test name>.png`."""
    folder = output_dir / "screenshots"
    folder.mkdir(exist_ok=True)
    return folder
