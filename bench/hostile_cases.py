"""The hostile cases that attack through the broker: endless failures, malformed and forged messages.

Each case runs in its own database and queue prefix (`bench.harness.isolated`) with every consumer
as an OS process, taps the exchanges it judges, and returns a `CaseResult` with its figures.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict

from bench.harness import BenchEnv, isolated, running_fleet, start_runs
from bench.hostile_broker import BrokerTaps, wait_quiet
from bench.hostile_common import (
    CaseResult,
    check_dead_letters,
    describe_run,
    keep_output_if,
    make_site,
    per_attempt,
    say,
    wait_end,
)
from bench.hostile_messages import Hostile, forged_stage_commands, malformed
from bench.hostile_provider import FAIL_MARKER
from bench.workload import BenchSite, outcome_counts, synthetic_keywords
from producers.client import AutomationClient
from producers.progress import snapshot
from shared.models import AutomationRun
from shared.settings import Settings
from shared.topology import Topology

MAX_ATTEMPTS = 5
RETRY_BASE = 0.2


async def retries(base: Settings, quick: bool) -> CaseResult:
    """Runs whose only stage 1 batch always fails with a retryable error: every attempt must be
    retried once, and the exhausted message dead-lettered once, with its reason."""
    runs = 2 if quick else 5
    async with isolated(base, ai_provider="bench.hostile_provider:failing", retry_base_seconds=RETRY_BASE,
                        max_attempts=MAX_ATTEMPTS) as env:
        sites = [await make_site(env.sessions, f"retries{n}", [(f"{FAIL_MARKER} {n} {w}", 100) for w in "abc"])
                 for n in range(runs)]
        topology = Topology.from_settings(env.settings)
        async with BrokerTaps(env.settings) as taps, AutomationClient(env.settings) as client:
            retry_tap = await taps.tap_exchange(topology.retry_exchange.name, "retry")
            events_tap = await taps.tap_exchange(topology.exchange.name, "events")
            dead_tap = await taps.tap_queue(topology.dead_letter_queue.name, "dead")
            async with running_fleet(env, concurrency=4) as fleet:
                started = await start_runs(env, sites, client)
                ends = [await wait_end(env, run.run_id, timeout=120) for run in started]
                await wait_quiet([retry_tap, events_tap, dead_tap], quiet=5, timeout=120)
                alive = sum(fleet.alive().values()), len(fleet.alive())
        for note in taps.notes:
            say(note)
    batches = {m.message_id for m in events_tap.seen if m.routing_key == "stage.1.batch"}
    retried = per_attempt(retry_tap.by_id_attempt(), batches)
    delivered = per_attempt(events_tap.by_id_attempt(), batches)
    dead = check_dead_letters(dead_tap, batches)
    exact = {a: len(batches) for a in range(2, MAX_ATTEMPTS + 1)}
    failed = sum(1 for end in ends if end is not None and end.status == "failed" and end.error_message)
    say(f"{len(batches)} stage 1 batch messages that always fail, max_attempts {MAX_ATTEMPTS}")
    say(f"retry publishes per attempt: {retried or 'none'} (exactly one each: {exact})")
    say(f"deliveries per attempt:      {delivered or 'none'} (exactly one each: {{1..{MAX_ATTEMPTS}: {len(batches)}}})")
    say(f"dead letters: {dead.text()}, {dead.others} of other messages")
    say(f"runs failed with a reason: {failed}/{runs} ({', '.join(describe_run(e) for e in ends)[:300]})")
    say(f"consumers alive: {alive[0]}/{alive[1]}")
    met = (len(batches) == runs and retried == exact and delivered == {1: runs, **exact} and dead.ok
           and not dead.others)
    keep_output_if(env, not met)
    return CaseResult("retries", met, {
        "messages": len(batches), "retries/attempt": _compact(retried), "dead": f"{sum(dead_tap.by_id().values())}",
        "dead w/o reason": dead.without_reason, "runs failed": f"{failed}/{runs}"})


async def malformed_messages(base: Settings, quick: bool) -> CaseResult:
    """Malformed messages on every bound routing key, aimed at a healthy run: each dead-lettered
    once with its reason, every consumer alive, and the run's totals those of a clean run."""
    count, keywords = (100, 16) if quick else (1000, 40)
    async with isolated(base, ai_latency_ms=50, retry_base_seconds=RETRY_BASE, max_attempts=3) as env:
        reference = await make_site(env.sessions, "reference", synthetic_keywords(keywords))
        victim = await make_site(env.sessions, "victim", synthetic_keywords(keywords))
        topology = Topology.from_settings(env.settings)
        async with BrokerTaps(env.settings) as taps, AutomationClient(env.settings) as client:
            dead_tap = await taps.tap_queue(topology.dead_letter_queue.name, "dead")
            async with running_fleet(env, concurrency=4) as fleet:
                clean, expected = await _clean_run(env, reference, client)
                [run] = await start_runs(env, [victim], client)
                messages = list(malformed(topology, count, run.run_id, victim.id))
                unroutable = await _publish(taps, messages)
                ids = {m.message_id for m in messages}
                end = await wait_end(env, run.run_id, timeout=300)
                settled = await wait_quiet([dead_tap], quiet=6, timeout=180 if quick else 600,
                                           until=lambda: ids <= set(dead_tap.by_id()))
                alive = fleet.alive()
            counts = await outcome_counts(env.sessions, victim)
    dead = check_dead_letters(dead_tap, ids)
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    per_id = dead_tap.by_id()
    unexplained = Counter(m.message_id for m in dead_tap.seen if not m.reason)
    for message in messages:
        by_kind[message.kind]["sent"] += 1
        by_kind[message.kind]["once"] += per_id[message.message_id] == 1
        by_kind[message.kind]["dead"] += per_id[message.message_id]
        by_kind[message.kind]["no reason"] += unexplained[message.message_id]
    say(f"{count} malformed messages published ({unroutable} unroutable), clean run {describe_run(clean)}")
    say(f"dead letters: {sum(per_id.values())} in all; ours: {dead.text()}; {dead.others} of other messages"
        + ("" if settled else " (still arriving at the deadline)"))
    for kind, figures in by_kind.items():
        say(f"  {kind:<16} sent {figures['sent']:>4}  dead-lettered once {figures['once']:>4}  "
            f"dead letters {figures['dead']:>5}  without a reason {figures['no reason']:>5}")
    say(f"consumers alive: {sum(alive.values())}/{len(alive)}"
        + ("" if all(alive.values()) else f" (dead: {', '.join(n for n, a in alive.items() if not a)})"))
    say(f"healthy run: {describe_run(end)}; totals {counts}")
    say(f"clean run:   totals {expected}")
    same = end is not None and end.status == "completed" and counts == expected
    met = dead.ok and not dead.others and not unroutable and all(alive.values()) and same
    keep_output_if(env, not met)
    return CaseResult("malformed", met, {
        "sent": count, "dead": sum(per_id.values()), "once": f"{dead.exactly_once}/{count}",
        "w/o reason": dead.without_reason, "alive": f"{sum(alive.values())}/{len(alive)}",
        "run": f"{end.status if end else 'unfinished'}{'' if same else ' (totals differ)' if end else ''}"})


async def out_of_order(base: Settings, quick: bool) -> CaseResult:
    """Forged stage commands that contradict a run's state, sent while its stage 4 is slow: the run
    must stay where it is and end as a clean run does; each forged command dead-lettered once."""
    keywords, content_ms = (16, 10_000) if quick else (40, 10_000)
    stage = 4
    async with isolated(base, ai_provider="bench.hostile_provider:slow_content", ai_latency_ms=content_ms,
                        retry_base_seconds=RETRY_BASE, max_attempts=3) as env:
        reference = await make_site(env.sessions, "reference", synthetic_keywords(keywords))
        victim = await make_site(env.sessions, "victim", synthetic_keywords(keywords))
        topology = Topology.from_settings(env.settings)
        async with BrokerTaps(env.settings) as taps, AutomationClient(env.settings) as client:
            dead_tap = await taps.tap_queue(topology.dead_letter_queue.name, "dead")
            async with running_fleet(env, concurrency=4) as fleet:
                clean, expected = await _clean_run(env, reference, client)
                [run] = await start_runs(env, [victim], client)
                reached = await _reach_stage(env, run.run_id, stage, timeout=120)
                _, before = await snapshot(env.sessions, run.run_id)
                forged, stale = forged_stage_commands(run.run_id, stage)
                unroutable = await _publish(taps, forged + stale)
                forged_ids = {m.message_id for m in forged}
                await wait_quiet([dead_tap], quiet=1, timeout=content_ms / 1000 * 0.8,
                                 until=lambda: forged_ids <= set(dead_tap.by_id()))
                after, stages = await snapshot(env.sessions, run.run_id)
                end = await wait_end(env, run.run_id, timeout=300)
                await wait_quiet([dead_tap], quiet=3, timeout=30)
                alive = fleet.alive()
            counts = await outcome_counts(env.sessions, victim)
    dead = check_dead_letters(dead_tap, forged_ids)
    stale_counts = dead_tap.by_id()
    stale_dead = [stale_counts[m.message_id] for m in stale]
    state = "missing" if after is None else (
        f"{after.status} at stage {after.current_stage}, stages "
        + " ".join(f"{n}:{s.status}" for n, s in sorted(stages.items())))
    # a streamed run has its later stages open (planned) already while stage 4 runs, and its stage 3 may
    # complete meanwhile on its own: the forgeries must leave stage 4 as it was just before them, and no
    # stage past it started or completed
    unchanged = (reached and after is not None and after.status == "running" and after.current_stage == stage
                 and set(range(1, stage + 1)) <= set(stages) and stage in before
                 and stages[stage].status == before[stage].status != "completed"
                 and all(s.status == "planned" for n, s in stages.items() if n > stage))
    same = end is not None and end.status == "completed" and counts == expected
    say(f"forged at stage {stage}: {', '.join(m.routing_key for m in forged)}; stale: "
        f"{', '.join(m.routing_key for m in stale)} ({unroutable} unroutable)")
    say("run just before the forgeries: stages " + " ".join(f"{n}:{s.status}" for n, s in sorted(before.items())))
    say(f"run right after the forgeries: {state if reached else 'never reached stage 4'} "
        f"-> {'unchanged' if unchanged else 'CHANGED'}")
    say(f"forged: {dead.text()}; stale: {sum(stale_dead)} dead letters for {len(stale)} "
        f"(either 0 or 1 each is fine), {dead.others - sum(stale_dead)} dead letters of other messages")
    say(f"run finally: {describe_run(end)}; totals {counts}")
    say(f"clean run:   {describe_run(clean)}; totals {expected}")
    say(f"consumers alive: {sum(alive.values())}/{len(alive)}")
    met = unchanged and same and dead.ok and max(stale_dead, default=0) <= 1 and not unroutable
    keep_output_if(env, not met)
    return CaseResult("out-of-order", met, {
        "forged": len(forged), "dead once": f"{dead.exactly_once}/{len(forged)}", "run after forgery":
        "unchanged" if unchanged else "CHANGED", "final": f"{end.status if end else 'unfinished'}"
        f"{'' if same else ' (totals differ)' if end else ''}"})


async def _clean_run(env: BenchEnv, site: BenchSite, client: AutomationClient
                     ) -> tuple[AutomationRun | None, dict[str, int]]:
    """A run nobody attacks, on the same fleet: the totals the attacked run must reach."""
    [run] = await start_runs(env, [site], client)
    end = await wait_end(env, run.run_id, timeout=300)
    return end, await outcome_counts(env.sessions, site)


async def _reach_stage(env: BenchEnv, run_id: str, stage: int, timeout: float) -> bool:
    """Wait until the run is running and has planned `stage`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run, stages = await snapshot(env.sessions, run_id)
        if run is not None and run.status == "running" and stage in stages:
            return True
        if run is not None and run.status != "running":
            return False
        await asyncio.sleep(0.1)
    return False


async def _publish(taps: BrokerTaps, messages: list[Hostile]) -> int:
    """Publish in order, a few at a time; returns how many no queue took."""
    unroutable = 0
    for start in range(0, len(messages), 20):
        routed = await asyncio.gather(*(taps.publish(m.routing_key, m.body, m.message_id)
                                        for m in messages[start:start + 20]))
        unroutable += routed.count(False)
    return unroutable


def _compact(per_attempt: dict[int, int]) -> str:
    return "/".join(str(per_attempt.get(a, 0)) for a in range(2, MAX_ATTEMPTS + 1))

