"""The scenarios of `automation bench`: what each measures, prints and compares with its goal.

- efficiency: a run with simulated latency L against its ideal, Σ_stages ceil(calls / concurrency) x L.
- seed-design: the same work done the seed's way (one worker, sequential), and the speed-up.
- overhead: zero latency, so the wall time is pure pipeline: batch messages per second.
- scale: zero latency at growing sizes: wall, messages/s and every process's peak memory.
- fairness: small sites' times beside a big site's run, with and without the batch window.
- provider: the offline provider's own speed (articles and images per second, one process).
- peer (only when named): the overhead workload through this pipeline and a Celery peer, interleaved.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.fairness import FairnessRound, measure_fairness
from bench.pipeline import PipelineRun, measure_pipeline
from bench.report import Report, megabytes, table
from bench.seed_design import measure_seed_design
from bench.workload import AI_STAGES
from shared.settings import Settings

COUNTED = ("clusters", "ideas", "tasks", "contents", "in_review", "images", "credits")


@dataclass(frozen=True)
class Plan:
    """Sizes and knobs of every scenario (full by default, tiny with --quick)."""

    quick: bool = False
    concurrency: int = 8
    latency_ms: int = 200
    efficiency_keywords: int = 500
    overhead_keywords: int = 1000
    scale_sizes: tuple[int, ...] = (1000, 10_000, 100_000)
    fairness_big: int = 5000
    fairness_small: int = 50
    fairness_sites: int = 10
    fairness_latency_ms: int = 200
    fairness_concurrency: int = 64
    # measured side by side: the default window (`Settings.batch_window`, which the goal is judged on) and
    # 0 (every batch queued at once), whose solo time is the site's fastest, the goal's baseline
    fairness_windows: tuple[int, ...] = (16, 0)
    fairness_warmup: bool = True
    provider_items: int = 40
    max_rss_mb: float = 150.0
    max_growth: float = 0.10
    replicas: int = 1  # consumer processes per batch stage in overhead and scale
    peer_rounds: int = 3  # interleaved rounds of the pipeline and the Celery peer
    peer_pool: str = "prefork"  # the Celery worker's pool: prefork or threads
    peer_concurrency: int = 8  # the Celery worker's -c

    @classmethod
    def make(cls, quick: bool, concurrency: int, latency_ms: int | None, sizes: list[int] | None,
             replicas: int = 1, overhead_keywords: int | None = None, **peer: object) -> Plan:
        if not quick:
            return cls(concurrency=concurrency, replicas=replicas, latency_ms=200 if latency_ms is None else latency_ms,
                       fairness_latency_ms=200 if latency_ms is None else latency_ms,
                       scale_sizes=tuple(sizes or cls.scale_sizes),
                       overhead_keywords=overhead_keywords or cls.overhead_keywords, **peer)  # type: ignore[arg-type]
        latency = 50 if latency_ms is None else latency_ms
        return cls(quick=True, concurrency=concurrency, replicas=replicas, latency_ms=latency, efficiency_keywords=24,
                   **peer,  # type: ignore[arg-type]
                   overhead_keywords=overhead_keywords or 50, scale_sizes=tuple(sizes or (50, 100)), fairness_big=64,
                   fairness_small=16, fairness_sites=2, fairness_windows=(16, 0), fairness_latency_ms=latency,
                   fairness_warmup=False, provider_items=5)


@dataclass
class Context:
    settings: Settings
    plan: Plan
    report: Report
    _pipelines: dict[tuple[int, int, int, int], PipelineRun | Exception] = field(default_factory=dict)

    async def pipeline(self, keywords: int, latency_ms: int, concurrency: int, replicas: int = 1) -> PipelineRun:
        """One measured run per (keywords, latency, concurrency) per invocation: scenarios that need the
        same run (efficiency and seed-design, overhead and scale) share it."""
        key = (keywords, latency_ms, concurrency, replicas)
        if key not in self._pipelines:
            self.report.say(f"  running the pipeline: {keywords:,} keywords, {latency_ms} ms latency, "
                            f"concurrency {concurrency}, {replicas} process(es) per stage ...")
            try:
                self._pipelines[key] = await measure_pipeline(self.settings, keywords, latency_ms, concurrency,
                                                              replicas)
            except Exception as error:
                self._pipelines[key] = error
        found = self._pipelines[key]
        if isinstance(found, Exception):
            raise found
        return found


def ideal_seconds(calls: int, concurrency: int, latency_ms: int) -> float:
    return math.ceil(calls / concurrency) * latency_ms / 1000


def ai_calls(run: PipelineRun, stage: int) -> int:
    """The run's AI calls at a stage (stage 3 counts batches in `ai_calls` but calls nothing)."""
    return next((s.ai_calls for s in run.stages if s.stage == stage), 0) if stage in AI_STAGES else 0


async def efficiency(ctx: Context) -> None:
    plan, report = ctx.plan, ctx.report
    run = await ctx.pipeline(plan.efficiency_keywords, plan.latency_ms, plan.concurrency)
    rows, ideal = [], 0.0
    for stage in run.stages:
        calls = ai_calls(run, stage.stage)
        stage_ideal = ideal_seconds(calls, plan.concurrency, plan.latency_ms)
        ideal += stage_ideal
        rows.append((f"stage {stage.stage}", stage.batches, calls, stage_ideal, stage.started, stage.wall,
                     stage_ideal / stage.wall if calls and stage.wall > 0 else float("nan")))
    value = ideal / run.wall  # 0 at zero latency: there is no ideal then, only the timeline
    report.say(f"{run.keywords:,} keywords, simulated latency {plan.latency_ms} ms ±20%, concurrency "
               f"{plan.concurrency} per stage process, one process per stage")
    report.say(table(("stage", "batches", "AI calls", "ideal s", "starts at s", "wall s", "efficiency"), rows))
    report.say(f"ideal {ideal:.1f}s (Σ ceil(calls / {plan.concurrency}) x {plan.latency_ms} ms), "
               f"measured {run.wall:.1f}s (start command → run completed): efficiency {value:.2f}")
    overlap = run.overlap()
    report.say(f"first article in review after {run.first_in_review:.1f}s ({run.first_in_review / run.wall:.0%} of "
               f"the run); stages overlapping the one before: "
               + ", ".join(f"{b.stage} {seconds:.1f}s" for b, seconds in zip(run.stages[1:], overlap, strict=False)))
    if run.first_path:
        report.say("the first article's way (its batch queued → claimed → its finish began, s after the start; the "
                   f"AI call is {plan.latency_ms} ms of each claim → finish but stage 3's): "
                   + ", ".join(f"{stage} {queued:.2f}→{claimed:.2f}→{finished:.2f}"
                               for stage, queued, claimed, finished in run.first_path))
    report.record("efficiency", {
        "keywords": run.keywords, "latency_ms": plan.latency_ms, "concurrency": plan.concurrency,
        "ideal_s": ideal, "wall_s": run.wall, "efficiency": value, "counts": run.counts,
        "first_in_review_s": run.first_in_review, "overlap_s": run.overlap(),
        "first_path": [{"stage": stage, "queued_s": queued, "claimed_s": claimed, "finished_s": finished}
                       for stage, queued, claimed, finished in run.first_path],
        "stages": {str(s.stage): {"batches": s.batches, "ai_calls": ai_calls(run, s.stage), "started_s": s.started,
                                  "wall_s": s.wall} for s in run.stages}})
    if not ideal:  # zero latency: a timeline of the stages' CPU, no AI time to compare the run with
        report.say("no AI latency, so no stage-by-stage ideal: the efficiency goals are judged at a latency > 0")
    else:
        report.goal("efficiency", f"efficiency ({run.keywords:,} kw, {plan.latency_ms} ms)", value, ">=", 0.9)
        report.goal("efficiency", "wall time / stage-by-stage ideal", run.wall / ideal, "<=", 0.8)
    report.goal("efficiency", "first article in review, share of the run", run.first_in_review / run.wall, "<=", 0.10)


async def seed_design(ctx: Context) -> None:
    plan, report = ctx.plan, ctx.report
    pipeline = await ctx.pipeline(plan.efficiency_keywords, plan.latency_ms, plan.concurrency)
    report.say(f"  running the seed's design in this process: {plan.efficiency_keywords:,} keywords ...")
    seed = await measure_seed_design(ctx.settings, plan.efficiency_keywords, plan.latency_ms)
    speedup = seed.wall / pipeline.wall
    mismatched = [name for name in COUNTED if seed.counts[name] != pipeline.counts[name]]
    report.say(table(("", *COUNTED), [("seed design", *(seed.counts[n] for n in COUNTED)),
                                      ("pipeline", *(pipeline.counts[n] for n in COUNTED))]))
    report.say(f"seed design (one worker, sequential): {seed.wall:.1f}s for {seed.batches:,} batches; "
               f"pipeline {pipeline.wall:.1f}s; speed-up {speedup:.2f}x "
               f"(goal ≥ 0.9 x concurrency {plan.concurrency} = {0.9 * plan.concurrency:.1f}x)")
    report.record("seed-design", {
        "keywords": seed.keywords, "latency_ms": plan.latency_ms, "wall_s": seed.wall, "batches": seed.batches,
        "pipeline_wall_s": pipeline.wall, "speedup": speedup, "counts": seed.counts,
        "pipeline_counts": pipeline.counts, "counts_match": not mismatched})
    report.goal("seed-design", f"speed-up over the seed's design (c={plan.concurrency})", speedup, ">=",
                0.9 * plan.concurrency, "x")
    if mismatched:
        report.fail("seed-design", "counts differ: " + ", ".join(
            f"{n} {seed.counts[n]} vs {pipeline.counts[n]}" for n in mismatched))


async def overhead(ctx: Context) -> None:
    plan, report = ctx.plan, ctx.report
    run = await ctx.pipeline(plan.overhead_keywords, 0, plan.concurrency, plan.replicas)
    report.say(f"{run.keywords:,} keywords at zero latency, concurrency {plan.concurrency}, "
               f"{plan.replicas} process(es) per stage: {run.batches:,} batch messages in {run.wall:.1f}s = "
               f"{run.messages_per_second:,.0f} batch messages/s end to end")
    total, consumers, postgres = run.cpu_per_batch_ms()
    report.say(f"CPU per batch: {total:.1f} ms ({consumers:.1f} in the consumer processes + {postgres:.1f} in the "
               f"database's PostgreSQL backends, from /proc)")
    report.record("overhead", {"keywords": run.keywords, "concurrency": plan.concurrency,
                               "replicas": plan.replicas, "batches": run.batches,
                               "wall_s": run.wall, "messages_per_second": run.messages_per_second,
                               "cpu_ms_per_batch": total, "cpu_ms_per_batch_consumers": consumers,
                               "cpu_ms_per_batch_postgres": postgres})
    report.goal("overhead", f"batch messages/s ({run.keywords:,} kw, 0 ms)", run.messages_per_second, ">=", 1000)


async def scale(ctx: Context) -> None:
    plan, report = ctx.plan, ctx.report
    runs: list[PipelineRun] = []
    for size in plan.scale_sizes:
        run = await ctx.pipeline(size, 0, plan.concurrency, plan.replicas)
        runs.append(run)
        peaks = ", ".join(f"{name} {megabytes(rss):.0f}" for name, rss in run.peak_rss.items())
        report.say(f"  {size:,} keywords: {run.batches:,} batches in {run.wall:.1f}s "
                   f"({run.messages_per_second:,.0f}/s), peak RSS MB: {peaks}")
    names = list(dict.fromkeys(name for run in runs for name in run.peak_rss))
    report.say(table(("keywords", "batches", "wall s", "msgs/s", *(f"{n} MB" for n in names)),
                     [(f"{r.keywords:,}", r.batches, r.wall, r.messages_per_second,
                       *(megabytes(r.peak_rss.get(n, 0)) for n in names)) for r in runs]))
    figures: dict[str, object] = {"runs": [
        {"keywords": r.keywords, "batches": r.batches, "wall_s": r.wall, "messages_per_second": r.messages_per_second,
         "peak_rss_mb": {n: megabytes(v) for n, v in r.peak_rss.items()}} for r in runs]}
    peak = max(megabytes(rss) for run in runs for rss in run.peak_rss.values())
    report.goal("scale", f"largest peak RSS of a process (≤ {runs[-1].keywords:,} kw)", peak, "<=",
                plan.max_rss_mb, " MB")
    if len(runs) >= 2:
        before, after = runs[-2], runs[-1]
        growth = {n: after.peak_rss[n] / before.peak_rss[n] - 1 for n in names
                  if before.peak_rss.get(n) and after.peak_rss.get(n)}
        worst = max(growth, key=lambda n: growth[n])
        report.say(f"peak growth {before.keywords:,} → {after.keywords:,} keywords: " +
                   ", ".join(f"{n} {g:+.1%}" for n, g in growth.items()))
        figures["growth"] = {"from": before.keywords, "to": after.keywords, "per_process": growth}
        report.goal("scale", f"peak growth {before.keywords:,} → {after.keywords:,} kw ({worst})",
                    growth[worst] * 100, "<", plan.max_growth * 100, "%")
    report.record("scale", figures)


async def fairness(ctx: Context) -> None:
    plan, report = ctx.plan, ctx.report
    report.say(f"one {plan.fairness_big:,}-keyword site, then at once {plan.fairness_sites} sites of "
               f"{plan.fairness_small} keywords; {plan.fairness_latency_ms} ms latency, concurrency "
               f"{plan.fairness_concurrency} per stage process; each small site's time vs the same site alone")
    rounds: list[FairnessRound] = []
    for window in plan.fairness_windows:
        report.say(f"  batch_window={window} ...")
        rounds.append(await measure_fairness(
            ctx.settings, window=window, big=plan.fairness_big, small=plan.fairness_small,
            sites=plan.fairness_sites, latency_ms=plan.fairness_latency_ms, concurrency=plan.fairness_concurrency,
            warmup=plan.fairness_warmup))
    fastest = min(r.solo for r in rounds)  # the small site alone at its fastest: the honest baseline
    report.say(table(("batch_window", "solo s", "small sites together, max s", "small median s", "small max s",
                      "max ratio", "max / fastest solo", "max / together", "big run when the small sites were done"),
                     [(f"{r.window}" + (" (all at once)" if r.window == 0 else ""), r.solo, max(r.crowd),
                       sorted(r.small)[len(r.small) // 2], max(r.small), r.max_ratio,
                       max(r.small) / fastest, max(r.small) / max(r.crowd), r.big_progress) for r in rounds]))
    report.say(f"fastest solo {fastest:.1f}s; ratios are against each round's own solo, "
               f"'max / fastest solo' against the fastest")
    for r in rounds:
        report.say(f"  window {r.window}, the small runs' stages (median start, median time): {r.small_stages}")
    report.record("fairness", {
        "big_keywords": plan.fairness_big, "small_keywords": plan.fairness_small, "small_sites": plan.fairness_sites,
        "latency_ms": plan.fairness_latency_ms, "concurrency": plan.fairness_concurrency,
        "fastest_solo_s": fastest,
        "windows": {str(r.window): {"solo_s": r.solo, "small_s": r.small, "ratios": r.ratios,
                                    "median_ratio": r.median_ratio, "max_ratio": r.max_ratio,
                                    "max_over_fastest_solo": max(r.small) / fastest,
                                    "together_s": r.crowd, "max_over_together": max(r.small) / max(r.crowd),
                                    "big_progress": r.big_progress} for r in rounds}})
    default = next(r for r in rounds if r.window == ctx.settings.batch_window) if any(
        r.window == ctx.settings.batch_window for r in rounds) else rounds[0]
    floor, big_cost = max(default.crowd) / fastest, max(default.small) / max(default.crowd)
    report.say(f"the {plan.fairness_sites} small sites started together with no big run take up to "
               f"{max(default.crowd):.1f}s, {floor:.2f}x one alone: no scheduling of the big run brings them under "
               f"that; the big run's own cost to them is 'max / together' ({big_cost:.2f}x)")
    report.goal("fairness", f"small site time / fastest solo, worst (window {default.window})",
                max(default.small) / fastest, "<=", 2.0, "x")
    unwindowed = next((r for r in rounds if r.window == 0), None)
    if unwindowed is not None and default is not unwindowed:  # what the window costs a run alone
        report.goal("fairness", f"a site alone, window {default.window} / no window", default.solo / unwindowed.solo,
                    "<=", 1.10, "x")


async def provider(ctx: Context) -> None:
    from bench.provider import provider_speed

    width, height = ctx.settings.image_width, ctx.settings.image_height
    speed = await provider_speed(width, height, articles=ctx.plan.provider_items, images=ctx.plan.provider_items)
    ctx.report.say(f"offline provider (one process): {speed['articles_per_second']:.0f} articles/s, "
                   f"{speed['images_per_second']:.0f} images/s at {width}x{height}")
    ctx.report.record("provider", {**speed, "width": width, "height": height})


async def peer(ctx: Context) -> None:
    """The pipeline beside a Celery peer (`bench.peer`) on the overhead workload, interleaved rounds."""
    from bench.peer import INSTALL_HINT, Spread, celery_missing, compare

    plan, report = ctx.plan, ctx.report
    if celery_missing():
        report.fail("peer", INSTALL_HINT)
        return
    report.say(f"{plan.overhead_keywords:,} keywords at zero latency, {plan.peer_rounds} interleaved rounds; pipeline: "
               f"concurrency {plan.concurrency}, {plan.replicas} process(es) per stage; Celery peer: one worker "
               f"-P {plan.peer_pool} -c {plan.peer_concurrency}, a chord per stage, Redis result backend")
    runs = await compare(ctx.settings, plan.overhead_keywords, plan.peer_rounds, plan.concurrency, plan.replicas,
                         plan.peer_pool, plan.peer_concurrency, report.say)
    rows, figures = [], {}
    for system, results in runs.items():
        speed = Spread.of([r.per_second for r in results])
        cpu = [r.cpu_ms for r in results]
        total, workers, postgres = (Spread.of([c[i] for c in cpu]) for i in range(3))
        rows.append((system, f"{results[0].batches:,}", speed.text(), total.text(1), workers.text(1),
                     postgres.text(1)))
        figures[system] = {"batches": [r.batches for r in results], "per_second": [r.per_second for r in results],
                           "wall_s": [r.wall for r in results], "cpu_ms_per_batch": [c[0] for c in cpu],
                           "cpu_ms_workers": [c[1] for c in cpu], "cpu_ms_postgres": [c[2] for c in cpu],
                           "counts": results[0].counts}
    report.say(table(("system", "batches", "batches/s median (range)", "CPU ms/batch", "workers", "PostgreSQL"),
                     rows))
    ours, celery = runs["pipeline"], runs["celery"]
    speed_ratio = statistics.median(r.per_second for r in ours) / statistics.median(r.per_second for r in celery)
    cpu_ratio = statistics.median(r.cpu_ms[0] for r in ours) / statistics.median(r.cpu_ms[0] for r in celery)
    report.say(f"pipeline / Celery (medians, this run only): batches/s {speed_ratio:.2f}x, CPU per batch "
               f"{cpu_ratio:.2f}x")
    report.record("peer", {"keywords": plan.overhead_keywords, "rounds": plan.peer_rounds,
                           "concurrency": plan.concurrency, "replicas": plan.replicas, "peer_pool": plan.peer_pool,
                           "peer_concurrency": plan.peer_concurrency, "systems": figures,
                           "speed_ratio": speed_ratio, "cpu_ratio": cpu_ratio})
    report.goal("peer", "batches/s, pipeline / Celery peer", speed_ratio, ">=", 2.0, "x")
    report.goal("peer", "CPU per batch, pipeline (ms)", statistics.median(r.cpu_ms[0] for r in ours), "<=", 5.0,
                " ms")
    mismatched = [name for name in COUNTED if ours[0].counts[name] != celery[0].counts[name]]
    if mismatched:
        report.fail("peer", "outputs differ: " + ", ".join(
            f"{n} {ours[0].counts[n]} vs {celery[0].counts[n]}" for n in mismatched))


SCENARIOS: dict[str, Callable[[Context], Awaitable[None]]] = {
    "efficiency": efficiency, "seed-design": seed_design, "overhead": overhead, "scale": scale,
    "fairness": fairness, "provider": provider,
}
# Run only when named (`-s peer`): they need the `bench` extra.
OPT_IN: dict[str, Callable[[Context], Awaitable[None]]] = {"peer": peer}


def machine() -> dict[str, object]:
    return {"cores": os.cpu_count(), "python": f"{platform.python_implementation()} {platform.python_version()}",
            "platform": platform.platform()}
