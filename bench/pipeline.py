"""`automation bench`: the pipeline on N synthetic keywords with the simulated AI provider.

Prints, per N: wall time, batch messages processed per second, and each consumer process's
peak resident memory. Every figure is measured in this run on this machine.
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
import uuid

from sqlalchemy import func, select

from producers.client import AutomationClient
from producers.progress import find_run_id, watch
from shared.accounts import add_keywords, create_account, create_site
from shared.db import drop_database, make_engine, make_sessionmaker, upgrade_schema
from shared.models import StageBatch
from shared.settings import Settings
from shared.supervisor import ConsumerFleet

WORDS = ("solar", "garden", "coffee", "travel", "guitar", "yoga", "camera", "bread", "bike", "chess", "wine",
         "kayak", "laptop", "piano", "tea", "ski", "dog", "cat", "paint", "rug", "lamp", "boot", "tent", "soap")
MODIFIERS = ("best", "cheap", "review", "guide", "tips", "for beginners", "vs", "near me")


def synthetic_keywords(count: int) -> list[tuple[str, int]]:
    """Distinct keywords in groups of 8 that share a two-word head (one cluster per group)."""
    out = []
    for i in range(count):
        group, member = divmod(i, len(MODIFIERS))
        a, b = WORDS[group % len(WORDS)], WORDS[(group // len(WORDS)) % len(WORDS)]
        out.append((f"{a}{group} {b} {MODIFIERS[member]}", 100 + i % 900))
    return out


async def bench_once(base: Settings, keywords: int, concurrency: int, latency_ms: int) -> dict[str, object]:
    tag = uuid.uuid4().hex[:6]
    settings = base.model_copy(update={
        "database_url": base.database_url.rsplit("/", 1)[0] + f"/automation_bench_{tag}",
        "queue_prefix": f"bench{tag}", "ai_provider": "simulated", "ai_latency_ms": latency_ms,
        "log_dir": base.log_dir / "bench", "media_dir": base.media_dir / "bench"})
    await asyncio.to_thread(upgrade_schema, settings.database_url)
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    async with sessions() as session, session.begin():
        account = await create_account(session, "bench", 10**9)
        site = await create_site(session, account, "bench", **{f"stage_{n}_batch_size": s for n, s in
                                                                 {1: 20, 2: 1, 3: 20, 4: 1, 5: 1, 6: 1}.items()})
        await add_keywords(session, site, synthetic_keywords(keywords))
    fleet = ConsumerFleet(settings, concurrency=concurrency)
    fleet.start_all()
    try:
        await asyncio.sleep(3)  # let the processes import and connect before the clock starts
        key = f"bench-{tag}"
        started = time.monotonic()
        async with AutomationClient(settings) as client:
            await client.start_run(site.id, requested_by="bench", idempotency_key=key)
        run_id = await find_run_id(sessions, site.id, key, timeout=60)
        assert run_id is not None, "run did not start"

        def alive_and_sample() -> bool:
            fleet.sample_memory()
            return all(fleet.alive().values())

        run = await watch(sessions, run_id, timeout=3600, still_ok=alive_and_sample, echo=lambda _: None,
                          every=0.25)
        wall = time.monotonic() - started
        async with sessions() as session:
            batches = int(await session.scalar(select(func.count()).select_from(StageBatch)) or 0)
    finally:
        fleet.stop()
        await engine.dispose()
        await drop_database(settings.database_url)
    return {"keywords": keywords, "status": run.status if run else "timeout", "wall": wall, "batches": batches,
            "per_second": batches / wall, "peak_rss": dict(fleet.peak_rss)}


async def run_bench(settings: Settings, sizes: list[int], concurrency: int, latency_ms: int) -> int:
    from bench.provider import provider_speed

    speed = await provider_speed(settings.image_width, settings.image_height)
    print(f"offline provider (one process): {speed['articles_per_second']:.0f} articles/s, "
          f"{speed['images_per_second']:.0f} images/s at {settings.image_width}x{settings.image_height}")
    print(f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
          f"simulated AI latency {latency_ms} ms, concurrency {concurrency} per consumer")
    failures = 0
    for size in sizes:
        result = await bench_once(settings, size, concurrency, latency_ms)
        peaks = result["peak_rss"]
        assert isinstance(peaks, dict)
        print(f"\nN={size:,} keywords: {result['status']} in {result['wall']:.1f}s, "
              f"{result['batches']:,} batch messages, {result['per_second']:.0f} batch messages/s")
        print("peak RSS per process: " + ", ".join(f"{name} {rss / 2**20:.0f} MB" for name, rss in peaks.items()))
        failures += result["status"] != "completed"
    return 1 if failures else 0
