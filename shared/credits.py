"""The seed's credit rates, the pre-run estimate, and the charge made inside a batch transaction."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Account, CreditLedger

# Assumptions used to project a fresh site's keywords through the later stages (the seed
# estimated from the counts that exist before the run, which for new keywords is ~0).
# Measured on the demo (240 keywords, offline provider): 2.5 keywords per cluster, 3.9 ideas
# per cluster, 5 images per content; with these the estimate x 1.2 covers the real run.
KEYWORDS_PER_CLUSTER = 2.5
IDEAS_PER_CLUSTER = 4
IMAGES_PER_CONTENT = 4


class InsufficientCredits(Exception):
    """The account cannot pay for a batch; the run is paused, nothing is written."""

    def __init__(self, needed: int, balance: int) -> None:
        super().__init__(f"insufficient credits: batch needs {needed}, balance is {balance}")
        self.needed = needed
        self.balance = balance


def stage_cost(stage: int, units: int) -> int:
    """Credits for `units` items of a stage at the seed's rates."""
    if units <= 0:
        return 0
    if stage == 1:
        return math.ceil(units / 5)  # one per 5 keywords
    return {2: 2, 3: 0, 4: 5, 5: 2, 6: 2, 7: 0}[stage] * units


@dataclass(frozen=True)
class Estimate:
    """Per-stage estimated credits for a run over the site's current eligible items."""

    per_stage: dict[int, int]
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.per_stage.values())

    def required(self, buffer: float) -> int:
        return math.ceil(self.total * buffer)


def estimate_from_counts(keywords: int, clusters: int, ideas: int, tasks: int, drafts: int,
                         pending_images: int) -> Estimate:
    """The seed's formulas, applied to the counts each stage will see once earlier stages ran."""
    projected_clusters = clusters + math.ceil(keywords / KEYWORDS_PER_CLUSTER)
    projected_tasks = tasks + ideas + projected_clusters * IDEAS_PER_CLUSTER
    projected_content = drafts + projected_tasks
    per_stage = {
        1: math.ceil(keywords / 5),
        2: projected_clusters * 2,
        3: 0,
        4: projected_tasks * 5,
        5: projected_content * 2,
        6: projected_content * IMAGES_PER_CONTENT * 2 + pending_images * 2,
        7: 0,
    }
    counts = {
        "keywords": keywords, "clusters": projected_clusters, "tasks": projected_tasks,
        "content": projected_content, "images": projected_content * IMAGES_PER_CONTENT + pending_images,
    }
    return Estimate(per_stage=per_stage, counts=counts)


# The conditional debit and its ledger row as two CTEs, `debit` and `ledger`: shared by `charge` and by
# the batch finish statement (consumers.batches.FINISH), which takes the account's row lock last.
DEBIT_CTES = """
    debit AS (
        UPDATE accounts SET credits_balance = credits_balance - :amount
         WHERE id = :account_id AND credits_balance >= :amount AND :amount > 0
     RETURNING id
    ), ledger AS (
        INSERT INTO credit_ledger (account_id, run_id, batch_id, stage, delta, reason)
        SELECT id, :run_pk, :batch_id, :stage, -CAST(:amount AS integer), :reason FROM debit
     RETURNING id
    )"""
CHARGE = text(f"WITH {DEBIT_CTES} SELECT id FROM ledger")


def charge_params(*, account_id: int, amount: int, run_pk: int, batch_id: int, stage: int) -> dict[str, object]:
    return {"amount": amount, "account_id": account_id, "run_pk": run_pk, "batch_id": batch_id, "stage": stage,
            "reason": f"stage {stage} batch"}


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


async def ledger_total_for_run(session: AsyncSession, run_pk: int) -> int:
    total = await session.scalar(select(func.coalesce(func.sum(-CreditLedger.delta), 0))
                                 .where(CreditLedger.run_id == run_pk))
    return int(total or 0)
