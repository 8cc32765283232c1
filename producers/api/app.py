"""Composition root of the API process (`automation api`): FastAPI over the database and broker.

Besides the API it serves, without an API key, `/healthz` (liveness), `/readyz` (readiness: the
database answers; 503 naming what is down otherwise) and `/metrics` (Prometheus, `shared.metrics`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from producers.api import credit_routes, export_routes, notification_routes
from producers.api.review_routes import router as review_router
from producers.api.routes import router
from producers.client import AutomationClient
from producers.dashboard import routes as dashboard
from shared.db import make_engine, make_sessionmaker
from shared.health import database_check, readiness
from shared.metrics import PIPELINE_STATE, REGISTRY
from shared.settings import Settings


def create_app(settings: Settings, contract: dict[str, Any] | None = None) -> FastAPI:
    """The API; `contract` is the AsyncAPI document it serves at /asyncapi.json (built by the
    application from the consumers' subscribers and publishers, `automation.contract`)."""
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings, pool_size=settings.db_pool_size)  # AUTOMATION_DB_POOL_SIZE, as consumers
        app.state.settings = settings
        app.state.sessions = make_sessionmaker(engine)
        app.state.readiness_checks = {"database": database_check(engine)}
        # the API, like control, keeps the pipeline-state gauges fresh (stage replicas never do)
        refresher = asyncio.create_task(PIPELINE_STATE.refresh_forever(app.state.sessions,
                                                                       settings.metrics_refresh_seconds))
        try:
            async with AutomationClient(settings, registry=REGISTRY, app_name="api") as client:
                app.state.client = client
                yield
        finally:
            refresher.cancel()
            await engine.dispose()

    app = FastAPI(title="Automation pipeline API", version="1.0.0", lifespan=lifespan,
                  description="Run control, configuration, history and logs of the automation pipeline. "
                              "Every request needs an account API key in the X-API-Key header.")
    app.include_router(router)
    app.include_router(review_router)
    app.include_router(export_routes.router)
    app.include_router(credit_routes.router)
    app.include_router(notification_routes.router)
    app.webhooks.include_router(notification_routes.webhooks)
    app.include_router(dashboard.api_router)
    app.include_router(dashboard.page_router)
    app.mount("/automation/static", StaticFiles(directory=dashboard.STATIC_DIR), name="dashboard-static")
    @app.get("/asyncapi.json", tags=["contract"], summary="The AsyncAPI document of the event contract")
    async def asyncapi() -> dict[str, Any]:
        return contract or {}

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness: the database answers",
             responses={503: {"description": "Something is down; the body names it"}})
    async def readyz(request: Request) -> JSONResponse:
        body = await readiness(request.app.state.readiness_checks)
        return JSONResponse(body, status_code=503 if body["down"] else 200)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        # async on purpose: it runs on the event loop, like the refresher, so a scrape sees one snapshot
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
