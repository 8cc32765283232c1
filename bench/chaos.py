"""`python -m bench.chaos`: kill -9 random consumers during a 1,000-keyword run and count the damage.

Prints kills survived, runs completed, lost items and duplicated items (goal: 0 and 0).
A figure-printing script, not a test: it takes minutes and its numbers go in the README.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import time
import uuid

from sqlalchemy import text

from automation.supervisor import ConsumerFleet
from bench.workload import synthetic_keywords
from consumers.app import PROCESSES
from producers.client import AutomationClient
from producers.progress import find_run_id, watch
from shared.accounts import add_keywords, create_account, create_site
from shared.db import drop_database, make_engine, make_sessionmaker, upgrade_schema
from shared.settings import Settings, get_settings

DAMAGE = {
    "lost": """
        SELECT (SELECT count(*) FROM keywords WHERE status='new' AND cluster_id IS NULL AND NOT disabled)
             + (SELECT count(*) FROM tasks t WHERE NOT EXISTS (SELECT 1 FROM content c WHERE c.task_id=t.id))
             + (SELECT count(*) FROM content WHERE status <> 'review')
             + (SELECT count(*) FROM images WHERE status <> 'generated')
             + (SELECT count(*) FROM stage_batches WHERE status <> 'done')""",
    "duplicated": """
        SELECT (SELECT count(*) FROM (SELECT task_id FROM content GROUP BY task_id HAVING count(*) > 1) d)
             + (SELECT count(*) FROM (SELECT batch_id FROM credit_ledger WHERE batch_id IS NOT NULL
                                      GROUP BY batch_id HAVING count(*) > 1) d)
             + (SELECT count(*) FROM (SELECT content_id, position FROM images GROUP BY 1, 2 HAVING count(*) > 1) d)
             + (SELECT count(*) FROM stage_batches WHERE status = 'done' AND credits > 0
                  AND NOT EXISTS (SELECT 1 FROM credit_ledger l WHERE l.batch_id = stage_batches.id))
             + abs((SELECT coalesce(sum(total_credits_used), 0) FROM automation_runs)
                   - (SELECT coalesce(sum(-delta), 0) FROM credit_ledger WHERE delta < 0))""",
}


async def chaos(base: Settings, keywords: int, cycles: int, seed: int) -> int:
    tag = uuid.uuid4().hex[:6]
    settings = base.model_copy(update={
        "database_url": base.database_url.rsplit("/", 1)[0] + f"/automation_chaos_{tag}",
        "queue_prefix": f"chaos{tag}", "ai_provider": "simulated", "ai_latency_ms": 20,
        "batch_lease_seconds": 5, "watchdog_interval_seconds": 1.0, "log_dir": base.log_dir / "chaos"})
    await asyncio.to_thread(upgrade_schema, settings.database_url)
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    async with sessions() as session, session.begin():
        account = await create_account(session, "chaos", 10**9)
        site = await create_site(session, account, "chaos", stage_4_batch_size=2, stage_6_batch_size=4)
        await add_keywords(session, site, synthetic_keywords(keywords))
    fleet = ConsumerFleet(settings, concurrency=4)
    fleet.start_all()
    rng = random.Random(seed)
    kills = 0
    started = time.monotonic()
    try:
        key = f"chaos-{tag}"
        async with AutomationClient(settings) as client:
            await client.start_run(site.id, idempotency_key=key)
        run_id = await find_run_id(sessions, site.id, key, timeout=60)
        assert run_id is not None
        watcher = asyncio.create_task(watch(sessions, run_id, timeout=1800, echo=lambda _: None))
        while kills < cycles and not watcher.done():
            await asyncio.sleep(rng.uniform(0.3, 2.0))
            victim = rng.choice(PROCESSES)
            await asyncio.to_thread(fleet.kill, victim, 0, signal.SIGKILL)
            fleet.processes[victim].pop(0)
            fleet.start(victim)
            kills += 1
            print(f"[{time.monotonic() - started:6.1f}s] kill -9 {victim}, restarted", flush=True)
        run = await watcher
        async with sessions() as session:
            damage = {name: int(await session.scalar(text(sql)) or 0) for name, sql in DAMAGE.items()}
    finally:
        fleet.stop()
        await engine.dispose()
        await drop_database(settings.database_url)
    completed = int(run is not None and run.status == "completed")
    print(f"\nchaos over {keywords:,} keywords, seed {seed}: kills survived {kills}, runs completed {completed}/1, "
          f"lost items {damage['lost']}, duplicated items {damage['duplicated']}, "
          f"wall {time.monotonic() - started:.1f}s")
    return 0 if completed and not damage["lost"] and not damage["duplicated"] else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keywords", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=20, help="kill/restart cycles (M)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    raise SystemExit(asyncio.run(chaos(get_settings(), args.keywords, args.cycles, args.seed)))


if __name__ == "__main__":
    main()
