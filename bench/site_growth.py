"""What a batch's load costs as its site grows: `python -m bench.site_growth [--before REV]`.

A run's batches each read some of their site's earlier rows: stage 1 the clusters whose names share
words with its keywords, stage 2 the earlier clusters' keywords and the titles that could clash. If
what a batch reads grows with the site, a run's cost grows with the square of its size, which a 1k
or 10k run hides and a 100k run shows as a falling rate.

For each size (`-n`, default 1,000, 10,000 and 100,000 keywords) it builds a site as a finished
stage 1 leaves it (the bench's synthetic keywords, one cluster per group of eight, named as the
simulated clusterer names them; statistics gathered, as autovacuum would), then times, in this
process against PostgreSQL:
- stage 2's `load` for clusters at 1%, 50% and 99% of the run (clusters are planned in id order, so
  a later one has more earlier keywords to compare with), the median of 8 consecutive clusters,
  after one warm-up load;
- stage 1's candidate clusters for 20 keywords once every cluster exists (the end of its run).
The ratio of the last position to the first says whether a batch's cost follows the site's size.

`--before REV` measures a git revision the same way first (a temporary worktree, its own migrations
and code, in a child process) and prints both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

POSITIONS = (0.01, 0.5, 0.99)
SAMPLES = 8  # consecutive clusters timed at each position
GROUP = 8  # keywords per cluster, as the simulated clusterer groups the synthetic keywords


async def measure(sizes: list[int]) -> list[dict[str, Any]]:
    """The figures of this interpreter's checkout (whichever is first on sys.path)."""
    from sqlalchemy import insert, select, text

    from bench.harness import isolated, settle
    from bench.workload import create_bench_site, iter_synthetic_keywords
    from consumers.relevance import significant_words
    from consumers.stage1_clustering import load_candidates
    from consumers.stage2_ideas import IdeasStage
    from shared.models import Cluster
    from shared.settings import get_settings

    rows: list[dict[str, Any]] = []
    for size in sizes:
        async with isolated(get_settings()) as env:
            site = await create_bench_site(env.sessions, f"growth-{size}", size)
            names = [" ".join(k.split()[:2]).title() for k, _ in iter_synthetic_keywords(size)][::GROUP]
            async with env.sessions() as session, session.begin():
                await session.execute(insert(Cluster), [{"site_id": site.id, "name": n, "description": "",
                                                         "status": "new"} for n in names])
                await session.execute(text(  # the n-th group of GROUP keywords joins the n-th cluster
                    "WITH c AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM clusters "
                    "WHERE site_id = :site), "
                    "k AS (SELECT id, (row_number() OVER (ORDER BY id) - 1) / :group AS n FROM keywords "
                    "WHERE site_id = :site) UPDATE keywords SET cluster_id = c.id, status = 'clustered' "
                    "FROM k JOIN c USING (n) WHERE keywords.id = k.id"), {"site": site.id, "group": GROUP})
                cluster_ids = list((await session.scalars(
                    select(Cluster.id).where(Cluster.site_id == site.id).order_by(Cluster.id))).all())
            async with env.engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.execute(text("VACUUM ANALYZE"))
            stage, figure = IdeasStage(), {"keywords": float(size)}
            for position in POSITIONS:
                first = min(int(len(cluster_ids) * position), len(cluster_ids) - SAMPLES - 1)
                timings = []
                for cluster_id in cluster_ids[first:first + SAMPLES + 1]:
                    async with env.sessions() as session:
                        started = time.perf_counter()
                        await stage.load(session, site.id, [cluster_id])
                        timings.append(time.perf_counter() - started)
                figure[f"stage2_{position}"] = statistics.median(timings[1:]) * 1000
            keywords = [k for k, _ in iter_synthetic_keywords(size)][-20:]
            timings = []
            for _ in range(SAMPLES + 1):
                async with env.sessions() as session:
                    started = time.perf_counter()
                    await load_candidates(session, site.id, significant_words(keywords))
                    timings.append(time.perf_counter() - started)
            figure["stage1_end"] = statistics.median(timings[1:]) * 1000
            rows.append(figure)
            print(f"  {size:,} keywords: " + ", ".join(f"{k} {v:.1f} ms" for k, v in figure.items()
                                                        if k != "keywords"), flush=True)
        await settle()
    return rows


def measure_revision(revision: str, sizes: list[int]) -> list[dict[str, Any]]:
    """`measure` run by a child interpreter on a worktree of `revision` (its code and migrations)."""
    from bench.ab import add_worktree, remove_worktree

    print(f"{revision} (before):", flush=True)
    tree = add_worktree(revision)
    try:
        out = subprocess.run([sys.executable, str(Path(__file__)), "--child", *(f"-n{n}" for n in sizes)],
                             cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, check=True,
                             stdout=subprocess.PIPE, text=True).stdout
        print(out.rsplit("\n", 2)[0], flush=True)
        return list(json.loads(out.strip().splitlines()[-1]))
    finally:
        remove_worktree(tree)


def print_table(label: str, rows: list[dict[str, Any]]) -> None:
    from bench.report import table

    first, last = f"stage2_{POSITIONS[0]}", f"stage2_{POSITIONS[-1]}"
    print(f"== {label} (ms a load, median of {SAMPLES}) ==")
    print(table(("keywords", *(f"stage 2 at {p:.0%}" for p in POSITIONS), "stage 2 last/first",
                 "stage 1 at the end"),
                [(f"{r['keywords']:,.0f}", *(r[f"stage2_{p}"] for p in POSITIONS), r[last] / r[first], r["stage1_end"])
                 for r in rows]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keywords", "-n", type=int, action="append", help="site size (repeatable)")
    parser.add_argument("--before", help="git revision to measure first, the same way")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = args.keywords or [1000, 10_000, 100_000]
    if args.child:  # run by measure_revision: print the figures as JSON on the last line
        print(json.dumps(asyncio.run(measure(sizes))))
        return
    before = measure_revision(args.before, sizes) if args.before else None
    print(f"this checkout{'' if before is None else ' (after)'}:", flush=True)
    after = asyncio.run(measure(sizes))
    if before is not None:
        print_table(f"before ({args.before})", before)
    print_table("after" if before is not None else "this checkout", after)


if __name__ == "__main__":
    if "--child" in sys.argv:
        sys.path.pop(0)  # this file's folder: the worktree's packages come from PYTHONPATH
    main()
