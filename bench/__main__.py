"""`python -m bench`: measure the pipeline (real processes, simulated AI) and print every figure
against its goal. The benchmarks live beside the application, not in its package."""

from __future__ import annotations

import asyncio
import logging

import typer

from automation.cli import _logging, get_settings

app = typer.Typer(add_completion=False)


@app.command()
def main(
    scenario: list[str] = typer.Option(
        None, "--scenario", "-s", help="efficiency, seed-design, overhead, scale, fairness or provider "
        "(repeatable; default: all, in that order); peer (the overhead workload beside a Celery peer; needs "
        "pip install -e '.[bench]') runs only when named."),
    quick: bool = typer.Option(False, "--quick", help="Every scenario at tiny sizes (exercises the harness)."),
    keywords: list[int] = typer.Option(None, "--keywords", "-n", min=1,
                                       help="Scale sizes (repeatable; default 1k, 10k, 100k; quick 50, 100)."),
    concurrency: int = typer.Option(8, min=1, max=256, help="Batches in their claim and AI call at once per stage "
                                    "process."),
    replicas: int = typer.Option(1, min=1, max=8, help="Consumer processes per batch stage in the zero-latency "
                                 "scenarios (overhead, scale); efficiency and seed-design always use one."),
    latency_ms: int = typer.Option(None, min=0, help="Simulated AI latency per call for efficiency, seed-design "
                                   "and fairness (default 200; 50 with --quick)."),
    json_path: str = typer.Option(None, "--json", help="Also write every figure to this JSON file."),
    overhead_keywords: int = typer.Option(None, min=1, help="Keywords of the overhead and peer workload "
                                          "(default 1,000; 50 with --quick)."),
    rounds: int = typer.Option(3, min=1, max=20, help="peer: interleaved rounds of both systems."),
    peer_pool: str = typer.Option("prefork", help="peer: the Celery worker's pool, prefork or threads."),
    peer_concurrency: int = typer.Option(8, min=1, max=64, help="peer: the Celery worker's -c."),
) -> None:
    """Measure the pipeline (real processes, simulated AI) and print every figure against its goal."""
    from pathlib import Path

    from bench.runner import run_bench
    from bench.scenarios import OPT_IN, SCENARIOS, Plan

    known = {**SCENARIOS, **OPT_IN}
    unknown = [name for name in scenario or [] if name not in known]
    if unknown:
        raise typer.BadParameter(f"unknown {', '.join(unknown)}; expected {', '.join(known)}",
                                 param_hint="--scenario")
    if peer_pool not in ("prefork", "threads"):
        raise typer.BadParameter("prefork or threads", param_hint="--peer-pool")
    _logging()
    for noisy in ("alembic", "aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    plan = Plan.make(quick, concurrency, latency_ms, keywords, replicas, overhead_keywords, peer_rounds=rounds,
                     peer_pool=peer_pool, peer_concurrency=peer_concurrency)
    chosen = [name for name in known if name in scenario] if scenario else list(SCENARIOS)
    raise typer.Exit(asyncio.run(run_bench(get_settings(), chosen, plan, Path(json_path) if json_path else None)))


if __name__ == "__main__":
    app()
