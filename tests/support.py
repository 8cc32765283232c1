"""An in-memory message bus for integration tests: it drains the outbox and calls the same
handler functions the consumers call, so stage logic is tested against the real database
without a broker (the end-to-end tests cover the broker)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete

from consumers import run_control
from consumers.batches import process_batch
from consumers.deps import Deps
from consumers.planning import plan_stage
from consumers.registry import STAGE_WORK
from consumers.stage7_review import complete_run
from shared.events import PauseRun, ProcessBatch, RequestStage, ResumeRun, StageCompleted, StartRun, planned_stage
from shared.models import OutboxMessage
from shared.outbox import add_events


async def drain_outbox(deps: Deps) -> list[tuple[str, dict[str, Any]]]:
    """Take every pending outbox message (oldest first)."""
    async with deps.sessions() as session, session.begin():
        rows = (await session.execute(
            delete(OutboxMessage).returning(OutboxMessage.id, OutboxMessage.routing_key, OutboxMessage.payload)
        )).all()
    return [(r.routing_key, r.payload) for r in sorted(rows)]


async def dispatch(deps: Deps, key: str, payload: dict[str, Any]) -> None:
    """Deliver one message the way the consumer processes would."""
    if key == "run.start":
        await run_control.start_run(deps, StartRun.model_validate(payload))
    elif key == "run.pause":
        await run_control.pause_run(deps, PauseRun.model_validate(payload))
    elif key == "run.resume":
        await run_control.resume_run(deps, ResumeRun.model_validate(payload))
    elif key.endswith(".batch"):
        command = ProcessBatch.model_validate(payload)
        await process_batch(deps, command, STAGE_WORK[command.stage])
    elif key.startswith("stage.") and key.endswith((".requested", ".completed")):
        trigger = RequestStage.model_validate(payload) if key.endswith(".requested") \
            else StageCompleted.model_validate(payload)
        stage = planned_stage(trigger)
        if stage == 7:
            await complete_run(deps, trigger)
        elif stage < 7:
            await plan_stage(deps, trigger, STAGE_WORK[stage])


class Bus:
    """Pumps messages until none are left; keeps every message seen, for assertions."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def send(self, *commands: Any) -> None:
        async with self.deps.sessions() as session, session.begin():
            add_events(session, *commands)

    async def pump(self, duplicate_batches: bool = False) -> None:
        while messages := await drain_outbox(self.deps):
            for key, payload in messages:
                self.seen.append((key, payload))
                await dispatch(self.deps, key, payload)
                if duplicate_batches and key.endswith(".batch"):
                    await dispatch(self.deps, key, payload)

    def keys(self, prefix: str) -> list[dict[str, Any]]:
        return [p for k, p in self.seen if k.startswith(prefix)]


async def site_outcome(deps: Deps, site_id: int) -> dict[str, int]:
    """What a user sees of a site after runs: rows per table and credits, plus duplicate checks."""
    from sqlalchemy import text

    queries = {
        "keywords_clustered": "SELECT count(*) FROM keywords WHERE site_id=:s AND cluster_id IS NOT NULL",
        "keywords_eligible_left": "SELECT count(*) FROM keywords WHERE site_id=:s AND status='new' "
                                  "AND cluster_id IS NULL AND disabled=false",
        "clusters": "SELECT count(*) FROM clusters WHERE site_id=:s",
        "ideas": "SELECT count(*) FROM content_ideas WHERE site_id=:s",
        "tasks": "SELECT count(*) FROM tasks WHERE site_id=:s",
        "content": "SELECT count(*) FROM content WHERE site_id=:s",
        "content_in_review": "SELECT count(*) FROM content WHERE site_id=:s AND status='review'",
        "images": "SELECT count(*) FROM images WHERE site_id=:s",
        "images_generated": "SELECT count(*) FROM images WHERE site_id=:s AND status='generated'",
        "tasks_without_one_content": "SELECT count(*) FROM tasks t WHERE site_id=:s AND "
                                     "(SELECT count(*) FROM content c WHERE c.task_id=t.id) <> 1",
        "review_with_pending_images": "SELECT count(*) FROM content c WHERE site_id=:s AND status='review' "
                                      "AND EXISTS (SELECT 1 FROM images i WHERE i.content_id=c.id "
                                      "AND i.status<>'generated')",
        "credits_used": "SELECT coalesce(sum(total_credits_used),0) FROM automation_runs WHERE site_id=:s",
        "ledger_charged": "SELECT coalesce(sum(-l.delta),0) FROM credit_ledger l JOIN automation_runs r "
                          "ON r.id=l.run_id WHERE r.site_id=:s",
        "balance": "SELECT a.credits_balance FROM accounts a JOIN sites s ON s.account_id=a.id WHERE s.id=:s",
        "granted": "SELECT coalesce(sum(l.delta),0) FROM credit_ledger l JOIN sites s ON s.account_id=l.account_id "
                   "WHERE s.id=:s AND l.delta > 0",
    }
    async with deps.sessions() as session:
        return {name: int(await session.scalar(text(sql), {"s": site_id}) or 0) for name, sql in queries.items()}
