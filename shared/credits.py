"""The pre-run estimate (the seed's rates, from `shared.catalogue`) and the charge made inside a batch
transaction."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.catalogue import STAGE_NUMBERS, stage_cost
from shared.models import Account, CreditLedger
from shared.seed_queries import eligible_counts


@dataclass(frozen=True)
class Yields:
    """How a site's keywords turn into later stages' items: what the estimate projects with. The seed
    estimated from the counts that exist before the run, which for new keywords are ~0, and so
    came out far too low; these ratios carry a run's keywords through every stage."""

    keywords_per_cluster: float
    ideas_per_keyword: float  # one idea per search intent: at most one per keyword
    images_per_content: float
    source: str  # "defaults", or "site" once the site has enough of its own history


# A fresh site's yields, measured on the demo data with the offline provider (`python -m bench.content`:
# 4.8 keywords per cluster at 150 keywords, 8.0 at 455; 0.86-0.94 ideas per keyword since keywords
# meaning what another says get no idea of their own (stage 2); 5.0 images per article).
DEFAULT_YIELDS = Yields(keywords_per_cluster=6.0, ideas_per_keyword=0.9, images_per_content=5.0, source="defaults")
# Items a ratio needs under it before the site's own figure replaces the default.
MIN_HISTORY = 5

SITE_YIELDS = text("""
    SELECT (SELECT count(*) FROM keywords WHERE site_id = :s AND cluster_id IS NOT NULL) AS clustered,
           (SELECT count(*) FROM clusters WHERE site_id = :s) AS clusters,
           (SELECT count(*) FROM keywords k WHERE site_id = :s
               AND EXISTS (SELECT 1 FROM content_ideas i WHERE i.cluster_id = k.cluster_id)) AS keywords_with_ideas,
           (SELECT count(*) FROM content_ideas WHERE site_id = :s) AS ideas,
           (SELECT count(DISTINCT content_id) FROM images WHERE site_id = :s) AS content_with_images,
           (SELECT count(*) FROM images WHERE site_id = :s) AS images
""")


async def site_yields(session: AsyncSession, site_id: int) -> Yields:
    """The site's own yields from what its earlier runs made, each ratio falling back to the default
    until the site has `MIN_HISTORY` items under it."""
    row = (await session.execute(SITE_YIELDS, {"s": site_id})).one()

    def ratio(over: int, under: int, default: float) -> float:
        return over / under if under >= MIN_HISTORY else default

    if max(row.clusters, row.keywords_with_ideas, row.content_with_images) < MIN_HISTORY:
        return DEFAULT_YIELDS
    return Yields(
        keywords_per_cluster=ratio(row.clustered, row.clusters, DEFAULT_YIELDS.keywords_per_cluster),
        ideas_per_keyword=ratio(row.ideas, row.keywords_with_ideas, DEFAULT_YIELDS.ideas_per_keyword),
        images_per_content=ratio(row.images, row.content_with_images, DEFAULT_YIELDS.images_per_content),
        source="site")


class InsufficientCredits(Exception):
    """The account cannot pay for a batch; the run is paused, nothing is written."""

    def __init__(self, needed: int, balance: int) -> None:
        super().__init__(f"insufficient credits: batch needs {needed}, balance is {balance}")
        self.needed = needed
        self.balance = balance



@dataclass(frozen=True)
class Estimate:
    """Per-stage estimated credits for a run over the site's current eligible items."""

    per_stage: dict[int, int]
    counts: dict[str, int]
    yields: str = "defaults"  # where the ratios came from: "defaults" or "site"

    @property
    def total(self) -> int:
        return sum(self.per_stage.values())

    def required(self, buffer: float) -> int:
        return math.ceil(self.total * buffer)


def estimate_from_counts(eligible: dict[int, int], yields: Yields = DEFAULT_YIELDS, from_stage: int = 1) -> Estimate:
    """The seed's rates, applied to the items each stage will see once the earlier stages ran, from
    `from_stage` on (the earlier stages are done: their leftovers belong to the next run)."""
    now = {stage: (count if stage >= from_stage else 0) for stage, count in eligible.items()}
    clusters = now[2] + math.ceil(now[1] / yields.keywords_per_cluster)
    # ideas come from the keywords of the clusters still to be mapped: the new keywords' and those of the
    # eligible clusters (about keywords_per_cluster each)
    ideas = now[3] + math.ceil((now[1] + now[2] * yields.keywords_per_cluster) * yields.ideas_per_keyword)
    tasks = now[4] + ideas
    content = now[5] + tasks
    images = now[6] + math.ceil(content * yields.images_per_content)
    items_in = {1: now[1], 2: clusters, 3: ideas, 4: tasks, 5: content, 6: images, 7: 0}
    per_stage = {stage: stage_cost(stage, items_in[stage]) if stage >= from_stage else 0 for stage in STAGE_NUMBERS}
    counts = {"keywords": now[1], "clusters": clusters, "ideas": ideas, "tasks": tasks, "content": content,
              "images": images}
    return Estimate(per_stage=per_stage, counts=counts, yields=yields.source)


async def estimate_for_site(session: AsyncSession, site_id: int, from_stage: int = 1) -> Estimate:
    """The estimate for what a run does from `from_stage` on, started (or continued) now, with the
    site's own yields where it has a history."""
    return estimate_from_counts(await eligible_counts(session, site_id), await site_yields(session, site_id),
                                from_stage)


def debit_ctes(charges: str) -> str:
    """The conditional debit and its ledger rows as two CTEs, `debit` and `ledger`: the account
    (:account_id) pays the sum of `charges` (an SQL query of rows `batch_id, amount`, one per batch of
    run :run_pk's stage :stage) if its balance covers it, never going below zero, and gets a ledger row
    per batch that costs something (at most one per batch: `credit_ledger.batch_id` is unique).
    Shared by `charge` and by the batch finish statement (FINISH in consumers/batches.py), which takes
    the account's row lock last."""
    return f"""
    charges AS ({charges}
    ), debit AS (
        UPDATE accounts SET credits_balance = credits_balance - t.amount
          FROM (SELECT CAST(coalesce(sum(amount), 0) AS integer) AS amount FROM charges) AS t
         WHERE id = :account_id AND credits_balance >= t.amount AND t.amount > 0
     RETURNING accounts.id
    ), ledger AS (
        INSERT INTO credit_ledger (account_id, run_id, batch_id, stage, delta, reason)
        SELECT debit.id, :run_pk, charges.batch_id, :stage, -charges.amount, :reason
          FROM debit, charges WHERE charges.amount > 0
     RETURNING id
    )"""


CHARGE = text(f"""WITH {debit_ctes("SELECT CAST(:batch_id AS bigint) AS batch_id, CAST(:amount AS integer) AS amount")}
    SELECT id FROM ledger""")


def ledger_reason(stage: int) -> str:
    """The `reason` of a batch's ledger row (`debit_ctes`' :reason)."""
    return f"stage {stage} batch"


def charge_params(*, account_id: int, amount: int, run_pk: int, batch_id: int, stage: int) -> dict[str, object]:
    return {"amount": amount, "account_id": account_id, "run_pk": run_pk, "batch_id": batch_id, "stage": stage,
            "reason": ledger_reason(stage)}


async def insufficient(session: AsyncSession, account_id: int, amount: int) -> InsufficientCredits:
    """The error for a debit the balance could not cover, with the balance as it is now."""
    balance = await session.scalar(select(Account.credits_balance).where(Account.id == account_id))
    return InsufficientCredits(amount, int(balance or 0))


async def charge(session: AsyncSession, *, account_id: int, amount: int, run_pk: int, batch_id: int,
                 stage: int) -> None:
    """Debit `amount` and write the ledger row; never below zero, at most once per batch."""
    if amount <= 0:
        return
    charged = await session.scalar(CHARGE, charge_params(account_id=account_id, amount=amount, run_pk=run_pk,
                                                         batch_id=batch_id, stage=stage))
    if charged is None:
        raise await insufficient(session, account_id, amount)


async def grant(session: AsyncSession, account_id: int, amount: int, reason: str) -> int:
    """Add credits (a top-up) and record it; returns the new balance."""
    balance = await session.scalar(
        update(Account).where(Account.id == account_id)
        .values(credits_balance=Account.credits_balance + amount).returning(Account.credits_balance)
    )
    if balance is None:
        raise LookupError(f"unknown account {account_id}")
    session.add(CreditLedger(account_id=account_id, delta=amount, reason=reason))
    return int(balance)
