"""Composition root of `automation scheduler`: APScheduler in asyncio, publishing with confirms.

With `AUTOMATION_METRICS_PORT` set it serves /metrics, /healthz and /readyz (`shared.health`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from scheduler.service import SchedulerService
from shared.db import make_engine, make_sessionmaker
from shared.health import broker_check, database_check, ops_server
from shared.metrics import REGISTRY
from shared.publisher import Publisher
from shared.settings import Settings

log = logging.getLogger("automation.scheduler")


async def run_scheduler(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT: resync every `schedule_resync_seconds`, fire jobs on time."""
    engine = make_engine(settings, pool_size=2)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    client = Publisher(settings, registry=REGISTRY, app_name="scheduler")
    ops = ops_server(settings, {"database": database_check(engine), "broker": broker_check(client.broker)})
    try:
        if ops is not None:
            await ops.start()
        async with client:
            service = SchedulerService(make_sessionmaker(engine), client.send,
                                       grace_seconds=settings.schedule_grace_seconds,
                                       credit_buffer=settings.credit_buffer)
            scheduler = AsyncIOScheduler(timezone=UTC)
            scheduler.add_job(service.sync, "interval", seconds=settings.schedule_resync_seconds, args=[scheduler],
                              id="resync", next_run_time=datetime.now(UTC), coalesce=True, max_instances=1)
            scheduler.start()
            log.info("scheduler %s started (resync every %ss, grace %ss)", service.name,
                     settings.schedule_resync_seconds, settings.schedule_grace_seconds)
            await stop.wait()
            scheduler.shutdown(wait=False)
    finally:
        if ops is not None:
            await ops.stop()
        await engine.dispose()
