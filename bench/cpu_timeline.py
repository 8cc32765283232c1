"""Where a run's wall time goes, process by process: `python -m bench.cpu_timeline`.

Runs the `overhead` workload once (N keywords at zero AI latency, the consumers as real processes on
RabbitMQ and PostgreSQL) and samples, every 0.25 s, the CPU of each consumer process (by name, replicas
summed) and of the PostgreSQL backends serving the measurement's database, from /proc. It prints the
timeline (cores used per process, every half second), each process's CPU in all, how many of the 2
cores were busy on average, and how long one process worked alone at the end (the run's tail): with
CPU-bound stages, a run takes at least its CPU divided by the cores, and whatever part of it one
single-threaded process does alone adds to that. `--extra stage6` starts one more replica of a process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from automation.supervisor import ConsumerFleet
from bench.cpu import SAMPLE_EVERY, cpu_seconds
from bench.harness import completed_wall, isolated, run_timeout, running_fleet, settle, start_runs, wait_for_runs
from bench.workload import create_bench_site
from shared.catalogue import BATCH_STAGES
from shared.models import StageBatch
from shared.settings import Settings, get_settings

POSTGRES = "postgres"
BUSY = 0.5  # of a core: a process this busy in a sample is working
IDLE = 0.15  # of a core, the other batch stages together: the process works alone
BATCH_PROCESSES = tuple(f"stage{stage}" for stage in BATCH_STAGES)  # control, stage 7, publish, notify: bookkeeping


@dataclass
class Timeline:
    """Cores used per sample, by process name (`postgres`: the database's backends)."""

    started: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)

    def totals(self) -> dict[str, float]:
        seconds: dict[str, float] = defaultdict(float)
        for _, cores in self.samples:
            for name, used in cores.items():
                seconds[name] += used * SAMPLE_EVERY
        return dict(sorted(seconds.items(), key=lambda item: -item[1]))

    def alone_at_end(self) -> tuple[str, float]:
        """The process that worked alone at the end of the run, and for how long."""
        working = [(t, cores) for t, cores in self.samples if sum(cores.values()) > BUSY]
        if not working:
            return "", 0.0
        last = max(working[-1][1], key=lambda name: 0.0 if name == POSTGRES else working[-1][1][name])
        alone = 0
        for _, cores in reversed(working):
            others = sum(used for name, used in cores.items() if name in BATCH_PROCESSES and name != last)
            if cores.get(last, 0.0) < BUSY or others > IDLE:
                break
            alone += 1
        return last, alone * SAMPLE_EVERY


@contextlib.asynccontextmanager
async def sampling(fleet: ConsumerFleet, database_url: str) -> AsyncIterator[Timeline]:
    url = make_url(database_url)
    connection = await asyncpg.connect(host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username,
                                       password=url.password, database="postgres")
    timeline = Timeline()
    last: dict[int, float] = {}

    async def sample() -> dict[str, float]:
        names = {process.pid: name for name, processes in fleet.processes.items() for process in processes}
        for row in await connection.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", url.database):
            names[row["pid"]] = POSTGRES
        used: dict[str, float] = defaultdict(float)
        for pid, name in names.items():
            seconds = cpu_seconds(pid)
            if seconds is None:
                continue
            if pid in last:
                used[name] += (seconds - last[pid]) / SAMPLE_EVERY
            last[pid] = seconds
        return used

    async def loop() -> None:
        while True:
            await asyncio.sleep(SAMPLE_EVERY)
            timeline.samples.append((time.monotonic() - timeline.started, await sample()))

    await sample()
    task = asyncio.create_task(loop(), name="bench-cpu-timeline")
    try:
        yield timeline
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await connection.close()


def report(timeline: Timeline, batches: int, wall: float) -> None:
    totals = timeline.totals()
    names = [name for name in totals if totals[name] >= 0.05]
    print("cores used every 0.5 s (s from the start command):")
    print("   s  " + " ".join(f"{name:>8}" for name in names))
    for index in range(0, len(timeline.samples) - 1, 2):
        pair = timeline.samples[index:index + 2]
        print(f"{pair[0][0]:5.1f} " + " ".join(
            f"{sum(cores.get(name, 0.0) for _, cores in pair) / len(pair):8.2f}" for name in names))
    busy = sum(totals.values())
    print(f"\nCPU in all: {busy:.1f} s for {batches:,} batches ({1000 * busy / batches:.1f} ms a batch); "
          + ", ".join(f"{name} {seconds:.1f}" for name, seconds in totals.items() if seconds >= 0.05))
    cores = os.cpu_count() or 1
    print(f"wall {wall:.1f} s: on average {busy / wall:.2f} of {cores} cores busy; "
          f"the CPU on {cores} cores takes at least {busy / cores:.1f} s")
    name, alone = timeline.alone_at_end()
    if name:
        print(f"at the end {name} worked alone (with the database) for {alone:.1f} s, {alone / wall:.0%} of the run")


async def measure(base: Settings, keywords: int, concurrency: int, replicas: int, extra: list[str]) -> None:
    async with isolated(base, ai_latency_ms=0) as env:
        site = await create_bench_site(env.sessions, "timeline", keywords)
        async with running_fleet(env, concurrency, replicas=replicas, extra=extra) as fleet:
            async with sampling(fleet, env.settings.database_url) as timeline:
                [run] = await start_runs(env, [site])
                ends = await wait_for_runs(env, fleet, [run], timeout=run_timeout(keywords, 0))
        async with env.sessions() as session:
            batches = int(await session.scalar(select(func.count()).select_from(StageBatch)) or 0)
        wall = completed_wall(run, ends[run.run_id])
        print(f"{keywords:,} keywords at zero latency, concurrency {concurrency}, {replicas} process(es) per stage"
              + (f", one more {', '.join(extra)}" if extra else ""))
        report(timeline, batches, wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keywords", "-n", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--extra", action="append", default=[], metavar="PROCESS",
                        help="one more replica of this process (e.g. stage6); repeatable")
    args = parser.parse_args()

    async def run() -> None:
        await measure(get_settings(), args.keywords, args.concurrency, args.replicas, args.extra)
        await settle()  # the measurement's database and queues are removed before exiting

    asyncio.run(run())


if __name__ == "__main__":
    main()
