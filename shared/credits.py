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

# How a fresh site's keywords project through the later stages (the seed estimated from the counts that
# exist before the run, which for new keywords is ~0). Measured on the demo (240 keywords, offline
# provider): 2.5 keywords per cluster, 3.9 ideas per cluster, 4 images per content.
KEYWORDS_PER_CLUSTER = 2.5
IDEAS_PER_CLUSTER = 4
IMAGES_PER_CONTENT = 4


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

    @property
    def total(self) -> int:
        return sum(self.per_stage.values())

    def required(self, buffer: float) -> int:
        return math.ceil(self.total * buffer)


def estimate_from_counts(eligible: dict[int, int]) -> Estimate:
    """The seed's formulas, applied to the items each stage will see once the earlier stages ran."""
    clusters = eligible[2] + math.ceil(eligible[1] / KEYWORDS_PER_CLUSTER)
    tasks = eligible[4] + eligible[3] + clusters * IDEAS_PER_CLUSTER
    content = eligible[5] + tasks
    images = content * IMAGES_PER_CONTENT + eligible[6]
    items_in = {1: eligible[1], 2: clusters, 3: eligible[3] + clusters * IDEAS_PER_CLUSTER, 4: tasks, 5: content,
                6: images, 7: 0}
    per_stage = {stage: stage_cost(stage, items_in[stage]) for stage in STAGE_NUMBERS}
    counts = {"keywords": eligible[1], "clusters": clusters, "tasks": tasks, "content": content, "images": images}
    return Estimate(per_stage=per_stage, counts=counts)


async def estimate_for_site(session: AsyncSession, site_id: int) -> Estimate:
    """The estimate for a run started now."""
    return estimate_from_counts(await eligible_counts(session, site_id))


# The conditional debit and its ledger row as two CTEs, `debit` and `ledger`: shared by `charge` and by
# the batch finish statement (FINISH in consumers/batches.py), which takes the account's row lock last.
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
