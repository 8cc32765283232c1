"""Whether a site's run may start now, and why not: one policy for run control, the API and the scheduler.

Refusals, in order: the site already has a run (its lock), there is nothing to process (no stage's
seed query selects anything, so a run would only leave a 0-credit "completed" row), or the balance
is below the estimate times the buffer. Run control decides; the API answers early with the same
words so a caller gets a status code, and the scheduler records a skipped slot with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.credits import estimate_from_counts, site_yields
from shared.models import ACTIVE_RUN_STATUSES, AutomationRun
from shared.seed_queries import eligible_counts

# What each batch stage's seed query selects, as a person names it.
ELIGIBLE_NAMES = {1: "new keywords", 2: "clusters without ideas", 3: "new ideas", 4: "queued tasks",
                  5: "drafts without images", 6: "pending images"}
RefusalKind = Literal["active_run", "nothing_to_process", "credits"]


@dataclass(frozen=True)
class StartRefusal:
    kind: RefusalKind
    reason: str
    details: dict[str, object] = field(default_factory=dict)


def nothing_to_process(eligible: dict[int, int]) -> StartRefusal | None:
    if any(eligible.values()):
        return None
    counts = {ELIGIBLE_NAMES[stage]: count for stage, count in sorted(eligible.items())}
    return StartRefusal("nothing_to_process", "nothing to process: " + ", ".join(
        f"{count} {name}" for name, count in counts.items()), {"counts": counts})


async def start_refusal(session: AsyncSession, site_id: int, balance: int, buffer: float) -> StartRefusal | None:
    """Why a run of `site_id` cannot start now, or None; `estimate` is in the details when it can."""
    active = await session.scalar(select(AutomationRun.run_id).where(
        AutomationRun.site_id == site_id, AutomationRun.status.in_(ACTIVE_RUN_STATUSES)))
    if active:
        return StartRefusal("active_run", "site has an active run", {"active_run_id": active})
    eligible = await eligible_counts(session, site_id)
    if (empty := nothing_to_process(eligible)) is not None:
        return empty
    estimate = estimate_from_counts(eligible, await site_yields(session, site_id))
    required = estimate.required(buffer)
    if balance < required:
        return StartRefusal("credits", f"insufficient credits: need {required} (estimate {estimate.total} + "
                                       f"{round((buffer - 1) * 100)}% buffer), balance {balance}",
                            {"estimate": estimate.total, "required": required, "balance": balance})
    return None
