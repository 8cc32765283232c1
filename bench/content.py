"""What the pipeline makes, measured: `python -m bench.content [--keywords N] [--set demo|labelled|validation]`.

Runs a whole run in this process (the consumers' real subscribers on the in-memory broker of the
tests, with the offline provider), on keywords whose topics are known, and prints:
- clustering: clusters, singletons and the adjusted Rand index of the clusters against the topics;
- ideas: ideas per keyword, ideas per cluster, idea titles repeated word for word, and near-duplicate
  titles: those whose all-MiniLM-L6-v2 cosine to an earlier title of the site is >= 0.85;
- the estimate against the credits the run used.
A second run after adding keywords prints the same for what it adds (`--more N`), and how many of
its ideas repeat an idea of the first run (title or keyword at cosine >= 0.85).

`--concurrency N` (repeatable) hands up to N queued messages to the subscribers at once (the
consumers' `--concurrency`); `--shuffle SEED` (repeatable) adds the keywords in a shuffled order;
`--sweep` runs concurrency 1, 8 and 16, and 8 with the keywords shuffled (seed 1), each variant on a
site of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections import Counter
from pathlib import Path

from sklearn.metrics import adjusted_rand_score
from sqlalchemy import select

from ai import make_provider
from ai.embeddings import Embedder, embedder
from consumers.deps import Deps
from shared.accounts import add_keywords, create_account, create_site
from shared.automation_logger import AutomationLogger
from shared.credits import estimate_for_site
from shared.db import drop_database, make_engine, make_sessionmaker, upgrade_schema
from shared.demo_data import demo_keywords, keyword_volume
from shared.events import StartRun
from shared.models import AutomationRun, Cluster, ContentIdea, Keyword
from shared.outbox import NoRelay
from shared.settings import get_settings
from tests.support import Bus

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
# two labelled sets of 20 topics x 22 keywords written like keyword research, most without their topic's
# words: "labelled" tunes the clusterer, "validation" (other topics, near pairs such as keto / fasting)
# only measures it
LABELLED = {"labelled": DATA / "labelled_keywords.json", "validation": DATA / "labelled_validation_keywords.json"}



def keyword_set(name: str, count: int | None) -> list[tuple[str, str]]:
    """(keyword, topic) pairs: the demo's, or the labelled set of the tests, topics interleaved."""
    if name == "demo":
        return demo_keywords(count)
    topics: dict[str, list[str]] = json.loads(LABELLED[name].read_text())
    columns = [[(kw, topic) for kw in kws] for topic, kws in topics.items()]
    pairs = [pair for row in zip(*columns, strict=False) for pair in row]
    leftovers = [pair for column in columns for pair in column if pair not in pairs]
    return (pairs + leftovers)[:count]


NEAR_DUPLICATE = 0.85
MEASURE = Embedder(switchable=False)  # measures even when AUTOMATION_EMBEDDINGS=off switches the pipeline's off


class ConcurrentBus(Bus):
    """The tests' bus, handing up to `concurrency` queued messages to the subscribers at once."""

    def __init__(self, deps: Deps, concurrency: int) -> None:
        super().__init__(deps)
        self.concurrency = concurrency

    async def pump(self, duplicate_batches: bool = False, allow_failures: bool = False) -> None:
        await self.start()
        while True:
            if not self.queued:
                await self.relay.flush()
            if not self.queued and self.delayed:
                for raw in self.delayed:
                    self._route(raw)
                self.delayed.clear()
            if not self.queued:
                return
            taken = [self.queued.popleft() for _ in range(min(self.concurrency, len(self.queued)))]
            await asyncio.gather(*(self._consume(queue, raw, allow_failures) for queue, raw in taken))


def near_duplicates(earlier: list[str], later: list[str]) -> int:
    """How many of `later` have a cosine >= NEAR_DUPLICATE to a text before them (in `earlier`, or
    earlier in `later`)."""
    if not later:
        return 0
    vectors = MEASURE.embed(earlier + later)
    cosines = vectors @ vectors.T
    return sum(1 for row in range(len(earlier), len(earlier) + len(later))
               if row and cosines[row, :row].max() >= NEAR_DUPLICATE)


async def one_run(deps: Deps, site_id: int, concurrency: int = 1) -> AutomationRun:
    bus = ConcurrentBus(deps, concurrency)
    try:
        await bus.send(StartRun(site_id=site_id))
        await bus.pump()
    finally:
        await bus.close()
    async with deps.sessions() as session:
        return (await session.scalars(select(AutomationRun).where(AutomationRun.site_id == site_id)
                                      .order_by(AutomationRun.id.desc()))).first()  # type: ignore[return-value]


async def report(deps: Deps, site_id: int, topic_of: dict[str, str], run: AutomationRun, estimate: int,
                 before: list[tuple[str, str]]) -> dict[str, float]:
    """Prints what the site holds after `run`; `before` are the (title, keyword) of the ideas it had."""
    async with deps.sessions() as session:
        rows = (await session.execute(select(Keyword.keyword, Keyword.cluster_id)
                                      .where(Keyword.site_id == site_id, Keyword.cluster_id.is_not(None)))).all()
        clusters = len(set(c for _, c in rows))
        sizes = Counter(c for _, c in rows)
        ideas = [(t, k or "") for t, k in (await session.execute(
            select(ContentIdea.title, ContentIdea.primary_keyword).where(ContentIdea.site_id == site_id)
            .order_by(ContentIdea.id))).all()]
        titles = [t for t, _ in ideas]
        cluster_count = len((await session.scalars(select(Cluster.id).where(Cluster.site_id == site_id))).all())
    labelled = [(topic_of[k], c) for k, c in rows if k in topic_of]
    ari = adjusted_rand_score([t for t, _ in labelled], [c for _, c in labelled]) if labelled else float("nan")
    repeated = len(titles) - len({t.casefold() for t in titles})
    used = run.total_credits_used
    off = (estimate - used) / used * 100 if used else 0.0
    print(f"  run {run.status}: {len(rows)} keywords clustered into {clusters} clusters "
          f"({sum(1 for n in sizes.values() if n == 1)} singletons; {cluster_count} on the site), ARI {ari:.2f}")
    near = near_duplicates([], titles)
    print(f"  ideas: {len(titles)} ({len(titles) / max(1, len(rows)):.2f} per keyword, "
          f"{len(titles) / max(1, cluster_count):.2f} per cluster), titles repeated word for word: {repeated}, "
          f"near-duplicate titles: {near} ({near / max(1, len(titles)):.1%})")
    if before:
        new = [i for i in ideas if i not in set(before)]
        repeats = sum(1 for title, keyword in new
                      if near_duplicates([t for t, _ in before], [title]) or
                      (keyword and near_duplicates([k for _, k in before if k], [keyword])))
        print(f"  this run's {len(new)} new ideas: {repeats} repeat an idea the site had before it "
              f"(title or keyword at cosine >= {NEAR_DUPLICATE})")
    print(f"  credits: estimate {estimate:,}, used {used:,} ({off:+.0f}%)")
    return {"ari": ari, "near": near / max(1, len(titles)), "per_keyword": len(titles) / max(1, len(rows))}


async def measure(set_name: str, count: int | None, more: int, variants: list[tuple[int, int | None]]) -> None:
    base = get_settings()
    scratch = Path("/tmp") / f"automation-content-{uuid.uuid4().hex[:6]}"
    settings = base.model_copy(update={
        "database_url": base.database_url.rsplit("/", 1)[0] + f"/automation_bench_content_{scratch.name[-6:]}",
        "log_dir": scratch / "logs", "media_dir": scratch / "media", "ai_provider": "local",
        "image_width": 64, "image_height": 36})
    await asyncio.to_thread(upgrade_schema, settings.database_url)
    engine = make_engine(settings, pre_ping=False)
    sessions = make_sessionmaker(engine)
    pairs = keyword_set(set_name, None)
    topic_of = dict(pairs)
    semantic = embedder().available()
    print(f"clustering by {'meaning and words' if semantic else 'words only: ' + str(embedder().unavailable_reason)}"
          f" (model loaded in {embedder().load_seconds:.2f} s)")
    figures: list[tuple[str, float]] = []
    try:
        deps = Deps(settings=settings, sessions=sessions, logger=AutomationLogger(settings.log_dir),
                    provider=make_provider(settings), relay=NoRelay(), worker_id="bench")
        for number, (concurrency, seed) in enumerate(variants):
            # the same keywords in every variant; shuffled, they arrive in another order
            first, second = list(pairs[:count] if count else pairs), list(pairs[count:count + more] if count else [])
            if seed is not None:
                random.Random(seed).shuffle(first)
                random.Random(seed).shuffle(second)
            async with sessions() as session, session.begin():
                account = await create_account(session, f"content{number}", 10**8)
                site = await create_site(session, account, f"content{number}")
                await add_keywords(session, site, [(k, keyword_volume(k)) for k, _ in first])
            variant = f"concurrency {concurrency}" + (f", shuffled (seed {seed})" if seed is not None else "")
            before: list[tuple[str, str]] = []
            for label, batch in (("first run", first), ("second run", second)):
                if label == "second run":
                    if not batch:
                        break
                    async with sessions() as session, session.begin():
                        await add_keywords(session, site, [(k, keyword_volume(k)) for k, _ in batch])
                        before = [(t, k or "") for t, k in (await session.execute(
                            select(ContentIdea.title, ContentIdea.primary_keyword)
                            .where(ContentIdea.site_id == site.id))).all()]
                async with sessions() as session:
                    estimate = (await estimate_for_site(session, site.id)).total
                print(f"== {set_name}, {variant}: {label}, {len(batch)} keywords ==", flush=True)
                started, embedded = time.process_time(), embedder().texts_embedded
                result = await report(deps, site.id, topic_of, await one_run(deps, site.id, concurrency), estimate,
                                      before)
                print(f"  CPU {time.process_time() - started:.1f} s in this process, "
                      f"{embedder().texts_embedded - embedded} texts embedded", flush=True)
                if label == "first run":
                    figures.append((variant, result["ari"]))
        if len(figures) > 1:
            spread = max(a for _, a in figures) - min(a for _, a in figures)
            print("ARI by variant: " + ", ".join(f"{v}: {a:.2f}" for v, a in figures) + f" (spread {spread:.2f})")
    finally:
        await engine.dispose()
        await drop_database(settings.database_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="set_name", choices=("demo", *LABELLED), default="demo")
    parser.add_argument("--keywords", "-n", type=int, default=None, help="first run's keywords (default: all)")
    parser.add_argument("--more", type=int, default=0, help="keywords added before a second run")
    parser.add_argument("--concurrency", type=int, action="append", help="messages handled at once (repeatable)")
    parser.add_argument("--shuffle", type=int, action="append", help="also run with the keywords shuffled (seed)")
    parser.add_argument("--sweep", action="store_true", help="concurrency 1, 8 and 16, and shuffled (seed 1)")
    args = parser.parse_args()
    concurrencies = [1, 8, 16] if args.sweep else (args.concurrency or [1])
    shuffles = [1] if args.sweep and not args.shuffle else (args.shuffle or [])
    variants: list[tuple[int, int | None]] = [(c, None) for c in concurrencies]
    variants += [(8 if args.sweep else concurrencies[0], seed) for seed in shuffles]
    asyncio.run(measure(args.set_name, args.keywords, args.more, variants))


if __name__ == "__main__":
    main()
