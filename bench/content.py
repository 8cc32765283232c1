"""What the pipeline makes, measured: `python -m bench.content [--keywords N] [--set demo|labelled]`.

Runs a whole run in this process (the consumers' real subscribers on the in-memory broker of the
tests, with the offline provider), on keywords whose topics are known, and prints:
- clustering: clusters, singletons and the adjusted Rand index of the clusters against the topics;
- ideas: ideas per keyword, ideas per cluster, and idea titles repeated word for word;
- the estimate against the credits the run used.
A second run after adding keywords prints the same for what it adds (`--more N`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections import Counter
from pathlib import Path

from sklearn.metrics import adjusted_rand_score
from sqlalchemy import select

from ai import make_provider
from consumers.deps import Deps
from shared.accounts import add_keywords, create_account, create_site
from shared.automation_logger import AutomationLogger
from shared.credits import estimate_for_site
from shared.db import drop_database, make_engine, make_sessionmaker, upgrade_schema
from shared.demo_data import demo_keywords, keyword_volume
from shared.events import StartRun
from shared.models import AutomationRun, Cluster, ContentIdea, Keyword
from shared.settings import get_settings
from tests.support import Bus

LABELLED = Path(__file__).resolve().parents[1] / "tests" / "data" / "labelled_keywords.json"


class NoWake:
    def wake(self) -> None:
        pass


def keyword_set(name: str, count: int | None) -> list[tuple[str, str]]:
    """(keyword, topic) pairs: the demo's, or the labelled set of the tests, topics interleaved."""
    if name == "demo":
        return demo_keywords(count)
    topics: dict[str, list[str]] = json.loads(LABELLED.read_text())
    columns = [[(kw, topic) for kw in kws] for topic, kws in topics.items()]
    pairs = [pair for row in zip(*columns, strict=False) for pair in row]
    leftovers = [pair for column in columns for pair in column if pair not in pairs]
    return (pairs + leftovers)[:count]


async def one_run(deps: Deps, site_id: int) -> AutomationRun:
    bus = Bus(deps)
    try:
        await bus.send(StartRun(site_id=site_id))
        await bus.pump()
    finally:
        await bus.close()
    async with deps.sessions() as session:
        return (await session.scalars(select(AutomationRun).where(AutomationRun.site_id == site_id)
                                      .order_by(AutomationRun.id.desc()))).first()  # type: ignore[return-value]


async def report(deps: Deps, site_id: int, topic_of: dict[str, str], run: AutomationRun, estimate: int) -> None:
    async with deps.sessions() as session:
        rows = (await session.execute(select(Keyword.keyword, Keyword.cluster_id)
                                      .where(Keyword.site_id == site_id, Keyword.cluster_id.is_not(None)))).all()
        clusters = len(set(c for _, c in rows))
        sizes = Counter(c for _, c in rows)
        titles = (await session.scalars(select(ContentIdea.title).where(ContentIdea.site_id == site_id))).all()
        cluster_count = len((await session.scalars(select(Cluster.id).where(Cluster.site_id == site_id))).all())
    labelled = [(topic_of[k], c) for k, c in rows if k in topic_of]
    ari = adjusted_rand_score([t for t, _ in labelled], [c for _, c in labelled]) if labelled else float("nan")
    repeated = len(titles) - len({t.casefold() for t in titles})
    used = run.total_credits_used
    off = (estimate - used) / used * 100 if used else 0.0
    print(f"  run {run.status}: {len(rows)} keywords clustered into {clusters} clusters "
          f"({sum(1 for n in sizes.values() if n == 1)} singletons; {cluster_count} on the site), ARI {ari:.2f}")
    print(f"  ideas: {len(titles)} ({len(titles) / max(1, len(rows)):.2f} per keyword, "
          f"{len(titles) / max(1, cluster_count):.2f} per cluster), titles repeated word for word: {repeated}")
    print(f"  credits: estimate {estimate:,}, used {used:,} ({off:+.0f}%)")


async def measure(set_name: str, count: int | None, more: int) -> None:
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
    first, second = pairs[:count] if count else pairs, pairs[count:count + more] if count else []
    topic_of = dict(pairs)
    try:
        deps = Deps(settings=settings, sessions=sessions, logger=AutomationLogger(settings.log_dir),
                    provider=make_provider(settings), relay=NoWake(), worker_id="bench")
        async with sessions() as session, session.begin():
            account = await create_account(session, "content", 10**8)
            site = await create_site(session, account, "content")
            await add_keywords(session, site, [(k, keyword_volume(k)) for k, _ in first])
        for label, batch in (("first run", first), ("second run", second)):
            if label == "second run":
                if not batch:
                    break
                async with sessions() as session, session.begin():
                    await add_keywords(session, site, [(k, keyword_volume(k)) for k, _ in batch])
            async with sessions() as session:
                estimate = (await estimate_for_site(session, site.id)).total
            print(f"== {set_name}: {label}, {len(batch)} keywords ==", flush=True)
            await report(deps, site.id, topic_of, await one_run(deps, site.id), estimate)
    finally:
        await engine.dispose()
        await drop_database(settings.database_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="set_name", choices=("demo", "labelled"), default="demo")
    parser.add_argument("--keywords", "-n", type=int, default=None, help="first run's keywords (default: all)")
    parser.add_argument("--more", type=int, default=0, help="keywords added before a second run")
    args = parser.parse_args()
    asyncio.run(measure(args.set_name, args.keywords, args.more))


if __name__ == "__main__":
    main()
