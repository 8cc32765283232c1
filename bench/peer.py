"""`python -m bench -s peer`: this pipeline beside a Celery peer, on the `overhead` workload, in one run.

Each round measures both systems one after the other (the order alternating between rounds), each on a
fresh database, queue prefix and scratch folder: N keywords at zero AI latency, the same batch sizes and
the same database work per batch (see `bench.peer_tasks`). Each prints batches/s (from the start command
to the run's completion) and CPU per batch: utime + stime of every worker process and of every
PostgreSQL backend serving the run's database (`bench.cpu`), divided by the batches. The peer's worker is
one `celery worker -P prefork -c 8` (or `-P threads`) with RabbitMQ as broker (the project's, under a
queue of the measurement's prefix) and Redis as result backend (a key prefix of its own, in a Redis
database that held no keys when chosen); everything is removed afterwards.

Celery is a bench-only extra: `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import aio_pika
import psutil
from sqlalchemy import func, select

from automation.supervisor import settings_env
from bench.cpu import CpuFigures, CpuMeter
from bench.harness import BenchEnv, BenchFailure, isolated, run_timeout, settle
from bench.pipeline import PipelineRun, measure_pipeline
from bench.workload import create_bench_site, outcome_counts
from shared.models import AutomationRun, StageBatch
from shared.settings import Settings

INSTALL_HINT = "the peer needs Celery and the Redis client, a bench-only extra: pip install -e '.[bench]'"
REPO = Path(__file__).resolve().parents[1]


def celery_missing() -> bool:
    return importlib.util.find_spec("celery") is None or importlib.util.find_spec("redis") is None


@dataclass(frozen=True)
class SystemRun:
    """One measured run of one system."""

    system: str
    batches: int
    wall: float
    cpu: CpuFigures
    counts: dict[str, int]

    @property
    def per_second(self) -> float:
        return self.batches / self.wall

    @property
    def cpu_ms(self) -> tuple[float, float, float]:
        return self.cpu.per_batch_ms(self.batches)

    @classmethod
    def of_pipeline(cls, run: PipelineRun) -> SystemRun:
        assert run.cpu is not None
        return cls("pipeline", run.batches, run.wall, run.cpu, run.counts)


def free_redis_db(host: str, port: int) -> int:
    """A Redis database number (1..15) holding no keys now, so the measurement's keys stand apart."""
    import redis

    for number in range(15, 0, -1):
        if redis.Redis(host=host, port=port, db=number).dbsize() == 0:
            return number
    raise BenchFailure("no empty Redis database (1..15) for the peer's results")


def delete_redis_keys(host: str, port: int, db: int, prefix: str) -> int:
    import redis

    client = redis.Redis(host=host, port=port, db=db)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start:start + 1000])
    return len(keys)


@dataclass
class CeleryWorker:
    process: subprocess.Popen[bytes]
    queue: str
    broker: str
    log: BinaryIO

    def pids(self) -> list[int]:
        """The worker and its pool processes (a pool may replace a child: sampled each time)."""
        try:
            parent = psutil.Process(self.process.pid)
            return [parent.pid, *(child.pid for child in parent.children(recursive=True))]
        except psutil.Error:
            return []

    def stop(self) -> None:
        self.log.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # its own session: the worker and its pool only
                self.process.wait()


def start_worker(log_path: Path, environment: dict[str, str], queue: str, pool: str, concurrency: int, broker: str
                 ) -> CeleryWorker:
    """`celery worker` in a session of its own (so a stuck one can be killed with its pool, and only it)."""
    log = log_path.open("ab")
    command = [sys.executable, "-m", "celery", "-A", "bench.peer_tasks", "worker", "-P", pool, "-c", str(concurrency),
               "-Q", queue, "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"]
    process = subprocess.Popen(command, env=environment, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    return CeleryWorker(process=process, queue=queue, broker=broker, log=log)


async def _queue_has_consumer(amqp_url: str, queue: str) -> bool:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
            return bool(declared.declaration_result.consumer_count)
        except aio_pika.exceptions.ChannelClosed:
            return False


async def _delete_queue(amqp_url: str, queue: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)
        await channel.exchange_delete(queue)


@contextlib.asynccontextmanager
async def celery_worker(env: BenchEnv, pool: str, concurrency: int, redis_url: str) -> AsyncIterator[
        tuple[CeleryWorker, object]]:
    """A Celery worker on the measurement's database and a queue of its prefix; yields it and a Celery app
    to send the first task with, once the queue has its consumer and every pool process has answered."""
    from celery import Celery

    from bench.peer_tasks import celery_config

    queue, prefix = f"{env.settings.queue_prefix}.peer", f"{env.settings.queue_prefix}."
    broker = env.settings.amqp_url
    environment = {**settings_env(env.settings), "BENCH_PEER_BROKER": broker, "BENCH_PEER_BACKEND": redis_url,
                   "BENCH_PEER_QUEUE": queue, "BENCH_PEER_PREFIX": prefix,
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    worker = start_worker(env.workdir / "celery.out", environment, queue, pool, concurrency, broker)
    process = worker.process
    app = Celery("bench_peer_client")
    app.conf.update(celery_config(broker, redis_url, queue, prefix))
    try:
        deadline = time.monotonic() + 90
        while not await _queue_has_consumer(broker, queue):
            if process.poll() is not None:
                tail = (env.workdir / "celery.out").read_text(errors="replace")[-3000:]
                raise BenchFailure(f"the Celery worker exited at start:\n{tail}")
            if time.monotonic() > deadline:
                raise BenchFailure("the Celery worker did not consume within 90 s")
            await asyncio.sleep(0.2)
        yield worker, app
    finally:
        await asyncio.to_thread(worker.stop)
        with contextlib.suppress(Exception):
            await _delete_queue(broker, queue)
        with contextlib.suppress(Exception):
            app.close()


async def measure_peer(base: Settings, keywords: int, pool: str, concurrency: int) -> SystemRun:
    """One run of the Celery peer on `keywords` synthetic keywords, on a fresh database."""
    host, port = "127.0.0.1", 6379
    db = await asyncio.to_thread(free_redis_db, host, port)
    redis_url = f"redis://{host}:{port}/{db}"
    async with isolated(base, ai_latency_ms=0) as env:
        site = await create_bench_site(env.sessions, "peer", keywords)
        await settle()  # nobody else's teardown during the measurement
        prefix = f"{env.settings.queue_prefix}."
        try:
            async with celery_worker(env, pool, concurrency, redis_url) as (worker, app):
                meter = CpuMeter(env.settings.database_url, worker.pids)
                async with meter.running():
                    run_id = f"peer-{uuid.uuid4().hex[:12]}"
                    sent_at = datetime.now(UTC)
                    await asyncio.to_thread(app.send_task, "peer.start_run",  # type: ignore[attr-defined]
                                            args=[site.id, run_id])
                    status, completed_at, error = await _wait(env, worker, run_id, run_timeout(keywords, 0))
                if status != "completed" or completed_at is None:
                    raise BenchFailure(f"the peer's run ended {status}: {error}")
        finally:
            await asyncio.to_thread(delete_redis_keys, host, port, db, prefix)
        async with env.sessions() as session:
            batches = int(await session.scalar(select(func.count()).select_from(StageBatch)) or 0)
        counts = await outcome_counts(env.sessions, site)
        return SystemRun("celery", batches, (completed_at - sent_at).total_seconds(), meter.figures(), counts)


async def _wait(env: BenchEnv, worker: CeleryWorker, run_id: str, timeout: float
                ) -> tuple[str, datetime | None, str | None]:
    deadline = time.monotonic() + timeout
    while True:
        async with env.sessions() as session:
            row = (await session.execute(
                select(AutomationRun.status, AutomationRun.completed_at, AutomationRun.error_message)
                .where(AutomationRun.run_id == run_id))).first()
        if row is not None and row.status in ("completed", "failed"):
            return row.status, row.completed_at, row.error_message
        if worker.process.poll() is not None:
            raise BenchFailure("the Celery worker died during the run")
        if time.monotonic() > deadline:
            raise BenchFailure(f"the peer's run did not finish within {timeout:.0f} s")
        await asyncio.sleep(0.25)


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def text(self, digits: int = 0) -> str:
        return f"{self.median:,.{digits}f} ({self.low:,.{digits}f} to {self.high:,.{digits}f})"


async def compare(base: Settings, keywords: int, rounds: int, concurrency: int, replicas: int, pool: str,
                  peer_concurrency: int, say: Callable[[str], None]) -> dict[str, list[SystemRun]]:
    """`rounds` interleaved rounds of both systems (the order alternates, so neither always runs first)."""
    runs: dict[str, list[SystemRun]] = {"pipeline": [], "celery": []}
    for number in range(rounds):
        order = ("pipeline", "celery") if number % 2 == 0 else ("celery", "pipeline")
        for system in order:
            if system == "pipeline":
                result = SystemRun.of_pipeline(await measure_pipeline(base, keywords, 0, concurrency, replicas))
            else:
                result = await measure_peer(base, keywords, pool, peer_concurrency)
            total, workers, postgres = result.cpu_ms
            say(f"  round {number + 1}, {system:<8}: {result.batches:,} batches in {result.wall:.1f}s = "
                f"{result.per_second:,.0f}/s; CPU per batch {total:.1f} ms ({workers:.1f} workers + "
                f"{postgres:.1f} PostgreSQL)")
            runs[system].append(result)
    return runs
