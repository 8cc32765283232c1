"""The measurement harness: an isolated database and queue prefix, the fleet of consumer processes,
starting runs, watching them to the end, and sampling memory while they go.

Every measurement gets a fresh database (`automation_bench_<tag>`), a fresh queue prefix
(`bench<tag>`) and a scratch folder for logs and images; all three are removed afterwards (the
folder is kept when something failed, so the consumers' output can be read). The teardown (stopping
the fleet, dropping the database) overlaps the next measurement's database set-up, but `settle()` waits
for it before the next fleet starts (two fleets' connection pools could exceed PostgreSQL's
`max_connections`) and before any clock starts, so no measurement shares the machine with another
one's leftovers.
Nothing here holds per-item data: runs are followed through a few rows of `automation_runs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from automation.supervisor import ConsumerFleet
from bench.workload import BenchSite
from producers.client import AutomationClient
from shared.db import drop_database, make_engine, make_sessionmaker, upgrade_schema
from shared.models import AutomationRun
from shared.settings import Settings
from shared.topology import Topology

SAMPLE_EVERY = 0.25  # seconds between memory samples and run polls
VACUUM_EVERY = 60.0  # autovacuum_naptime's default
FINAL_STATUSES = ("completed", "failed", "paused")


class BenchFailure(Exception):
    """A measurement could not produce its figures (a run failed, timed out or a process died)."""


@dataclass
class BenchEnv:
    """One measurement's private world."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    workdir: Path
    fleets: list[ConsumerFleet] = field(default_factory=list)
    failed: bool = False


_teardowns: set[asyncio.Task[None]] = set()


async def settle() -> None:
    """Wait until earlier measurements are torn down (call before starting a clock)."""
    while _teardowns:
        await asyncio.gather(*_teardowns, return_exceptions=True)


@contextlib.asynccontextmanager
async def isolated(base: Settings, **overrides: object) -> AsyncIterator[BenchEnv]:
    """A fresh database, queue prefix and scratch folder, with the simulated provider; on exit its
    fleets are stopped and everything is removed, in the background (see `settle`)."""
    tag = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix=f"automation-bench-{tag}-"))
    settings = base.model_copy(update={
        "database_url": base.database_url.rsplit("/", 1)[0] + f"/automation_bench_{tag}",
        "queue_prefix": f"bench{tag}", "ai_provider": "simulated",
        "log_dir": workdir / "logs", "media_dir": workdir / "media", **overrides})
    await asyncio.to_thread(upgrade_schema, settings.database_url)
    engine = make_engine(settings, pool_size=4)
    env = BenchEnv(settings=settings, engine=engine, sessions=make_sessionmaker(engine), workdir=workdir)
    try:
        yield env
    except BaseException:
        env.failed = True
        raise
    finally:
        task = asyncio.create_task(_tear_down(env), name=f"bench-teardown-{tag}")
        _teardowns.add(task)
        task.add_done_callback(_teardowns.discard)


async def _tear_down(env: BenchEnv) -> None:
    for fleet in env.fleets:
        await asyncio.to_thread(fleet.stop)
    await env.engine.dispose()
    try:
        await drop_database(env.settings.database_url)
        await delete_topology(env.settings)
    except Exception as error:  # the figures are taken already; say what is left behind
        print(f"  (could not remove {env.settings.queue_prefix} completely: {error})", flush=True)
    if env.failed:
        print(f"  (consumer output and logs kept in {env.workdir})", flush=True)
    else:
        await asyncio.to_thread(shutil.rmtree, env.workdir, True)


def consumer_queues(topology: Topology) -> list[str]:
    """Every queue a consumer process subscribes to (control, plan and batch queues)."""
    return list(dict.fromkeys(queue.name for queue, _ in topology.bindings()))


async def delete_topology(settings: Settings) -> None:
    """Remove every exchange and queue of the measurement's prefix."""
    topology = Topology.from_settings(settings)
    names = [*consumer_queues(topology), topology.dead_letter_queue.name,
             *(topology.retry_queue(t).name for t in range(len(topology.retry_delays_seconds)))]
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
        for exchange in (topology.exchange, topology.dead_letter_exchange, topology.retry_exchange):
            await channel.exchange_delete(exchange.name)


async def missing_consumers(settings: Settings, at_least: Mapping[str, int] | None = None) -> list[str]:
    """Consumer queues that do not exist yet or have fewer consumers than `at_least` says (1 for a queue it
    does not name); passive declares, no side effects."""
    missing = []
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        for name in consumer_queues(Topology.from_settings(settings)):
            channel = await connection.channel()  # a failed passive declare closes its channel
            try:
                queue = await channel.declare_queue(name, passive=True)
                if (queue.declaration_result.consumer_count or 0) < (at_least or {}).get(name, 1):
                    missing.append(name)
            except aio_pika.exceptions.ChannelClosed:
                missing.append(name)
            finally:
                if not channel.is_closed:
                    await channel.close()
    return missing


def output_tail(fleet: ConsumerFleet, name: str, lines: int = 15) -> str:
    path = fleet.log_dir / f"{name}-0.out" if fleet.log_dir else None
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def dead_processes(fleet: ConsumerFleet) -> list[str]:
    return [name for name, alive in fleet.alive().items() if not alive]


@contextlib.contextmanager
def consumers_from(tree: Path | None) -> Iterator[None]:
    """Fleets started inside the block run `python -m automation.cli` from `tree` (another checkout of
    the same schema: their working directory, first on sys.path); None: from this one."""
    if tree is None:
        yield
        return
    here, path = Path.cwd(), os.environ.get("PYTHONPATH")
    os.chdir(tree)
    os.environ["PYTHONPATH"] = str(tree)
    try:
        yield
    finally:
        os.chdir(here)
        if path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = path


@contextlib.asynccontextmanager
async def running_fleet(env: BenchEnv, concurrency: int, ready_timeout: float = 90.0, replicas: int = 1,
                        extra: Sequence[str] = ()) -> AsyncIterator[ConsumerFleet]:
    """control and stage1..stage7 as OS processes (`replicas` of each batch stage, and one more of each
    process named in `extra`), yielded once every queue has its consumer and the previous measurement is
    gone (so the clock never includes imports, connects or someone else's teardown); memory is sampled
    every 0.25 s meanwhile. The env's teardown stops them."""
    await settle()  # the previous fleet's connections are gone before this one opens its own
    fleet = ConsumerFleet(env.settings, concurrency=concurrency, log_dir=env.workdir / "fleet")
    env.fleets.append(fleet)
    fleet.start_all()
    for _ in range(replicas - 1):
        for stage in range(1, 7):
            fleet.start(f"stage{stage}")
    for name in extra:
        fleet.start(name)

    async def sample() -> None:
        while True:
            fleet.sample_memory()
            await asyncio.sleep(SAMPLE_EVERY)

    sampler = asyncio.create_task(sample(), name="bench-memory-sampler")
    vacuum = asyncio.create_task(vacuum_if_autovacuum_is_off(env), name="bench-vacuum")
    try:
        deadline = time.monotonic() + ready_timeout
        topology = Topology.from_settings(env.settings)
        at_least = {topology.batch_queue(stage).name: replicas + extra.count(f"stage{stage}") for stage in range(1, 7)}
        while missing := await missing_consumers(env.settings, at_least):
            if dead := dead_processes(fleet):
                raise BenchFailure(f"{dead[0]} exited at start:\n{output_tail(fleet, dead[0].split('#')[0])}")
            if time.monotonic() > deadline:
                raise BenchFailure(f"consumers not ready after {ready_timeout:.0f}s: {', '.join(missing)}")
            await asyncio.sleep(0.2)
        yield fleet
    finally:
        sampler.cancel()
        vacuum.cancel()


async def vacuum_if_autovacuum_is_off(env: BenchEnv) -> None:
    """Stand in for autovacuum where the server has it off (as on the CI machines): a run churns
    through millions of row versions (batch states, outbox rows, the run's counters), and without
    vacuum the dead index entries slow every lookup as a long run goes on (stage 6 of a
    100,000-keyword run fell from 110 to 48 batches/s). Production servers run autovacuum, which
    visits such tables about every minute; this does the same, so the figures are production's."""
    async with env.engine.connect() as connection:
        if await connection.scalar(text("SHOW autovacuum")) == "on":
            return
    print("  (autovacuum is off on this server: the harness vacuums the database every "
          f"{VACUUM_EVERY:.0f} s, as autovacuum would)", flush=True)
    while True:
        await asyncio.sleep(VACUUM_EVERY)
        try:
            async with env.engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.execute(text("VACUUM (ANALYZE)"))
        except Exception as error:  # the measurement goes on; say why the figures may suffer
            print(f"  (vacuum failed: {error})", flush=True)


@dataclass(frozen=True)
class StartedRun:
    site: BenchSite
    run_id: str
    sent_at: datetime  # when the start command was sent: the clock's zero for this run


@dataclass(frozen=True)
class RunEnd:
    status: str
    completed_at: datetime | None
    error: str | None


async def start_runs(env: BenchEnv, sites: Iterable[BenchSite], client: AutomationClient | None = None
                     ) -> list[StartedRun]:
    """Send one `run.start` per site (in order, back to back), then find the runs control created."""
    async with contextlib.AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(AutomationClient(env.settings))
        sent = []
        for site in sites:
            key = f"bench-{site.id}-{uuid.uuid4().hex[:6]}"
            sent_at = datetime.now(UTC)
            await client.start_run(site.id, requested_by="bench", idempotency_key=key)
            sent.append((site, key, sent_at))
    started = []
    deadline = time.monotonic() + 60
    for site, key, sent_at in sent:
        run_id = None
        while run_id is None:
            async with env.sessions() as session:
                run_id = await session.scalar(select(AutomationRun.run_id).where(
                    AutomationRun.site_id == site.id, AutomationRun.idempotency_key == key))
            if run_id is None:
                if time.monotonic() > deadline:
                    raise BenchFailure(f"run.start for site {site.id} created no run within 60s")
                await asyncio.sleep(0.05)
        started.append(StartedRun(site=site, run_id=run_id, sent_at=sent_at))
    return started


async def wait_for_runs(env: BenchEnv, fleet: ConsumerFleet, runs: list[StartedRun], timeout: float
                        ) -> dict[str, RunEnd]:
    """Poll until every run is completed, failed or paused; a dead consumer or the timeout is a failure."""
    ids = [run.run_id for run in runs]
    deadline = time.monotonic() + timeout
    while True:
        async with env.sessions() as session:
            rows = (await session.execute(
                select(AutomationRun.run_id, AutomationRun.status, AutomationRun.completed_at,
                       AutomationRun.error_message).where(AutomationRun.run_id.in_(ids)))).all()
        ends = {row.run_id: RunEnd(row.status, row.completed_at, row.error_message) for row in rows}
        if len(ends) == len(ids) and all(end.status in FINAL_STATUSES for end in ends.values()):
            return ends
        if dead := dead_processes(fleet):
            raise BenchFailure(f"consumer {dead[0]} died during the run:\n{output_tail(fleet, dead[0].split('#')[0])}")
        if time.monotonic() > deadline:
            open_runs = [i for i in ids if ends.get(i) is None or ends[i].status not in FINAL_STATUSES]
            raise BenchFailure(f"{len(open_runs)} run(s) not finished within {timeout:.0f}s")
        await asyncio.sleep(SAMPLE_EVERY)


def completed_wall(run: StartedRun, end: RunEnd) -> float:
    """Seconds from the start command to the run's completion (both on this machine's clock)."""
    if end.status != "completed" or end.completed_at is None:
        raise BenchFailure(f"run {run.run_id} ended {end.status}: {end.error or 'no error recorded'}")
    return (end.completed_at - run.sent_at).total_seconds()


def run_timeout(keywords: int, latency_ms: int) -> float:
    """Generous: 5 min plus 70 ms per keyword (100k keywords: about 2 h), more when calls are slow."""
    return 300 + keywords * (0.07 + latency_ms / 1000 * 0.2)
