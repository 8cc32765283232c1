"""`/metrics`, `/healthz` and `/readyz` for the consumer and scheduler processes.

Why this shape: the consumers already run under `FastStream(...).run()`, which owns SIGTERM and
the graceful shutdown (in-flight batches finish, exit code 0). Turning the whole process into an
`AsgiFastStream` served by uvicorn would hand signals to uvicorn, which re-raises SIGTERM after its
shutdown and so exits with -15. Instead the three routes are a small `AsgiFastStream` router
(FastStream's own ASGI support: `asgi_routes`, `get` handlers, prometheus_client's ASGI app) that
has no broker of its own, served by a uvicorn `Server` running as a task on the process's event
loop with uvicorn's lifespan and signal capture switched off: it starts before the broker
connects (so `/readyz` can say the broker is not there yet) and stops after the broker has.

- `/healthz` (liveness): 200 as long as the event loop answers.
- `/readyz` (readiness): 200 when every check passes, else 503 with a JSON body naming what is
  down, e.g. `{"status": "unavailable", "down": ["database"], "checks": {...}}`. Consumers and the
  scheduler check the database (`SELECT 1`) and their broker connection; the API (which serves the
  same routes itself, see `producers.api.app`) checks the database.
- `/metrics`: the process's Prometheus registry (see `shared.metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import uvicorn
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.response import JSONResponse
from faststream.rabbit import RabbitBroker
from prometheus_client import make_asgi_app
from prometheus_client.registry import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.metrics import REGISTRY
from shared.settings import Settings

log = logging.getLogger("automation.health")

Check = Callable[[], Awaitable[None]]
CHECK_TIMEOUT_SECONDS = 3.0


def database_check(engine: AsyncEngine) -> Check:
    """Passes when the database answers `SELECT 1`."""

    async def check() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    return check


def broker_check(broker: RabbitBroker, timeout: float = 1.0) -> Check:
    """Passes while the broker connection is up (what `faststream.asgi.make_ping_asgi` checks)."""

    async def check() -> None:
        if not await broker.ping(timeout):
            raise ConnectionError("not connected to RabbitMQ")

    return check


def _reason(error: BaseException) -> str:
    cause = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's error (and adapts it)
    cause = cause.__cause__ or cause
    return f"{type(cause).__name__}: {cause}".strip()[:300]


async def readiness(checks: Mapping[str, Check], timeout: float = CHECK_TIMEOUT_SECONDS) -> dict[str, Any]:
    """Run every check at once; the answer names each check's state and lists those down."""

    async def one(check: Check) -> str:
        try:
            async with asyncio.timeout(timeout):
                await check()
        except TimeoutError:
            return f"no answer within {timeout:g}s"
        except Exception as error:
            return _reason(error)
        return "ok"

    states = dict(zip(checks, await asyncio.gather(*(one(c) for c in checks.values())), strict=True))
    down = [name for name, state in states.items() if state != "ok"]
    return {"status": "unavailable" if down else "ready", "down": down, "checks": states}


def ops_app(checks: Mapping[str, Check], registry: CollectorRegistry = REGISTRY,
            timeout: float = CHECK_TIMEOUT_SECONDS) -> AsgiFastStream:
    """The three routes as an ASGI app (no broker, no lifespan: it only routes HTTP)."""

    @get(include_in_schema=False)
    async def healthz(scope: Any) -> AsgiResponse:
        return JSONResponse({"status": "ok"})

    @get(include_in_schema=False)
    async def readyz(scope: Any) -> AsgiResponse:
        body = await readiness(checks, timeout)
        return JSONResponse(body, status_code=503 if body["down"] else 200)

    return AsgiFastStream(asgi_routes=[("/metrics", make_asgi_app(registry)), ("/healthz", healthz),
                                       ("/readyz", readyz)])


class _LoopServer(uvicorn.Server):
    """uvicorn without its signal handling: the process's own loop keeps SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class OpsServer:
    """Serves an ASGI app on `host:port` from inside the running event loop."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        self.app, self.host, self.port = app, host, port
        self._server: _LoopServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind (an OSError such as "address in use" is raised here, at start-up) and serve."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.create_server((self.host, self.port), family=family)
        config = uvicorn.Config(self.app, lifespan="off", log_config=None, access_log=False,
                                timeout_graceful_shutdown=2)
        self._server = _LoopServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="ops-server")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the metrics server stopped at start-up")
            await asyncio.sleep(0.01)
        log.info("serving /metrics, /healthz and /readyz on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, timeout=5)
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()
        self._server = self._task = None


def ops_server(settings: Settings, checks: Mapping[str, Check]) -> OpsServer | None:
    """The process's ops server on `AUTOMATION_METRICS_PORT`, or None when that is 0."""
    if not settings.metrics_port:
        return None
    return OpsServer(ops_app(checks), settings.metrics_host, settings.metrics_port)
