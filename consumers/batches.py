"""Claiming a batch and finishing it exactly once.

The batch row is the unit of idempotency. A batch is claimed only while pending (or its
lease has run out) and its run is `running`; the AI call happens outside any transaction;
then one transaction writes the outputs, the credit charge, the batch's `done` state, the
stage counters, the refill of the run's window, in a streamed run the batches of the next stage
made of what this one produced (`HAND_ON`) and, for the stage's last batch, the stage result and
`stage.N.completed` (`consumers.planning.complete_stage`). Batches of one run's stage that are
ready to finish at the same moment share that transaction and its one finish statement
(`FinishGroups`: group commit), and claims of a stage that arrive together share one statement
(`ClaimGroups`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import TextClause, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from consumers.deps import BatchContext, Deps, LoadInClaim, LoadsGroups, StageWork, WritesGroups, Written
from consumers.planning import (
    REFILL,
    StageTotals,
    complete_ready_stages,
    complete_stage,
    emit_next,
    lock_run,
    process_batch_payload_sql,
    shared_slots,
    streamed_window,
    window_size,
)
from shared.automation_logger import RunRef
from shared.credits import InsufficientCredits, debit_ctes, insufficient, ledger_reason
from shared.db import autocommit_session
from shared.events import ProcessBatch, RunStateChanged
from shared.messaging import PoisonMessage
from shared.metrics import count_ai_calls
from shared.models import AutomationRun, StageBatch
from shared.outbox import DELETE_SENT_CTE, ReservedRow, add_events

log = logging.getLogger("automation.batches")


async def relaxed_commit(session: AsyncSession) -> None:
    """Skip the fsync wait for a transaction whose loss is harmless: losing a claim only
    hands the batch out again, and the next synchronous commit flushes it anyway."""
    await session.execute(text("SET LOCAL synchronous_commit = off"))


class ClaimLost(Exception):
    """The batch was handed to another consumer (our lease ran out) before we finished it."""


@dataclass(frozen=True)
class Claim:
    batch_id: int
    token: str
    item_ids: list[int]
    ctx: BatchContext
    seq: int
    batches_total: int  # of its stage, for the progress line
    items_in: int  # of its stage: how big the run's window is (`window_size`)
    streaming: bool  # the run streams this stage or the next (`consumers.planning`): finish takes the run lock first
    inputs: Any = None  # the batch's inputs when `loaded`
    loaded: bool = False  # loaded with the claim (`load_in_claim`) or its group (`LoadsGroups`)


# The claim of one or more batches of a stage (`ClaimGroups`), each named by its id, run and the token
# its handler drew (`:batch_ids`, `:run_ids`, `:tokens`: comma-joined, so that no array parameter costs a
# new connection asyncpg's type introspection); it returns a row for each batch it claimed, whose token
# says which handler it is for. Two messages of one batch in a group (a duplicate delivery) join the
# same row: PostgreSQL updates it once, with one of the two tokens, and the other handler finds nothing
# to do. The claim also deletes the outbox rows its process sent since its last claim
# (`shared.outbox`): a statement it sends anyway, so the deletion costs no round trip of its own. A
# stage with a `load_in_claim` has each batch's inputs loaded by the same statement (`loaded`), else
# `loaded` is NULL.
CLAIM_TEMPLATE = f"""
    WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)), {DELETE_SENT_CTE}, claimed AS (
        UPDATE stage_batches AS b
           SET status = 'claimed', claim_token = w.token, claimed_by = :worker,
               lease_expires_at = now() + make_interval(secs => :lease), attempts = b.attempts + 1
          FROM unnest(CAST(string_to_array(:batch_ids, ',') AS bigint[]), string_to_array(:run_ids, ','),
                      string_to_array(:tokens, ',')) AS w(batch_id, run_id, token),
               automation_runs AS r, sites AS s, run_stages AS rs, relaxed
         WHERE b.id = w.batch_id AND b.stage = :stage AND r.id = b.run_id AND r.run_id = w.run_id
           AND s.id = r.site_id AND r.status = 'running' AND rs.run_id = b.run_id AND rs.stage = b.stage
           AND (b.status = 'pending' OR (b.status = 'claimed' AND b.lease_expires_at < now()))
     RETURNING b.claim_token, b.item_ids, b.run_id AS run_pk, r.site_id, s.account_id, b.seq, rs.batches_total,
               rs.items_in,
               rs.streamed OR EXISTS (SELECT FROM run_stages AS n WHERE n.run_id = b.run_id AND n.stage = b.stage + 1
                                                                  AND n.streamed) AS streaming
    )
    SELECT claimed.*, {{loaded}} AS loaded FROM claimed
"""


@functools.cache
def claim_statement(load_in_claim: LoadInClaim | None) -> TextClause:
    """The claim of a stage's batches, built once per stage."""
    return text(CLAIM_TEMPLATE.format(loaded="NULL" if load_in_claim is None else load_in_claim.sql))


async def claim_batches(deps: Deps, stage: int, commands: Sequence[ProcessBatch], session: AsyncSession,
                        load_in_claim: LoadInClaim | None = None) -> list[Claim | None]:
    """Reserve the batches of `commands` (all of `stage`) for this consumer in one statement, in an
    autocommit `session` and without waiting for fsync (a lost claim only hands the batch out again):
    for each command its Claim, or None when this statement did not claim it (done, held by a live
    claim, its run not running, a duplicate of another command here, or not what it says it is:
    `check_unclaimed` tells those apart). It deletes the outbox rows the process has sent meanwhile,
    whatever the outcome, and with `load_in_claim` it loads each batch's inputs too (`Claim.inputs`)."""
    tokens = [uuid.uuid4().hex for _ in commands]
    sent_ids = deps.relay.take_sent_ids()
    try:
        rows = (await session.execute(claim_statement(load_in_claim), {
            "worker": deps.worker_id, "lease": deps.settings.batch_lease_seconds, "stage": stage,
            "batch_ids": ",".join(str(c.batch_id) for c in commands), "run_ids": ",".join(c.run_id for c in commands),
            "tokens": ",".join(tokens), "sent_ids": sent_ids})).all()
    except BaseException:
        deps.relay.put_back_sent_ids(sent_ids)
        raise
    by_token = {row.claim_token: row for row in rows}
    claims: list[Claim | None] = []
    for command, token in zip(commands, tokens, strict=True):
        row = by_token.get(token)
        if row is None:
            claims.append(None)
            continue
        run = RunRef(pk=row.run_pk, run_id=command.run_id, site_id=row.site_id, account_id=row.account_id)
        ctx = BatchContext(run=run, batch_id=command.batch_id, stage=stage, settings=deps.settings)
        claims.append(Claim(batch_id=command.batch_id, token=token, item_ids=list(row.item_ids), ctx=ctx,
                            seq=row.seq, batches_total=row.batches_total, items_in=row.items_in,
                            streaming=row.streaming,
                            inputs=None if load_in_claim is None else load_in_claim.decode(row.loaded),
                            loaded=load_in_claim is not None))
    return claims


async def check_unclaimed(session: AsyncSession, command: ProcessBatch) -> None:
    """A command whose batch a claim did not reserve: nothing to do if the batch is what the command
    says (stage and run), else the message is forged or misrouted (PoisonMessage)."""
    known = (await session.execute(
        select(StageBatch.stage, AutomationRun.run_id)
        .join(AutomationRun, AutomationRun.id == StageBatch.run_id)
        .where(StageBatch.id == command.batch_id))).first()
    if known is None or tuple(known) != (command.stage, command.run_id):
        raise PoisonMessage(f"batch {command.batch_id} is not stage {command.stage} of run {command.run_id}")


async def claim_batch(deps: Deps, command: ProcessBatch, session: AsyncSession,
                      load_in_claim: LoadInClaim | None = None) -> Claim | None:
    """Reserve one batch (`claim_batches`), or None when there is nothing to do; PoisonMessage when
    the batch is not what the command says."""
    claim, = await claim_batches(deps, command.stage, [command], session, load_in_claim)
    if claim is None:
        await check_unclaimed(session, command)
    return claim


class ClaimGroups:
    """Claims of one stage that arrive while another claim of it is in flight go into one statement
    together: one round trip, one plan and one pooled connection for the group instead of one each.

    A claim with nothing before it goes at once, alone, so grouping adds no wait: a claim waits only
    while the statement before it runs, which it would have spent waiting for the pool and the CPU
    anyway. When a group's statement fails (the database away, a deadlock between two groups that
    claim the same batches in another order), every claim of it is tried alone, so each gets its
    own outcome. A handler that goes away while its claim is in flight (a consumer stopping) has the
    batch handed back at once rather than left to its lease.
    """

    def __init__(self) -> None:
        self._waiting: dict[int, list[tuple[ProcessBatch, asyncio.Future[Claim | None]]]] = {}
        self._claimers: dict[int, asyncio.Task[None]] = {}

    async def claim(self, deps: Deps, command: ProcessBatch, work: StageWork) -> Claim | None:
        """The batch's Claim, or None when there is nothing to do; raises PoisonMessage when the batch
        is not what the command says, and a database error as a claim alone would. For a stage that
        `LoadsGroups` the claim comes with its inputs loaded, when their load succeeded."""
        done: asyncio.Future[Claim | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(command.stage, []).append((command, done))
        if command.stage not in self._claimers:
            self._claimers[command.stage] = asyncio.create_task(
                self._claim_while_waiting(deps, command.stage, work), name=f"claim stage {command.stage}")
        claim = await done
        if claim is None:
            async with autocommit_session(deps.sessions) as session:
                await check_unclaimed(session, command)
        return claim

    async def _claim_while_waiting(self, deps: Deps, stage: int, work: StageWork) -> None:
        waiting: list[tuple[ProcessBatch, asyncio.Future[Claim | None]]] = []
        load_in_claim = work.load_in_claim
        try:
            while waiting := [(c, done) for c, done in self._waiting.pop(stage, []) if not done.done()]:
                try:
                    async with autocommit_session(deps.sessions) as session:
                        claims = await claim_batches(deps, stage, [c for c, _ in waiting], session, load_in_claim)
                        if isinstance(work, LoadsGroups):
                            claims = await load_claimed(session, work, claims)
                except Exception as error:
                    if len(waiting) == 1:
                        _resolve(waiting[0][1], error=error)
                        continue
                    log.info("a group of %d claims failed (%s: %s); each claims alone", len(waiting),
                             type(error).__name__, error)
                    claims = [await _claim_alone(deps, stage, command, done, load_in_claim)
                              for command, done in waiting]
                for (_, done), claim in zip(waiting, claims, strict=True):
                    if done.done() and claim is not None:  # its handler went away meanwhile
                        await release_claim(deps, claim, "its consumer stopped before working on it")
                    elif not done.done():
                        done.set_result(claim)
        finally:
            del self._claimers[stage]
            for _, done in waiting + self._waiting.pop(stage, []):
                _resolve(done, error=RuntimeError("the claim was interrupted"))


async def load_claimed(session: AsyncSession, work: LoadsGroups, claims: list[Claim | None]) -> list[Claim | None]:
    """The claims with their inputs, loaded in one statement per site (`LoadsGroups`); as they were
    (their handlers load them) if that fails, since the claims are made already."""
    by_site: dict[int, list[Claim]] = {}
    for claim in claims:
        if claim is not None:
            by_site.setdefault(claim.ctx.site_id, []).append(claim)
    inputs: dict[str, Any] = {}  # by claim token
    try:
        for site_id, members in by_site.items():
            loaded = await work.load_group(session, site_id, [claim.item_ids for claim in members])
            inputs.update(zip([claim.token for claim in members], loaded, strict=True))
    except Exception:
        log.warning("loading a group of %d claimed batches failed; each loads its own", len(claims), exc_info=True)
        return claims
    return [None if claim is None else dataclasses.replace(claim, inputs=inputs[claim.token], loaded=True)
            for claim in claims]


async def _claim_alone(deps: Deps, stage: int, command: ProcessBatch, done: asyncio.Future[Claim | None],
                       load_in_claim: LoadInClaim | None) -> Claim | None:
    """One claim of a failed group, in a statement of its own; its error goes to its handler."""
    try:
        async with autocommit_session(deps.sessions) as session:
            claim, = await claim_batches(deps, stage, [command], session, load_in_claim)
    except Exception as error:
        _resolve(done, error=error)
        return None
    return claim


def _resolve(done: asyncio.Future[Claim | None], error: Exception) -> None:
    if not done.done():
        done.set_exception(error)


async def release_claim(deps: Deps, claim: Claim, error: str) -> None:
    """Hand a batch back (after a failed attempt) so its retry can claim it at once."""
    async with deps.sessions() as session, session.begin():
        await session.execute(
            update(StageBatch).where(StageBatch.id == claim.batch_id, StageBatch.claim_token == claim.token)
            .values(status="pending", claim_token=None, lease_expires_at=None, error=error[:2000]))


# The batch messages a statement queues are outbox rows reserved for this process (`shared.outbox`),
# unless its relay reserves nothing (:reserve 0); the statement returns them, as one JSON array (an array
# type would cost every new connection a type introspection query of asyncpg's), for `reserved_rows`.
RESERVED_UNTIL = "now() + make_interval(secs => CAST(:reserve AS double precision))"
QUEUED = """(SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'payload', payload) ORDER BY id), '[]')
               FROM emitted)"""


def reserved_rows(routing_key: str, queued: list[dict[str, Any]]) -> list[ReservedRow]:
    return [ReservedRow(id=row["id"], routing_key=routing_key, payload=row["payload"]) for row in queued]


# The finish of a group of batches of one run's stage (one batch, or a group commit's: `FinishGroups`):
# each batch's charge, `done` state, log line and window refill, and once for the group the debit of
# their sum and the rows every batch of the account and run shares (the account's balance, the stage
# counters, the run). Each batch comes as an element of the arrays (:batch_ids, :tokens, ...). A batch
# whose claim is lost is not finished; the caller then rolls the group back (`finish_in`).
FINISH = text(f"""
    WITH done AS (
        SELECT * FROM unnest(CAST(:batch_ids AS bigint[]), CAST(:tokens AS text[]), CAST(:items_out AS integer[]),
                             CAST(:amounts AS integer[]), CAST(:ai_calls AS integer[]), CAST(:log_messages AS text[]))
               WITH ORDINALITY AS d(batch_id, token, items_out, amount, ai_calls, log_message, n)
    ), {debit_ctes("SELECT batch_id, amount FROM done")}, paid AS (
        SELECT WHERE NOT EXISTS (SELECT FROM done WHERE amount > 0) OR EXISTS (SELECT FROM debit)
    ), batch AS (
        UPDATE stage_batches AS b SET status = 'done', items_out = done.items_out, credits = done.amount,
               completed_at = now(), error = NULL
          FROM done, paid
         WHERE b.id = done.batch_id AND b.status = 'claimed' AND b.claim_token = done.token
     RETURNING done.*
    ), counters AS (
        UPDATE run_stages AS rs
           SET batches_done = rs.batches_done + f.batches, items_out = rs.items_out + f.items_out,
               credits = rs.credits + f.amount, ai_calls = rs.ai_calls + f.ai_calls
          FROM (SELECT count(*) AS batches, sum(items_out) AS items_out, sum(amount) AS amount,
                       sum(ai_calls) AS ai_calls FROM batch) AS f
         WHERE rs.run_id = :run_pk AND rs.stage = :stage AND f.batches > 0
     RETURNING rs.batches_done, rs.batches_total, rs.items_in, rs.items_out, rs.credits, rs.ai_calls
    ), run AS (
        UPDATE automation_runs AS r
           SET total_credits_used = r.total_credits_used + (SELECT coalesce(sum(amount), 0) FROM batch),
               last_progress_at = now()
          FROM counters
         WHERE r.id = :run_pk
     RETURNING r.id
    ), emit AS ({emit_next(REFILL.format(finished="(SELECT count(*) FROM batch)"))}
           AND EXISTS (SELECT FROM batch)
     RETURNING id
    ), emitted AS (
        INSERT INTO outbox (routing_key, payload, available_at)
        SELECT CAST(:batch_type AS text), {process_batch_payload_sql("emit.id")}, {RESERVED_UNTIL}
          FROM emit ORDER BY emit.id
     RETURNING id, payload
    ), logged AS (
        INSERT INTO run_log_lines (run_id, stage, level, message)
        SELECT :run_pk, :stage, 'INFO', batch.log_message FROM batch ORDER BY batch.n
    )
    SELECT EXISTS (SELECT FROM paid) AS paid, (SELECT count(*) FROM batch) AS finished, counters.*,
           (SELECT count(*) FROM run) AS runs, {QUEUED} AS queued,
           (SELECT u.status = 'completed' FROM run_stages AS u
             WHERE u.run_id = :run_pk AND u.stage = :stage - 1) AS upstream_completed,
           (SELECT s.streamed FROM run_stages AS s WHERE s.run_id = :run_pk AND s.stage = :stage) AS streamed
      FROM (SELECT 1) AS one LEFT JOIN counters ON true
""")

# A streamed run's batch finish takes the run's row lock before anything else (`finish_batch`).
LOCK_RUN = text("SELECT FROM automation_runs WHERE id = :run_pk FOR NO KEY UPDATE")

# A streamed run: the items its finishing batches made (:ids, each with the index of the batch that made
# it in :sources) become batches of the next stage (:next) in the finish's transaction, chunked batch by
# batch by the size the stage was opened with (an appended batch holds items of one finished batch, as if
# each had handed on alone, one after the other), numbered after its last batch, the first of them queued
# as far as the stage's window (:window, NULL: no window) has room beside what is in flight or waiting, and
# counted in the stage's totals. Nothing when the next stage is not an open streamed stage.
HAND_ON = text(f"""
    WITH target AS (
        SELECT batch_size FROM run_stages
         WHERE run_id = :run_pk AND stage = :next AND streamed AND status = 'planned'
    ), numbered AS (
        SELECT t.source, t.id, row_number() OVER (PARTITION BY t.source ORDER BY t.id) - 1 AS n
          FROM unnest(CAST(:sources AS integer[]), CAST(:ids AS integer[])) AS t(source, id)
    ), chunks AS (
        SELECT row_number() OVER (ORDER BY c.source, c.k) - 1 AS k, c.ids FROM (
            SELECT numbered.source, CAST(numbered.n / target.batch_size AS integer) AS k,
                   array_agg(numbered.id ORDER BY numbered.id) AS ids
              FROM numbered, target GROUP BY 1, 2) AS c
    ), base AS (
        SELECT coalesce(max(seq) + 1, 0) AS seq FROM stage_batches WHERE run_id = :run_pk AND stage = :next
    ), room AS (  -- the window less what is in flight or waiting for room already (those go first)
        SELECT CAST(:window AS integer) - count(*) AS n FROM stage_batches
         WHERE run_id = :run_pk AND stage = :next AND status <> 'done'
    ), inserted AS (
        INSERT INTO stage_batches (run_id, stage, seq, item_ids, status, attempts, items_out, credits, emitted_at)
        SELECT :run_pk, :next, base.seq + chunks.k, chunks.ids, 'pending', 0, 0, 0,
               CASE WHEN room.n IS NULL OR chunks.k < room.n THEN now() END
          FROM chunks, base, room
     RETURNING id, emitted_at, cardinality(item_ids) AS items
    ), emitted AS (
        INSERT INTO outbox (routing_key, payload, available_at)
        SELECT CAST(:batch_type AS text), {process_batch_payload_sql("inserted.id")}, {RESERVED_UNTIL}
          FROM inserted WHERE emitted_at IS NOT NULL ORDER BY inserted.id
     RETURNING id, payload
    ), grown AS (
        UPDATE run_stages SET batches_total = batches_total + (SELECT count(*) FROM inserted),
               items_in = items_in + (SELECT coalesce(sum(items), 0) FROM inserted)
         WHERE run_id = :run_pk AND stage = :next AND EXISTS (SELECT FROM inserted)
     RETURNING batches_total
    )
    SELECT (SELECT count(*) FROM grown) AS grown, {QUEUED} AS queued
""")


async def hand_on(deps: Deps, session: AsyncSession, claim: Claim, made: Sequence[list[int]]) -> list[ReservedRow]:
    """Append the items a streamed run's finishing batches of one stage made (`made`: a list per batch,
    in the order they finish; `claim` is any of theirs) as batches of the next stage, in one statement;
    returns the messages of those queued at once (reserved outbox rows)."""
    stage = claim.ctx.stage + 1
    batch_type = ProcessBatch.type_for(stage)
    row = (await session.execute(HAND_ON, {
        "run_pk": claim.ctx.run.pk, "next": stage, "sources": [n for n, ids in enumerate(made) for _ in ids],
        "ids": [item for ids in made for item in ids], "window": streamed_window(deps),
        "batch_type": batch_type, "run_id": claim.ctx.run.run_id, "reserve": deps.relay.reserve_seconds})).one()
    return reserved_rows(batch_type, row.queued)


@dataclass(frozen=True)
class ReadyFinish:
    """A batch whose AI call is done, ready to be finished."""

    claim: Claim
    work: StageWork
    inputs: Any
    outputs: Any
    ai_calls: int


@dataclass(frozen=True)
class Finished:
    """What a finish did that matters after its commit."""

    queued: list[ReservedRow]  # the batch messages it queued (the window's refill and the hand-on), to send
    last: bool  # it completed a stage (its events are in the outbox for the relay)


async def write_outputs(session: AsyncSession, group: list[ReadyFinish]) -> list[Written | None]:
    """The outputs of each batch of `group` (None for a batch that had nothing to do), in one go for a
    stage that `WritesGroups`, else batch by batch."""
    work = group[0].work
    working = [ready for ready in group if ready.inputs]
    if isinstance(work, WritesGroups):
        made = iter(await work.write_group(session, [(r.claim.ctx, r.inputs, r.outputs) for r in working])
                    if working else [])
    else:
        made = iter([await r.work.write(session, r.claim.ctx, r.inputs, r.outputs) for r in working])
    return [next(made) if ready.inputs else None for ready in group]


async def finish_in(deps: Deps, session: AsyncSession, group: list[ReadyFinish]) -> Finished:
    """The finish of every batch of `group` (one run's stage) inside the caller's transaction; raises
    ClaimLost or InsufficientCredits when a batch of it cannot finish (the caller rolls back).

    The outputs of every batch go first (they touch only the batches' own items); then one statement,
    FINISH, does the rest for the whole group: each batch's charge, `done` state, refill of the run's
    window (the next batch marked emitted and its `stage.N.batch` message inserted into the outbox, its
    payload built in SQL) and log line, whose file copy is still written after the commit, and once for
    the group the rows every batch of the account and run shares (the account's balance, the stage
    counters, the run), so a group of k batches updates those rows once rather than k times; in a
    streamed run one HAND_ON appends what the group made to the next stage. The lock
    order is the same everywhere (outputs, run when streamed, account, batches, run stage, run), the
    refill's SKIP LOCKED never waits, and the shared locks are taken only once every output is written,
    so they are held for the FINISH statement and the commit alone. Refill and log lines hang on the
    batches' update: with a claim lost nothing is written.
    """
    written = await write_outputs(session, group)
    messages = []
    for ready, wrote in zip(group, written, strict=True):
        ctx, spec = ready.claim.ctx, ready.work.stage
        messages.append(deps.logger.progress_message(
            ctx.stage, f"batch {ready.claim.seq + 1}/{ready.claim.batches_total} done: {len(ready.claim.item_ids)} "
                       f"{spec.input_name} -> {wrote.items_out if wrote else 0} {spec.output_name}, "
                       f"{wrote.credits if wrote else 0} credits"))
        deps.logger.file_line(session, ctx.run, ctx.stage, messages[-1])
    await session.flush()
    if any(ready.claim.streaming for ready in group):
        # Every finish of a streamed run locks the run first: the lock order is then the same for a
        # batch that hands on to the next stage's row and one of that stage (run, account, batch,
        # run stages), and each statement after it sees every earlier finish of the run committed.
        await session.execute(LOCK_RUN, {"run_pk": group[0].claim.ctx.run.pk})
    first, work = group[0].claim, group[0].work
    ctx, run = first.ctx, first.ctx.run
    amounts = [wrote.credits if wrote else 0 for wrote in written]
    row = (await session.execute(FINISH, {
        "account_id": run.account_id, "run_pk": run.pk, "stage": ctx.stage, "reason": ledger_reason(ctx.stage),
        "batch_ids": [ready.claim.batch_id for ready in group], "tokens": [ready.claim.token for ready in group],
        "items_out": [wrote.items_out if wrote else 0 for wrote in written], "amounts": amounts,
        "ai_calls": [ready.ai_calls for ready in group], "log_messages": messages,
        "window": window_size(deps, work, first.items_in), "slots": shared_slots(deps, work, first.items_in),
        "batch_type": ProcessBatch.type_for(ctx.stage), "run_id": run.run_id, "reserve": deps.relay.reserve_seconds,
    })).one()
    if not row.paid:
        raise await insufficient(session, run.account_id, sum(amounts))
    if row.finished < len(group):
        raise ClaimLost
    queued = reserved_rows(ProcessBatch.type_for(ctx.stage), row.queued)
    made = [wrote.handed_on for ready, wrote in zip(group, written, strict=True)
            if ready.claim.streaming and wrote is not None and wrote.handed_on]
    if made:
        queued += await hand_on(deps, session, first, made)
    # a streamed stage is over when the stage feeding it is, and its own batches are done
    last = row.batches_done == row.batches_total and (not row.streamed or bool(row.upstream_completed))
    if last:
        totals = StageTotals(stage=ctx.stage, batches_total=row.batches_total, items_in=row.items_in,
                             items_out=row.items_out, credits=row.credits, ai_calls=row.ai_calls)
        await complete_stage(deps, session, run, totals)
        if first.streaming:
            await complete_ready_stages(deps, session, run)
    return Finished(queued=queued, last=last)


async def finish_group(deps: Deps, group: list[ReadyFinish]) -> None:
    """One transaction that makes the effects of `group`'s batches real (`finish_in`), all or none.
    The commit follows the last FINISH at once; the batch messages it queued are sent right after it
    by this process (reserved outbox rows, `shared.outbox`), the rest of its events by the relay."""
    async with deps.sessions() as session, session.begin():
        finished = await finish_in(deps, session, group)
    if finished.last:
        deps.relay.wake()
    await deps.relay.send_reserved(finished.queued)


async def finish_batch(deps: Deps, claim: Claim, work: StageWork, inputs: Any, outputs: Any, ai_calls: int = 0
                       ) -> bool:
    """Finish one batch in its own transaction; False if the claim was lost."""
    try:
        await finish_group(deps, [ReadyFinish(claim, work, inputs, outputs, ai_calls)])
    except ClaimLost:
        log.warning("batch %s: claim lost before finishing; outputs discarded", claim.batch_id)
        return False
    return True


class FinishGroups:
    """Group commit: the finishes of one run's stage that become ready while another of them commits
    go into one transaction together.

    A process's batches of a run finish one after another anyway (they update the same account, stage
    and run rows, and a streamed run's finishes take its row lock), so a finish that would wait for
    those locks waits here instead and then commits with the others that queued meanwhile: one
    session, one BEGIN and COMMIT (one WAL flush), one run lock and one wake of the outbox relay for
    the group. A finish with nothing before it goes at once, alone. Each batch's statements are the
    ones it runs alone (`finish_in`), so a group commits exactly what its batches would have one by
    one; when anything in a group fails (a lost claim, credits run out, a deadlock, the database gone)
    the whole transaction rolls back and every batch of it finishes alone (`finish_batch`), which
    gives each its own outcome. Only batches of the same run and stage are grouped: they lock the
    same rows in the same order, so a group adds no lock order that a finish alone does not have.
    """

    def __init__(self) -> None:
        # per (run, stage): the finishes waiting, each with the future its handler awaits
        self._ready: dict[tuple[int, int], list[tuple[ReadyFinish, asyncio.Future[None]]]] = {}
        self._committers: dict[tuple[int, int], asyncio.Task[None]] = {}

    async def finish(self, deps: Deps, ready: ReadyFinish) -> None:
        """Finish the batch, in a group when others of its run and stage are ready with it; raises what
        its finish alone would raise (InsufficientCredits, a database error)."""
        key = (ready.claim.ctx.run.pk, ready.claim.ctx.stage)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ready.setdefault(key, []).append((ready, done))
        if key not in self._committers:
            self._committers[key] = asyncio.create_task(self._commit_while_ready(deps, key),
                                                        name=f"finish run {key[0]} stage {key[1]}")
        await done

    async def _commit_while_ready(self, deps: Deps, key: tuple[int, int]) -> None:
        waiting: list[tuple[ReadyFinish, asyncio.Future[None]]] = []
        try:
            while waiting := self._ready.pop(key, []):
                if len(waiting) > 1 and await _commit_group(deps, [ready for ready, _ in waiting]):
                    _settle(waiting)
                    continue
                for ready, done in waiting:  # alone, or each of a group that failed
                    try:
                        await finish_batch(deps, ready.claim, ready.work, ready.inputs, ready.outputs,
                                           ready.ai_calls)
                    except Exception as error:
                        _settle([(ready, done)], error)
                    else:
                        _settle([(ready, done)])
        finally:
            del self._committers[key]
            _settle(waiting + self._ready.pop(key, []), RuntimeError("the finish was interrupted"))


async def _commit_group(deps: Deps, group: list[ReadyFinish]) -> bool:
    """Finish every batch of `group` in one transaction; False (and nothing written) if any failed."""
    try:
        await finish_group(deps, group)
    except Exception as error:
        log.info("a group of %d finishes failed (%s: %s); each finishes alone", len(group),
                 type(error).__name__, error)
        return False
    return True


def _settle(waiting: list[tuple[ReadyFinish, asyncio.Future[None]]], error: Exception | None = None) -> None:
    for _, done in waiting:
        if done.done():  # settled already, or its handler was cancelled meanwhile
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


async def pause_for_credits(deps: Deps, claim: Claim, error: InsufficientCredits) -> None:
    """Credits ran out mid-run: hand the batch back and pause the run with the reason."""
    async with deps.sessions() as session, session.begin():
        await session.execute(
            update(StageBatch).where(StageBatch.id == claim.batch_id, StageBatch.claim_token == claim.token)
            .values(status="pending", claim_token=None, lease_expires_at=None, error=str(error)))
        run, site = await lock_run(session, claim.ctx.run.run_id)
        if run.status == "running":
            run.status = "paused"
            run.pause_reason = "insufficient credits"
            deps.logger.run_event(session, claim.ctx.run, f"Run paused: insufficient credits ({error})",
                                  level="WARNING")
            add_events(session, RunStateChanged(type="run.paused", run_id=run.run_id, site_id=site.id,
                                                status="paused", reason="insufficient credits"))
    deps.relay.wake()


async def keep_lease(deps: Deps, claim: Claim) -> None:
    """Renew the claim's lease while the batch is worked on, so a short lease is safe for long
    AI calls and a dead consumer's batch is handed out again soon (by the watchdog)."""
    lease = deps.settings.batch_lease_seconds
    while True:
        await asyncio.sleep(lease / 3)
        try:
            async with deps.sessions() as session, session.begin():
                await relaxed_commit(session)
                renewed = await session.execute(
                    update(StageBatch).where(StageBatch.id == claim.batch_id, StageBatch.claim_token == claim.token,
                                             StageBatch.status == "claimed")
                    .values(lease_expires_at=func.now() + timedelta(seconds=lease)))
            if renewed.rowcount == 0:  # type: ignore[attr-defined]
                return
        except Exception:  # database away for a moment: the next renewal tries again
            log.warning("could not renew the lease of batch %s", claim.batch_id, exc_info=True)


async def process_batch(deps: Deps, command: ProcessBatch, work: StageWork,
                        slots: asyncio.Semaphore | None = None, finishes: FinishGroups | None = None,
                        claims: ClaimGroups | None = None) -> None:
    """Claim, load, call the AI, finish. Errors hand the batch back and go to the retry path.

    `slots` (the process's concurrency) is held for the claim, the load and the AI call, and given
    back before the finish: the next batch's AI call starts while this one's outputs commit, so a
    slot spends its time on AI calls rather than on bookkeeping (at 200 ms calls the finish was an
    eighth of a slot's time). A batch is never claimed while it waits for a slot, so a pause or a
    SIGTERM finds only batches whose AI call has started or is done; the prefetch (two messages per
    slot) bounds the finishes in flight. With `finishes` (a stage process has one), finishes of the
    same run's stage that are ready together commit in one transaction (`FinishGroups`), and with
    `claims` claims of the stage that arrive together share one statement (`ClaimGroups`).
    """
    claim: Claim | None = None
    async with contextlib.AsyncExitStack() as slot:
        if slots is not None:
            await slot.enter_async_context(slots)
        try:
            if claims is not None:
                claim = await claims.claim(deps, command, work)
                if claim is None:
                    return
                if claim.loaded:
                    inputs = claim.inputs
                else:
                    async with autocommit_session(deps.sessions) as session:
                        inputs = await work.load(session, claim.ctx.site_id, claim.item_ids)
            else:
                async with autocommit_session(deps.sessions) as session:
                    claim = await claim_batch(deps, command, session, work.load_in_claim)
                    if claim is None:
                        return
                    inputs = (claim.inputs if claim.loaded
                              else await work.load(session, claim.ctx.site_id, claim.item_ids))
        except Exception as error:
            # Released outside the block above: a handler never holds two pooled connections at once.
            if claim is not None:
                await release_claim(deps, claim, f"{type(error).__name__}: {error}")
            raise
        heartbeat = asyncio.create_task(keep_lease(deps, claim))
        try:
            with count_ai_calls() as calls:
                outputs = await work.generate(deps, inputs) if inputs else None
            await slot.aclose()  # the slot goes back before the finish
            if finishes is None:
                await finish_batch(deps, claim, work, inputs, outputs, ai_calls=calls.count)
            else:
                await finishes.finish(deps, ReadyFinish(claim, work, inputs, outputs, calls.count))
        except InsufficientCredits as error:
            await pause_for_credits(deps, claim, error)
        except Exception as error:
            await release_claim(deps, claim, f"{type(error).__name__}: {error}")
            raise
        finally:
            heartbeat.cancel()
