"""Before and after in one run: `python -m bench.ab --before REV`.

Runs the `overhead` workload (N keywords at zero AI latency, the consumers as real processes) with the
consumer fleet started from a git revision (checked out into a temporary worktree, removed afterwards)
and from this checkout, in interleaved rounds whose order alternates, and prints each system's batches/s
and CPU per batch (consumer processes + the PostgreSQL backends of the run's database, from /proc) with
the after/before ratios of the medians. The bench process itself (database set-up, the clock) runs this
checkout's code for both, so the revision must have the same schema. On a shared machine only such
ratios, measured in one run, compare.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import uuid
from pathlib import Path

from bench.harness import consumers_from, settle
from bench.pipeline import PipelineRun, measure_pipeline
from bench.report import table
from shared.settings import get_settings

REPO = Path(__file__).resolve().parents[1]


def add_worktree(revision: str) -> Path:
    path = Path(tempfile.gettempdir()) / f"automation-ab-{uuid.uuid4().hex[:8]}"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(path), revision], check=True)
    return path


def remove_worktree(path: Path) -> None:
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False)


async def measure_from(tree: Path, keywords: int, concurrency: int, replicas: int) -> PipelineRun:
    with consumers_from(tree):
        return await measure_pipeline(get_settings(), keywords, 0, concurrency, replicas)


async def compare(revision: str, keywords: int, rounds: int, concurrency: int, replicas: int) -> None:
    before_tree = await asyncio.to_thread(add_worktree, revision)
    trees = {"before": before_tree, "after": REPO}
    runs: dict[str, list[PipelineRun]] = {"before": [], "after": []}
    try:
        for number in range(rounds):
            for name in ("before", "after") if number % 2 == 0 else ("after", "before"):
                run = await measure_from(trees[name], keywords, concurrency, replicas)
                total, consumers, postgres = run.cpu_per_batch_ms()
                print(f"  round {number + 1}, {name:<6}: {run.batches:,} batches in {run.wall:.1f}s = "
                      f"{run.messages_per_second:,.0f}/s; CPU per batch {total:.1f} ms ({consumers:.1f} consumers + "
                      f"{postgres:.1f} PostgreSQL)", flush=True)
                runs[name].append(run)
    finally:
        await settle()
        await asyncio.to_thread(remove_worktree, before_tree)

    def median(name: str, figure: str) -> float:
        values = {"per_second": [r.messages_per_second for r in runs[name]],
                  "cpu": [r.cpu_per_batch_ms()[0] for r in runs[name]],
                  "consumers": [r.cpu_per_batch_ms()[1] for r in runs[name]],
                  "postgres": [r.cpu_per_batch_ms()[2] for r in runs[name]]}[figure]
        return statistics.median(values)

    def spread(name: str, figure: str) -> str:
        values = {"per_second": [r.messages_per_second for r in runs[name]],
                  "cpu": [r.cpu_per_batch_ms()[0] for r in runs[name]]}[figure]
        digits = 0 if figure == "per_second" else 1
        return f"{median(name, figure):,.{digits}f} ({min(values):,.{digits}f} to {max(values):,.{digits}f})"

    figures = ("per_second", "cpu", "consumers", "postgres")
    print(table(("", "batches/s median (range)", "CPU ms/batch median (range)", "consumers", "PostgreSQL"),
                [(f"{name} ({revision if name == 'before' else 'this checkout'})", spread(name, "per_second"),
                  spread(name, "cpu"), median(name, "consumers"), median(name, "postgres")) for name in runs]))
    print("after / before (medians, this run only): " + ", ".join(
        f"{label} {median('after', f) / median('before', f):.2f}x"
        for label, f in zip(("batches/s", "CPU per batch", "consumers", "PostgreSQL"), figures, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision to compare this checkout with")
    parser.add_argument("--keywords", "-n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(compare(args.before, args.keywords, args.rounds, args.concurrency, args.replicas))


if __name__ == "__main__":
    main()
