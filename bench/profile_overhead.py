"""Where the CPU of a batch goes: `python -m bench.profile_overhead`.

Runs the `overhead` workload (N keywords at zero AI latency, the consumers as real processes on RabbitMQ
and PostgreSQL) once, and meanwhile
- samples every consumer process with py-spy (`py-spy record --format raw`, active threads only, so the
  samples are CPU time) and sorts each sample into the layer it was spent in: walking from the innermost
  frame outwards, the first frame outside the standard library names the package (SQLAlchemy split into
  its SQL compiler, ORM, engine and result handling); a sample that is all standard library (the event
  loop, sockets, selectors) counts as such. It also counts, inclusively, the samples under each of our
  hot-path functions (claim, load, write, finish, the window's refill, the outbox relay);
- with `--postgres`, has PostgreSQL report each statement's CPU (`log_statement_stats`, set on the
  measurement's database only, read back from the server log, which must be readable here) and sums it
  per statement, parse/bind/execute apart. Logging costs the backends CPU itself, so the shares matter,
  not the sum; keep N small (300) since every message writes ten log lines.

It prints the total CPU per batch from /proc (as the `overhead` scenario does) beside the breakdowns.
Needs py-spy (`pip install py-spy`; it reads other processes' memory: root or ptrace rights).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bench.cpu import CpuMeter
from bench.harness import consumers_from, isolated, run_timeout, running_fleet, settle, start_runs, wait_for_runs
from bench.workload import create_bench_site
from shared.models import StageBatch
from shared.settings import Settings, get_settings

POSTGRES_LOG = Path("/var/log/postgresql/postgresql-15-main.log")
# (label, path fragment) in order: the first that matches a frame's file names its layer
LAYERS = (
    ("SQLAlchemy: SQL compiler", "sqlalchemy/sql/compiler"),
    ("SQLAlchemy: SQL expression building", "sqlalchemy/sql/"),
    ("SQLAlchemy: ORM (session, unit of work, loading)", "sqlalchemy/orm/"),
    ("SQLAlchemy: asyncpg dialect", "sqlalchemy/dialects/postgresql/asyncpg"),
    ("SQLAlchemy: engine, results, pool", "sqlalchemy/"),
    ("asyncpg", "asyncpg/"),
    ("greenlet (SQLAlchemy's asyncio bridge)", "greenlet"),
    ("FastStream", "faststream/"),
    ("aio-pika / aiormq / pamqp (AMQP)", "aio_pika/"),
    ("aio-pika / aiormq / pamqp (AMQP)", "aiormq/"),
    ("aio-pika / aiormq / pamqp (AMQP)", "pamqp/"),
    ("pydantic", "pydantic"),
    ("fast_depends (FastStream's injection)", "fast_depends/"),
    ("prometheus_client", "prometheus_client/"),
    ("PIL (the simulated images)", "PIL/"),
    ("this project: consumers/", "consumers/"),
    ("this project: shared/", "shared/"),
    ("this project: ai/", "ai/"),
)
OURS: dict[str, str | re.Pattern[str] | None] = {  # inclusive: samples with this function anywhere on the stack
    # a batch's finish runs in its stage's group committer task (`FinishGroups`), outside its handler
    "process_batch (the batch handler but its finish)": "process_batch (consumers/batches.py",
    # a stage process's claims run in its stage's claimer task (`ClaimGroups`), grouped
    "claim_batches (the claim statement, alone or grouped)": "claim_batches (consumers/batches.py",
    "StageWork.load": re.compile(r"load \(consumers/stage\d"),
    "StageWork.write": re.compile(r"write \(consumers/stage\d"),
    "finish_group (the finish transaction, alone or grouped, and its send)": "finish_group (consumers/batches.py",
    # the batch messages a finish queued, sent by its own process after the commit (reserved outbox rows)
    "OutboxRelay.send_reserved (inside finish_group)": "send_reserved (shared/outbox.py",
    # planning's window only: a finished batch refills the window inside its FINISH statement
    "emit_window (planning's window)": "emit_window (consumers/planning.py",
    "OutboxRelay.flush (relay transactions)": "flush (shared/outbox.py",
    "plan_stage": "plan_stage (consumers/planning.py",
    "keep_lease": "keep_lease (consumers/batches.py",
    # the send system call on loopback TCP (PostgreSQL, RabbitMQ): the kernel's work for both ends
    "socket writes (the send system call)": "_SelectorSocketTransport.write (asyncio/selector_events.py",
    "FastStream consume path outside the handler": None,  # computed below
}
# uvloop's loop is C code under the process's runner (`automation.event_loop`): its samples end there
LOOP = ("asyncio/base_events.py", "asyncio/events.py", "asyncio/selector_events.py", "selectors.py",
        "automation/event_loop.py")


def frame_file(frame: str) -> str:
    """py-spy names a frame `function (path:line)`, the path relative to its sys.path entry."""
    return frame[frame.rfind("(") + 1:].rsplit(":", 1)[0]


def is_stdlib(path: str) -> bool:
    top = path.split("/", 1)[0].removesuffix(".py")
    return path.startswith("<frozen") or top in sys.stdlib_module_names


def layer_of(frames: list[str]) -> str:
    """The layer of one sample (frames outermost first): the innermost frame outside the standard library
    names it; a sample that reaches the event loop's own frames first was spent in the loop."""
    for frame in reversed(frames):
        path = frame_file(frame)
        if path.startswith(LOOP):
            return "event loop, sockets, selectors (asyncio or uvloop; C code it calls)"
        if is_stdlib(path):
            continue
        for label, prefix in LAYERS:
            if path.startswith(prefix):
                return label
        return f"other: {path.split('/', 1)[0]}"
    return "standard library, outside the event loop (threads)"


def start_py_spy(py_spy: str, pid: int, rate: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy recording `pid` until it gets SIGINT; --nonblocking: the process is never paused."""
    return subprocess.Popen([py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                             "--nonblocking", "--output", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def read_raw(path: Path, keep: Path | None = None) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    if not path.exists():
        return stacks
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, keep / path.name)
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def python_breakdown(stacks: Counter[tuple[str, ...]]) -> tuple[int, Counter[str], Counter[str]]:
    total = sum(stacks.values())
    layers: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    for frames, count in stacks.items():
        layers[layer_of(list(frames))] += count
        joined = ";".join(frames)
        for name, pattern in OURS.items():
            if pattern is None:
                continue
            if (pattern.search(joined) if isinstance(pattern, re.Pattern) else pattern in joined):
                ours[name] += count
        # FastStream's frames outside our code: a publish of the relay or of a finish is not the consume path
        if "faststream/" in joined and "(consumers/batches.py" not in joined \
                and "plan_stage (consumers" not in joined and "(shared/outbox.py" not in joined:
            ours["FastStream consume path outside the handler"] += count
    return total, layers, ours


STAT_HEAD = re.compile(r"\[(\d+)\] \S+@(\S+) LOG:  (PARSE MESSAGE|BIND MESSAGE|EXECUTE MESSAGE|QUERY) STATISTICS")
USAGE = re.compile(r"!\s+([\d.]+) s user, ([\d.]+) s system")
STATEMENT = re.compile(r"\[(\d+)\] \S+@(\S+) STATEMENT:  (.*)")


def statement_cpu(log: Path, offset: int, database: str) -> dict[tuple[str, str], list[float]]:
    """{(statement, phase): [cpu seconds, count]} from the server log past `offset`, for `database`."""
    found: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    pending: dict[str, tuple[str, float]] = {}  # pid -> (phase, seconds) awaiting its STATEMENT line
    with log.open("rb") as handle:
        handle.seek(offset)
        lines = iter(handle.read().decode(errors="replace").splitlines())
        waiting_usage: tuple[str, str] | None = None
        statement_pid: str | None = None
        text: list[str] = []
        for line in lines:
            if statement_pid is not None:  # a statement's text continues on tab-indented lines
                if line.startswith("\t"):
                    text.append(line.strip())
                    continue
                phase, seconds = pending.pop(statement_pid)
                entry = found[(_normalize(" ".join(text)), phase)]
                entry[0] += seconds
                entry[1] += 1
                statement_pid, text = None, []
            if head := STAT_HEAD.search(line):
                if head.group(2) == database:
                    waiting_usage = (head.group(1), head.group(3).split()[0].lower())
                continue
            if waiting_usage is not None and (usage := USAGE.search(line)):
                pending[waiting_usage[0]] = (waiting_usage[1], float(usage.group(1)) + float(usage.group(2)))
                waiting_usage = None
                continue
            if (statement := STATEMENT.search(line)) and statement.group(2) == database \
                    and statement.group(1) in pending:
                statement_pid, text = statement.group(1), [statement.group(3)]
    return found


def _normalize(sql: str) -> str:
    sql = re.sub(r"\s+", " ", sql).strip()
    return sql[:110]


async def profile(base: Settings, keywords: int, replicas: int, concurrency: int, postgres: bool, rate: int,
                  keep: Path | None, tree: Path | None = None) -> None:
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None:
        raise SystemExit("py-spy is missing: pip install py-spy")
    async with isolated(base, ai_latency_ms=0) as env:
        site = await create_bench_site(env.sessions, "profile", keywords)
        database = str(make_url(env.settings.database_url).database)
        offset = 0
        if postgres:
            admin = await asyncpg.connect(host="127.0.0.1", user="postgres", database="postgres")
            try:
                await admin.execute(f'ALTER DATABASE "{database}" SET log_statement_stats = on')
            finally:
                await admin.close()
            offset = await asyncio.to_thread(lambda: POSTGRES_LOG.stat().st_size)
        with consumers_from(tree):  # the fleet's processes start in it
            async with running_fleet(env, concurrency, replicas=replicas) as fleet:
                spies = [(out, start_py_spy(py_spy, process.pid, rate, out))
                         for name, processes in fleet.processes.items() for index, process in enumerate(processes)
                         for out in [env.workdir / f"{name}-{index}.raw"]]
                await asyncio.sleep(1.0)  # py-spy attached
                meter = CpuMeter(env.settings.database_url,
                                 lambda: [p.pid for ps in fleet.processes.values() for p in ps])
                async with meter.running():
                    [run] = await start_runs(env, [site])
                    await wait_for_runs(env, fleet, [run], timeout=run_timeout(keywords, 0))
                for _, spy in spies:
                    spy.send_signal(signal.SIGINT)
                for _, spy in spies:
                    await asyncio.to_thread(spy.wait, 60)
        async with env.sessions() as session:
            batches = int(await session.scalar(select(func.count()).select_from(StageBatch)) or 0)
        cpu = meter.figures()
        total_ms, workers_ms, postgres_ms = cpu.per_batch_ms(batches)
        print(f"{keywords:,} keywords, {batches:,} batches, {replicas} process(es) per stage; CPU per batch from "
              f"/proc: {total_ms:.1f} ms = {workers_ms:.1f} consumers + {postgres_ms:.1f} PostgreSQL backends"
              + (" (PostgreSQL inflated by log_statement_stats)" if postgres else ""))
        stacks: Counter[tuple[str, ...]] = Counter()
        for out, _ in spies:
            stacks.update(await asyncio.to_thread(read_raw, out, keep))
        samples, layers, ours = python_breakdown(stacks)
        if samples:
            scale = workers_ms / samples  # ms of consumer CPU per batch that one sample stands for
            print(f"\nconsumer processes: {samples:,} py-spy samples; ms per batch (share)")
            for label, count in layers.most_common():
                print(f"  {label:<52} {count * scale:6.2f} ms  {count / samples:6.1%}")
            print("\ninclusive, under our functions:")
            for label in OURS:
                print(f"  {label:<52} {ours[label] * scale:6.2f} ms  {ours[label] / samples:6.1%}")
        if postgres:
            found = statement_cpu(POSTGRES_LOG, offset, database)
            summed = sum(seconds for seconds, _ in found.values())
            print(f"\nPostgreSQL backends, CPU by statement (log_statement_stats; {summed / batches * 1000:.2f} ms "
                  f"per batch in statements of {postgres_ms:.2f} measured from /proc):")
            by_statement: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
            for (sql, phase), (seconds, executions) in found.items():
                entry = by_statement[sql]
                entry[{"parse": 0, "bind": 1, "execute": 2, "query": 2}[phase]] += seconds
                if phase in ("execute", "query"):
                    entry[3] += executions
            rows = sorted(by_statement.items(), key=lambda item: -sum(item[1][:3]))
            statements = sum(calls for *_, calls in by_statement.values())
            print(f"  statements executed: {int(statements):,}, {statements / batches:.2f} per batch (BEGIN and "
                  f"COMMIT included; each one a round trip)")
            print(f"  {'ms/batch':>8} {'parse':>6} {'bind':>6} {'exec':>6} {'calls':>7}  statement")
            for sql, (parse, bind, execute, calls) in rows[:25]:
                print(f"  {1000 * (parse + bind + execute) / batches:8.3f} {1000 * parse / batches:6.3f} "
                      f"{1000 * bind / batches:6.3f} {1000 * execute / batches:6.3f} {int(calls):7,}  {sql}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keywords", "-n", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--postgres", action="store_true", help="also PostgreSQL's CPU per statement")
    parser.add_argument("--keep", type=Path, help="copy py-spy's raw stacks here")
    parser.add_argument("--consumers-from", type=Path, metavar="DIR",
                        help="run the consumers from another checkout (e.g. a git worktree of an earlier commit)")
    args = parser.parse_args()
    async def run() -> None:
        await profile(get_settings(), args.keywords, args.replicas, args.concurrency, args.postgres, args.rate,
                      args.keep, args.consumers_from)
        await settle()  # the measurement's database and queues are removed before exiting

    asyncio.run(run())


if __name__ == "__main__":
    main()
