"""`automation bench`: run the chosen scenarios in order, print every figure, then the goal summary.

Every figure and every comparison comes from this invocation on this machine. The exit code is
0 when every run completed and the counts agree, whatever the goals say (they are reported as
PASS or MISS, not asserted); a failed run or a count mismatch exits 1.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict
from pathlib import Path

import aio_pika
import asyncpg
from sqlalchemy.engine import make_url

from bench.harness import BenchFailure, settle
from bench.report import Report
from bench.scenarios import OPT_IN, SCENARIOS, Context, Plan, machine
from shared.settings import Settings


async def server_versions(settings: Settings) -> dict[str, str]:
    """The PostgreSQL and RabbitMQ the figures were measured against."""
    url = make_url(settings.database_url)
    connection = await asyncpg.connect(host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username,
                                       password=url.password, database="postgres")
    try:
        postgres = str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()
    broker = await aio_pika.connect(settings.amqp_url)
    async with broker:
        properties = broker.transport.connection.server_properties if broker.transport else {}
        rabbitmq = str(properties.get("version", "?"))
    return {"postgresql": postgres, "rabbitmq": rabbitmq}


async def run_bench(settings: Settings, scenarios: list[str], plan: Plan, json_path: Path | None = None) -> int:
    report = Report()
    versions = {**machine(), **await server_versions(settings)}
    meta: dict[str, object] = {"machine": versions, "plan": {**asdict(plan), "batch_window": settings.batch_window,
                                                   "stream_stages": settings.stream_stages},
                               "scenarios": scenarios}
    report.say("machine: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    context = Context(settings, plan, report)  # one per invocation: scenarios share its measured runs
    started = time.monotonic()
    try:
        for name in scenarios:
            report.section(name)
            began = time.monotonic()
            try:
                await {**SCENARIOS, **OPT_IN}[name](context)
            except BenchFailure as error:
                report.fail(name, str(error))
            except Exception as error:
                traceback.print_exc()
                report.fail(name, f"{type(error).__name__}: {error}")
            report.say(f"({name} took {time.monotonic() - began:.1f}s)")
    finally:
        await settle()  # never leave consumer processes or databases behind
    report.summary()
    meta["took_s"] = time.monotonic() - started
    report.say(f"bench took {meta['took_s']:.1f}s")
    if json_path is not None:
        report.write_json(json_path, meta)
        report.say(f"figures written to {json_path}")
    return 1 if report.failures else 0
