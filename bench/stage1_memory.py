"""Stage 1's memory, step by step, in one process: `python -m bench.stage1_memory`.

Reproduces what the stage 1 consumer does for a batch, without a database or a broker: the process
imports what a consumer imports, then the offline clusterer clusters batches of 20 keywords against
200 existing clusters of 12 members each (`consumers.stage1_clustering`: CANDIDATE_CLUSTERS x
EXISTING_SAMPLE), so each call embeds up to 2,420 texts and builds Gram matrices of 220 nodes.
After each step it prints the process's RSS (VmRSS) and the step's own peak (VmHWM, reset before the
step through /proc/self/clear_refs), in MiB. The pipeline's figure is the `scale` scenario of
`python -m bench`; this one takes seconds and isolates stage 1.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ai.base import ClusterOut, ExistingCluster, KeywordIn

MODIFIERS = ("", "cost", "near me", "for beginners", "guide", "tips", "2025", "reviews", "ideas", "at home")


def memory() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def reset_peak() -> None:
    """Restart VmHWM from the current RSS (Linux 4.0+), so each step reports its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def topics() -> dict[str, list[str]]:
    """The demo topics and the labelled set's, keyword lists by topic."""
    from shared.demo_data import DEMO_TOPICS

    labelled = json.loads((Path(__file__).parent.parent / "tests" / "data" / "labelled_keywords.json").read_text())
    return {**{f"demo {k}": v for k, v in DEMO_TOPICS.items()}, **{f"labelled {k}": v for k, v in labelled.items()}}


def workload(clusters: int = 200, members: int = 12) -> tuple[list[ExistingCluster], list[list[KeywordIn]]]:
    """200 existing clusters of 12 distinct members (topic keywords with a modifier), and batches of 20
    keywords taken round-robin across topics (the plain keywords, so they sit near existing clusters)."""
    by_topic = topics()
    names = list(by_topic)
    existing: list[ExistingCluster] = []
    for number in range(clusters):
        topic = names[number % len(names)]
        keywords = by_topic[topic]
        offset = (number // len(names)) * members
        texts = tuple(f"{keywords[j % len(keywords)]} {MODIFIERS[j // len(keywords) % len(MODIFIERS)]}".strip()
                      for j in range(offset, offset + members))
        name = f"{topic.split(' ', 1)[1].title()} {number // len(names) + 1}"
        existing.append(ExistingCluster(id=number + 1, name=name, keywords=texts))
    flat = [kw for row in zip(*by_topic.values(), strict=False) for kw in row]
    batch = [KeywordIn(id=i + 1, text=text) for i, text in enumerate(flat)]
    return existing, [batch[i:i + 20] for i in range(0, len(batch), 20)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bare", action="store_true", help="skip the consumer's imports (consumers.app)")
    parser.add_argument("--batches", type=int, default=5, help="batches clustered after the first")
    parser.add_argument("--json", type=Path, help="write the steps as JSON")
    args = parser.parse_args()
    steps: list[dict[str, Any]] = []

    def step(name: str, work: Callable[[], Any]) -> Any:
        reset_peak()
        started = time.perf_counter()
        result = work()
        rss, peak = memory()
        steps.append({"step": name, "rss_mb": round(rss, 1), "peak_mb": round(peak, 1),
                      "seconds": round(time.perf_counter() - started, 2)})
        print(f"{name:44s} RSS {rss:6.1f}  step peak {peak:6.1f}  ({steps[-1]['seconds']} s)", flush=True)
        return result

    rss, _ = memory()
    print(f"{'python + this script':44s} RSS {rss:6.1f}")
    if not args.bare:
        step("consumer imports (consumers.app)", lambda: __import__("consumers.app"))
    from ai import local_cluster
    from ai.embeddings import embedder

    loaded: tuple[list[ExistingCluster], list[list[KeywordIn]]] = step("ai.local_cluster + workload", workload)
    existing, batches = loaded
    step("TF-IDF first use (sklearn/scipy if used)", lambda: local_cluster.embed(["solar panel cost", "solar"]))
    step("model load", lambda: embedder().available())
    if embedder().available():  # AUTOMATION_EMBEDDINGS=off measures the words-only clusterer
        step(f"embed {len(batches[0])} keywords", lambda: embedder().embed([k.text for k in batches[0]]))
    def clustering(batch: list[KeywordIn]) -> Callable[[], list[ClusterOut]]:
        return lambda: local_cluster.cluster(batch, existing, local_cluster.DEFAULT_DISTANCE_THRESHOLD)

    first: list[ClusterOut] = step("cluster batch 1 (200 x 12 existing)", clustering(batches[1]))
    for number, batch in enumerate(batches[2:2 + args.batches], start=2):
        step(f"cluster batch {number}", clustering(batch))
    overall = max(s["peak_mb"] for s in steps)
    print(f"{'process peak':44s} {overall:6.1f}  (first batch: {len(first)} clusters)")
    if args.json:
        args.json.write_text(json.dumps(steps, indent=1))


if __name__ == "__main__":
    main()
