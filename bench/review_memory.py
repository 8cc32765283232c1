"""Stage 7's memory against the size of the review queue: `python -m bench.review_memory`.

Stage 7 is the one consumer whose work grows with the site: it lists every article in review
(37,500 for a 100,000-keyword site). For each size, this seeds that many articles in review on a
fresh database, then completes a run at stage 7 in a fresh process, the way the stage 7 consumer
does (its events relayed too), and prints the peak of that process's Python heap meanwhile and
its RSS. The whole pipeline's figure is the `scale` scenario of `automation bench`; this one
takes seconds instead of hours.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tracemalloc
import uuid
from pathlib import Path

from sqlalchemy import select, text

from bench.harness import isolated, settle
from bench.workload import create_bench_site
from shared.settings import get_settings

DEFAULT_SIZES = (3_750, 37_500)  # the articles of a 10,000- and a 100,000-keyword site

SEED_REVIEW_QUEUE = (
    """INSERT INTO clusters (site_id, name, description, status)
       VALUES (:site_id, 'review memory', '', 'mapped')""",
    """INSERT INTO content_ideas (site_id, cluster_id, title, content_type, target_keywords, outline,
                                  description, status)
       SELECT :site_id, (SELECT max(id) FROM clusters WHERE site_id = :site_id), 'idea ' || n, 'guide',
              '[]', '[]', '', 'queued'
         FROM generate_series(1, :count) AS n""",
    """INSERT INTO tasks (site_id, idea_id, title, status)
       SELECT site_id, id, title, 'completed' FROM content_ideas WHERE site_id = :site_id""",
    """INSERT INTO content (site_id, task_id, title, meta_title, meta_description, slug, html, markdown,
                            sections, word_count, status)
       SELECT site_id, id, title, title, '', 'task-' || id, '<h1></h1>', '#', '[]', 100, 'review'
         FROM tasks WHERE site_id = :site_id""",
    """INSERT INTO automation_runs (run_id, site_id, status, current_stage, trigger, requested_by,
                                    total_credits_used, estimated_credits, started_at)
       VALUES (:run_id, :site_id, 'running', 7, 'manual', 'bench', 0, 0, now())""",
)


async def child(database_url: str, run_id: str, workdir: str) -> None:
    """Complete the run at stage 7 in this process and relay its events, as the stage 7 consumer
    does; print the peak of the Python heap meanwhile (tracemalloc) and the process's RSS, in KiB."""
    from ai.simulated import SimulatedProvider
    from consumers.deps import Deps
    from consumers.stage7_review import complete_run
    from shared.automation_logger import AutomationLogger
    from shared.db import make_engine, make_sessionmaker
    from shared.events import RequestStage
    from shared.models import AutomationRun
    from shared.outbox import OutboxRelay

    class Unpublished:
        """The broker's part is not measured: the relay reads and hands over each event."""

        async def send(self, routing_key: str, payload: object) -> None:
            pass

    settings = get_settings().model_copy(update={"database_url": database_url})
    engine = make_engine(settings, pool_size=2, pre_ping=False)
    sessions = make_sessionmaker(engine)
    relay = OutboxRelay(sessions, Unpublished(), 1.0)
    async with sessions() as session:  # connect and warm up before the baseline
        await session.scalar(select(AutomationRun.status).where(AutomationRun.run_id == run_id))
    deps = Deps(settings=settings, sessions=sessions, logger=AutomationLogger(Path(workdir)),
                provider=SimulatedProvider(0), relay=relay, worker_id="bench")
    gc.collect()
    rss_before = current_rss_kib()
    tracemalloc.start()
    await complete_run(deps, RequestStage.for_stage(run_id, 7))
    relayed = await relay.flush()
    _, heap_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    async with sessions() as session:
        status = await session.scalar(select(AutomationRun.status).where(AutomationRun.run_id == run_id))
    await engine.dispose()
    print(json.dumps({"heap_peak_kib": heap_peak // 1024, "rss_before_kib": rss_before,
                      "rss_after_kib": current_rss_kib(), "status": status, "relayed": relayed}))


def current_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def measure(sizes: list[int]) -> None:
    print(f"{'articles in review':>18}  {'Python heap peak MB':>19}  {'RSS before MB':>13}  {'RSS after MB':>12}")
    for count in sizes:
        async with isolated(get_settings()) as env:
            site = await create_bench_site(env.sessions, "review", 8)
            run_id = f"review_{uuid.uuid4().hex[:8]}"
            async with env.sessions() as session, session.begin():
                for statement in SEED_REVIEW_QUEUE:
                    await session.execute(text(statement), {"site_id": site.id, "count": count, "run_id": run_id})
            process = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "bench.review_memory", "--child", env.settings.database_url,
                                 run_id, str(env.workdir)], capture_output=True, text=True, check=True)
            figures = json.loads(process.stdout.strip().splitlines()[-1])
            if figures["status"] != "completed" or figures["relayed"] != 2:
                raise SystemExit(f"the run ended {figures['status']} with {figures['relayed']} events relayed")
            print(f"{count:>18,}  {figures['heap_peak_kib'] / 1024:>19.2f}  {figures['rss_before_kib'] / 1024:>13.1f}  "
                  f"{figures['rss_after_kib'] / 1024:>12.1f}", flush=True)
    await settle()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", "-n", type=int, action="append", help="articles in review (repeatable)")
    parser.add_argument("--child", nargs=3, metavar=("DATABASE_URL", "RUN_ID", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(*args.child))
    else:
        asyncio.run(measure(args.count or list(DEFAULT_SIZES)))


if __name__ == "__main__":
    main()
