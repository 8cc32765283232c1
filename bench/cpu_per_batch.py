"""The CPU one batch costs the consumer code, without RabbitMQ: `python -m bench.cpu_per_batch`.

Runs the whole pipeline in this process on N synthetic keywords with the zero-latency simulated
provider, delivering messages through the in-memory bus of the tests (the consumers' real subscribers,
middleware included, on FastStream's in-memory broker, fed by the outbox relay), and prints the process
CPU time per batch. `--profile FILE` also writes a cProfile dump of the run (`python -m pstats FILE`).
It is the figure to watch when changing the hot path. Since the bus runs the real subscribers, the
figure includes FastStream's consume path and its test broker's mocks: about 6 ms a batch more than
the plain handler calls measured until 2026-11-29, so older figures do not compare.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import time
import uuid
from pathlib import Path

from sqlalchemy import func, select

from ai.simulated import SimulatedProvider
from bench.workload import create_bench_site
from consumers.deps import Deps
from shared.automation_logger import AutomationLogger
from shared.db import drop_database, make_engine, make_sessionmaker, upgrade_schema
from shared.events import StartRun
from shared.models import AutomationRun, StageBatch
from shared.outbox import NoRelay
from shared.settings import get_settings
from tests.support import Bus


async def measure(keywords: int, profile: Path | None) -> None:
    base = get_settings()
    scratch = Path("/tmp") / f"automation-cpu-{uuid.uuid4().hex[:6]}"
    settings = base.model_copy(update={
        "database_url": base.database_url.rsplit("/", 1)[0] + f"/automation_bench_cpu_{scratch.name[-6:]}",
        "log_dir": scratch / "logs", "media_dir": scratch / "media", "ai_provider": "simulated"})
    await asyncio.to_thread(upgrade_schema, settings.database_url)
    engine = make_engine(settings, pre_ping=False)
    sessions = make_sessionmaker(engine)
    try:
        site = await create_bench_site(sessions, "cpu", keywords)
        deps = Deps(settings=settings, sessions=sessions, logger=AutomationLogger(settings.log_dir),
                    provider=SimulatedProvider(0), relay=NoRelay(), worker_id="bench")
        bus = Bus(deps)
        await bus.send(StartRun(site_id=site.id))
        profiler = cProfile.Profile() if profile else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler and profile:
            profiler.enable()
        await bus.pump()
        if profiler and profile:
            profiler.disable()
            profiler.dump_stats(profile)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        await bus.close()
        async with sessions() as session:
            batches = int(await session.scalar(select(func.count()).select_from(StageBatch)) or 0)
            status = await session.scalar(select(AutomationRun.status))
        print(f"{keywords:,} keywords, run {status}: {batches:,} batches, {cpu:.1f}s CPU, {wall:.1f}s wall: "
              f"{cpu / batches * 1000:.2f} ms CPU per batch in one process (in-memory broker, RabbitMQ excluded)")
    finally:
        await engine.dispose()
        await drop_database(settings.database_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keywords", "-n", type=int, default=300)
    parser.add_argument("--profile", type=Path, help="also write a cProfile dump here")
    args = parser.parse_args()
    asyncio.run(measure(args.keywords, args.profile))


if __name__ == "__main__":
    main()
