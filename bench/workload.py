"""What every measurement runs on: synthetic keywords, the batch sizes, and the site they belong to.

Batch sizes are chosen so that one batch is one AI call (stage 1 clusters 20 keywords in one
call, stages 2, 4, 5 and 6 take one item per batch; stage 3 makes no AI call), which is what
makes the ideal wall time computable from the call counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.accounts import create_account, create_site
from shared.catalogue import STAGES
from shared.models import Cluster, Content, ContentIdea, CreditLedger, Image, Keyword, Task

BATCH_SIZES = {1: 20, 2: 1, 3: 20, 4: 1, 5: 1, 6: 1}
AI_STAGES = tuple(s.number for s in STAGES if s.ai_function)  # stage 3 turns ideas into tasks locally
CREDITS = 10**9
INSERT_CHUNK = 5000

WORDS = ("solar", "garden", "coffee", "travel", "guitar", "yoga", "camera", "bread", "bike", "chess", "wine",
         "kayak", "laptop", "piano", "tea", "ski", "dog", "cat", "paint", "rug", "lamp", "boot", "tent", "soap")
MODIFIERS = ("best", "cheap", "review", "guide", "tips", "for beginners", "vs", "near me")


def iter_synthetic_keywords(count: int) -> Iterator[tuple[str, int]]:
    """Distinct keywords in groups of 8 that share a two-word head (one cluster per group with the
    simulated provider); generated lazily so 100k of them are never held at once."""
    for i in range(count):
        group, member = divmod(i, len(MODIFIERS))
        a, b = WORDS[group % len(WORDS)], WORDS[(group // len(WORDS)) % len(WORDS)]
        yield f"{a}{group} {b} {MODIFIERS[member]}", 100 + i % 900


def synthetic_keywords(count: int) -> list[tuple[str, int]]:
    return list(iter_synthetic_keywords(count))


@dataclass(frozen=True)
class BenchSite:
    id: int
    account_id: int
    keywords: int


async def insert_keywords(session: AsyncSession, site_id: int, count: int) -> None:
    """One executemany per chunk: 100k keywords in seconds, without building them all first."""
    chunk: list[dict[str, object]] = []
    for keyword, volume in iter_synthetic_keywords(count):
        chunk.append({"site_id": site_id, "keyword": keyword, "volume": volume, "status": "new",
                      "disabled": False})
        if len(chunk) == INSERT_CHUNK:
            await session.execute(insert(Keyword), chunk)
            chunk = []
    if chunk:
        await session.execute(insert(Keyword), chunk)


async def create_bench_site(sessions: async_sessionmaker[AsyncSession], name: str, keywords: int) -> BenchSite:
    """An account of its own (so sites never wait on each other's balance row) and a site with the
    bench's batch sizes and `keywords` synthetic keywords."""
    async with sessions() as session, session.begin():
        account = await create_account(session, f"bench-{name}", CREDITS)
        sizes: dict[str, Any] = {f"stage_{n}_batch_size": size for n, size in BATCH_SIZES.items()}
        site = await create_site(session, account, name, **sizes)
        await insert_keywords(session, site.id, keywords)
        return BenchSite(id=site.id, account_id=account.id, keywords=keywords)


async def outcome_counts(sessions: async_sessionmaker[AsyncSession], site: BenchSite) -> dict[str, int]:
    """What a run produced for a site: the figures both designs must agree on."""
    queries = {
        "clusters": select(func.count()).select_from(Cluster).where(Cluster.site_id == site.id),
        "ideas": select(func.count()).select_from(ContentIdea).where(ContentIdea.site_id == site.id),
        "tasks": select(func.count()).select_from(Task).where(Task.site_id == site.id),
        "contents": select(func.count()).select_from(Content).where(Content.site_id == site.id),
        "in_review": select(func.count()).select_from(Content).where(Content.site_id == site.id,
                                                                     Content.status == "review"),
        "images": select(func.count()).select_from(Image).where(Image.site_id == site.id,
                                                                Image.status == "generated"),
        "credits": select(func.coalesce(func.sum(-CreditLedger.delta), 0)).where(
            CreditLedger.account_id == site.account_id, CreditLedger.delta < 0),
    }
    async with sessions() as session:
        return {name: int(await session.scalar(query) or 0) for name, query in queries.items()}
