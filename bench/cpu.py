"""CPU time of a measurement, from /proc: the worker processes and the PostgreSQL backends serving the
measurement's database.

`CpuMeter` samples `utime + stime` of every pid it is given (the consumer fleet, or a Celery worker and
its pool children) and of every backend `pg_stat_activity` lists for the database, every 0.25 s while a
run goes, keeping the last figure of each pid; a pid first seen after `start()` counts from zero (a
backend or a pool child that appeared during the run). What a pid used after its last sample before it
exited is lost (at most 0.25 s of it), so connections that live for one statement would be undercounted:
both systems measured here keep pooled connections. The PostgreSQL query itself runs on a connection to
the `postgres` database, so the meter's own backend is not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

import asyncpg
from sqlalchemy.engine import make_url

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_EVERY = 0.25


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process (its threads included), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()  # the command name may hold spaces: skip past it
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass(frozen=True)
class CpuFigures:
    workers: float  # seconds of CPU of the worker processes during the measurement
    postgres: float  # seconds of CPU of the database's backends
    worker_pids: int  # how many worker processes were seen
    backend_pids: int

    @property
    def total(self) -> float:
        return self.workers + self.postgres

    def per_batch_ms(self, batches: int) -> tuple[float, float, float]:
        """(total, workers, postgres) in milliseconds per batch."""
        return (1000 * self.total / batches, 1000 * self.workers / batches, 1000 * self.postgres / batches)


class CpuMeter:
    def __init__(self, database_url: str, worker_pids: Callable[[], Iterable[int]]) -> None:
        url = make_url(database_url)
        self.database = url.database
        self.connect = dict(host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username,
                            password=url.password, database="postgres")
        self.worker_pids = worker_pids
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.workers: set[int] = set()
        self.backends: set[int] = set()
        self._connection: asyncpg.Connection | None = None

    async def _backend_pids(self) -> list[int]:
        if self._connection is None:
            self._connection = await asyncpg.connect(**self.connect)
        rows = await self._connection.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", self.database)
        return [row["pid"] for row in rows]

    async def sample(self, baseline: bool = False) -> None:
        workers = set(self.worker_pids())
        backends = set(await self._backend_pids())
        for pid in workers | backends:
            seconds = cpu_seconds(pid)
            if seconds is None:
                continue
            if baseline:
                self.base[pid] = seconds
            else:
                self.base.setdefault(pid, 0.0)
                (self.workers if pid in workers else self.backends).add(pid)
            self.last[pid] = seconds

    def figures(self) -> CpuFigures:
        def used(pids: set[int]) -> float:
            return sum(self.last[pid] - self.base[pid] for pid in pids)

        return CpuFigures(workers=used(self.workers), postgres=used(self.backends - self.workers),
                          worker_pids=len(self.workers), backend_pids=len(self.backends))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[CpuMeter]:
        """Baseline now, sample every 0.25 s, and once more on exit (call `figures()` after)."""
        await self.sample(baseline=True)

        async def loop() -> None:
            while True:
                await asyncio.sleep(SAMPLE_EVERY)
                await self.sample()

        task = asyncio.create_task(loop(), name="bench-cpu-meter")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            try:
                await self.sample()
            finally:
                if self._connection is not None:
                    await self._connection.close()
