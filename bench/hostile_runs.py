"""The hostile cases that judge whole runs: a database outage mid-run, and two runs of one input.

The outage is per database, so nothing else on the server notices: connections to it are refused
(`ALLOW_CONNECTIONS false`) and the open ones terminated, from a connection to `postgres`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from bench.harness import BenchEnv, consumer_queues, isolated, running_fleet, start_runs
from bench.hostile_broker import BrokerTaps
from bench.hostile_common import CaseResult, describe_run, keep_output_if, make_site, run_row, say, wait_end
from bench.workload import BenchSite, outcome_counts, synthetic_keywords
from producers.client import AutomationClient
from shared.demo_data import DEMO_TOPICS
from shared.models import ContentIdea
from shared.settings import Settings
from shared.topology import Topology

RESOLVE_SECONDS = 120.0
STAGE1_BATCH = 5  # keywords per clustering call in the determinism case
IN_FLIGHT = {
    "claims": "SELECT count(*) FROM stage_batches WHERE status = 'claimed'",  # expired: the watchdog re-issues
    "pending batches": "SELECT count(*) FROM stage_batches WHERE status = 'pending' AND emitted_at IS NOT NULL",
    "outbox rows": "SELECT count(*) FROM outbox",
}


@contextlib.asynccontextmanager
async def database_outage(database_url: str) -> AsyncIterator[int]:
    """Refuse and cut every connection to one database until the block ends; yields how many
    backends were terminated. Connections come back however the block ends."""
    url = make_url(database_url)
    admin = await asyncpg.connect(host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username,
                                  password=url.password, database="postgres")
    name = url.database
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        terminated = 0
        for _ in range(3):  # a backend that was between accept and start-up shows up a moment later
            terminated += len(await admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                name))
            await asyncio.sleep(0.3)
        yield terminated
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


async def db_outage(base: Settings, quick: bool, outage_seconds: float) -> CaseResult:
    """Cut the run's database mid-run: once it is back the run must complete, or fail with its
    reason, within 120 s; a run left `running` with nothing in flight holds the site's lock forever."""
    keywords = 40 if quick else 200
    async with isolated(base, ai_latency_ms=200) as env:
        site = await make_site(env.sessions, "outage", synthetic_keywords(keywords))
        topology = Topology.from_settings(env.settings)
        async with BrokerTaps(env.settings) as taps, AutomationClient(env.settings) as client:
            dead_tap = await taps.tap_queue(topology.dead_letter_queue.name, "dead")
            async with running_fleet(env, concurrency=4) as fleet:
                [run] = await start_runs(env, [site], client)
                before = await _mid_run(env, run.run_id, timeout=120)
                if before is None:
                    keep_output_if(env, True)
                    return CaseResult("db-outage", False, {"outage": "not started: the run ended or never "
                                                           "reached stage 2"})
                say(f"outage of {outage_seconds:.0f}s starts with the run {before}")
                async with database_outage(env.settings.database_url) as terminated:
                    await asyncio.sleep(outage_seconds)
                restored = time.monotonic()
                say(f"database back ({terminated} backends terminated); "
                    f"{len(dead_tap.seen)} dead letters during the outage")
                end = await wait_end(env, run.run_id, timeout=RESOLVE_SECONDS)
                took = time.monotonic() - restored
                last = end or await run_row(env, run.run_id)
                in_flight = await _in_flight(env, taps, topology) if end is None else {}
                alive = fleet.alive()
        resolved = end is not None and (end.status == "completed"
                                        or (end.status == "failed" and bool(end.error_message)))
        stuck = last is not None and last.status == "running" and not any(in_flight.values())
        say(f"after it: {describe_run(last)}, resolution "
            + (f"{took:.1f}s after the database came back" if end else f"none within {RESOLVE_SECONDS:.0f}s"))
        if in_flight:
            say(f"in flight at the deadline: {in_flight} -> "
                + ("dead run holding the site's lock" if stuck else "still moving"))
        say(f"dead letters in all: {len(dead_tap.seen)}; consumers alive: {sum(alive.values())}/{len(alive)}")
        met = resolved and not stuck
        keep_output_if(env, not met)
    return CaseResult("db-outage", met, {
        "outage": f"{outage_seconds:.0f}s", "run": last.status if last else "?",
        "resolved in": f"{took:.1f}s" if end else f">{RESOLVE_SECONDS:.0f}s",
        "dead run holding lock": "yes" if stuck else "no"})


async def _mid_run(env: BenchEnv, run_id: str, timeout: float) -> str | None:
    """Wait until the run is past stage 1 and still running; a description of where it is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = await run_row(env, run_id)
        if run is not None and run.status != "running":
            return None
        if run is not None and run.current_stage >= 2:
            return f"at stage {run.current_stage}, {run.total_credits_used} credits used"
        await asyncio.sleep(0.2)
    return None


async def _in_flight(env: BenchEnv, taps: BrokerTaps, topology: Topology) -> dict[str, int]:
    """What could still move a run: live claims, emitted pending batches, unsent outbox rows,
    and messages waiting in the pipeline's queues (consumer and retry queues)."""
    async with env.sessions() as session:
        figures = {name: int(await session.scalar(text(sql)) or 0) for name, sql in IN_FLIGHT.items()}
    queues = consumer_queues(topology) + [topology.retry_queue(t).name
                                          for t in range(len(topology.retry_delays_seconds))]
    figures["queued messages"] = sum((await taps.queue_depths(queues)).values())
    return figures


async def determinism(base: Settings, quick: bool) -> CaseResult:
    """The same keywords on two fresh sites, one clean run each with the offline `local` provider:
    the totals and the idea titles must be identical."""
    topics, per_topic = (5, 20) if quick else (10, 22)
    # topics interleaved, so each stage 1 batch mixes them and later batches join earlier clusters
    lists = [words[:per_topic] for words in list(DEMO_TOPICS.values())[:topics]]
    keywords = [(k, 100) for row in zip(*lists, strict=False) for k in row]
    async with isolated(base, ai_provider="local") as env:
        # small stage 1 batches: many of them in flight at once, so their order has room to vary
        sites = [await make_site(env.sessions, f"same-input-{n}", keywords, **{"1": STAGE1_BATCH}) for n in (1, 2)]
        async with AutomationClient(env.settings) as client, running_fleet(env, env.settings.concurrency):
            ends = []
            for site in sites:  # one after the other: two clean runs, not one contest
                [run] = await start_runs(env, [site], client)
                ends.append(await wait_end(env, run.run_id, timeout=900))
        counts = [await outcome_counts(env.sessions, site) for site in sites]
        titles = [await _titles(env, site) for site in sites]
        differ = sum(((titles[0] - titles[1]) + (titles[1] - titles[0])).values())
        for site, end, figures in zip(sites, ends, counts, strict=True):
            say(f"site {site.id}: {describe_run(end)}; totals {figures}")
        say(f"idea titles differing: {differ} of {sum(titles[0].values())} + {sum(titles[1].values())}")
        for title in list((titles[0] - titles[1]).elements())[:3]:
            say(f"  only in the first run: {title!r}")
        completed = all(end is not None and end.status == "completed" for end in ends)
        met = completed and counts[0] == counts[1] and differ == 0
        keep_output_if(env, not met)
    return CaseResult("determinism", met, {
        "keywords": len(keywords), "totals": "same" if counts[0] == counts[1] else
        "; ".join(f"{k} {counts[0][k]}/{counts[1][k]}" for k in counts[0] if counts[0][k] != counts[1][k]),
        "titles differing": differ, "runs": "/".join(e.status if e else "unfinished" for e in ends)})


async def _titles(env: BenchEnv, site: BenchSite) -> Counter[str]:
    async with env.sessions() as session:
        return Counter((await session.scalars(select(ContentIdea.title).where(ContentIdea.site_id == site.id))).all())

