"""Stage 3: ideas -> queued tasks (local, no AI, no credits). Seed query: ideas with status='new'."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from consumers.deps import BatchContext, Deps, LoadInClaim, Written
from shared.catalogue import BY_NUMBER


def new_ideas(ids: str, site_id: str) -> str:
    """The seed's query (`shared.seed_queries.eligible_ideas`): a batch's ideas still new, as one JSON
    array of [id, title] (`ids` and `site_id` are SQL expressions)."""
    return f"""(SELECT coalesce(jsonb_agg(jsonb_build_array(i.id, i.title) ORDER BY i.id), '[]')
                  FROM content_ideas AS i WHERE i.id = ANY({ids}) AND i.site_id = {site_id} AND i.status = 'new')"""


def decode_new(rows: list[list[Any]]) -> list[tuple[int, str]]:
    return [(int(idea_id), str(title)) for idea_id, title in rows]


class TasksStage:
    stage = BY_NUMBER[3]
    sequential_above: int | None = None
    # a batch's ideas come with its claim, and its write is one statement: a stage 3 batch is
    # bookkeeping only, so its statements were most of what it cost
    load_in_claim: LoadInClaim | None = LoadInClaim(sql=new_ideas("claimed.item_ids", "claimed.site_id"),
                                                    decode=decode_new)

    async def load(self, session: AsyncSession, site_id: int, item_ids: list[int]) -> list[tuple[int, str]]:
        return decode_new(await session.scalar(LOAD_NEW, {"ids": item_ids, "site_id": site_id}))

    async def generate(self, deps: Deps, inputs: list[tuple[int, str]]) -> None:
        return None

    async def write(self, session: AsyncSession, ctx: BatchContext, inputs: list[tuple[int, str]],
                    outputs: None) -> Written:
        written, = await self.write_group(session, [(ctx, inputs, outputs)])
        return written

    async def write_group(self, session: AsyncSession,
                          batches: Sequence[tuple[BatchContext, list[tuple[int, str]], None]]) -> list[Written]:
        """The tasks of every batch of a finish group (one run's) in one statement."""
        task_of = {row.idea_id: row.id for row in (await session.execute(QUEUE_TASKS, {
            "site_id": batches[0][0].site_id,
            "idea_ids": [idea_id for _, inputs, _ in batches for idea_id, _ in inputs]})).all()}
        written = []
        for _, inputs, _ in batches:
            tasks = sorted(task_of[idea_id] for idea_id, _ in inputs if idea_id in task_of)
            written.append(Written(items_out=len(tasks), credits=0, handed_on=tasks))
        return written


LOAD_NEW = text("SELECT " + new_ideas("CAST(:ids AS integer[])", ":site_id"))

# The batch's ideas still new marked queued, and a queued task for each, in one statement; an idea that
# has its task already (a retried batch) gets none.
QUEUE_TASKS = text("""
    WITH queued AS (
        UPDATE content_ideas SET status = 'queued'
         WHERE id = ANY(CAST(:idea_ids AS integer[])) AND status = 'new'
     RETURNING id, title
    )
    INSERT INTO tasks (site_id, idea_id, title, status)
    SELECT :site_id, id, title, 'queued' FROM queued ORDER BY id
    ON CONFLICT (idea_id) DO NOTHING
    RETURNING idea_id, id
""")
