"""The Celery peer of `python -m bench -s peer`: the pipeline as a typical Celery team would write it.

One task per batch, a chord per stage over the stage's batches (its body plans the next stage and
starts the next chord), Redis as the result backend, `acks_late`. Each batch task runs one transaction:
it locks the batch row (`SELECT … FOR UPDATE`; a batch already done is skipped), loads the inputs,
calls the AI, writes the outputs, makes the conditional debit and its ledger row, and updates the batch,
the stage counters and the run. There is no lease, no outbox, no window and no retry: a worker dying
between a stage's commit and the next chord's publish leaves the run stuck, and a failed batch fails
the run.

So that both systems do the same database work, the batch's loading and writing are this project's own
stage code (`consumers.registry.STAGE_WORK`: the same statements) and the planning is its
`insert_batches`; only the orchestration differs. The stage code is async (SQLAlchemy's asyncio API over
asyncpg): each pool process (or thread, with `-P threads`) runs it on an event loop of its own, with a
one-connection engine.

A worker is started by `bench.peer` as `python -m celery -A bench.peer_tasks worker …`; the broker, the
result backend, the queue and the key prefix come from `BENCH_PEER_*` variables, everything else from
the usual `AUTOMATION_*` settings.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from celery import Celery, chord, group
from sqlalchemy import text

from ai import make_provider
from consumers.deps import BatchContext, Deps, Written
from consumers.planning import input_table, insert_batches
from consumers.registry import STAGE_WORK
from consumers.stage7_review import store_review_queue
from shared.automation_logger import AutomationLogger, RunRef
from shared.credits import charge
from shared.db import analyze_if_stale, make_engine, make_sessionmaker
from shared.metrics import count_ai_calls
from shared.outbox import NoRelay
from shared.settings import Settings

T = TypeVar("T")


def celery_config(broker: str, backend: str, queue: str, prefix: str) -> dict[str, Any]:
    """What the worker and the bench (which only sends the first task) configure alike."""
    return {
        "broker_url": broker, "result_backend": backend,
        "result_backend_transport_options": {"global_keyprefix": prefix},
        "task_default_queue": queue,  # its exchange and routing key default to the same name
        "task_acks_late": True, "task_serializer": "json", "result_serializer": "json", "accept_content": ["json"],
        "result_expires": 3600, "broker_connection_retry_on_startup": True,
        # no remote control or events: nothing but the bench's own queue is declared on the broker
        "worker_enable_remote_control": False, "worker_send_task_events": False, "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
    }


app = Celery("bench_peer")
app.conf.update(celery_config(os.environ.get("BENCH_PEER_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
                              os.environ.get("BENCH_PEER_BACKEND", "redis://127.0.0.1:6379/0"),
                              os.environ.get("BENCH_PEER_QUEUE", "bench_peer"),
                              os.environ.get("BENCH_PEER_PREFIX", "bench_peer")))


class _Worker:
    """The event loop, engine and stage dependencies of one pool process or thread."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        settings = Settings()
        self.sessions = make_sessionmaker(make_engine(settings, pool_size=1, pre_ping=False))
        self.deps = Deps(settings=settings, sessions=self.sessions, logger=AutomationLogger(settings.log_dir),
                         provider=make_provider(settings), relay=NoRelay(),
                         worker_id=f"peer@{self.pid}:{threading.get_ident()}")

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)


_local = threading.local()


def _worker() -> _Worker:
    worker: _Worker | None = getattr(_local, "worker", None)
    if worker is None or worker.pid != os.getpid():  # built after the fork, never inherited
        worker = _local.worker = _Worker()
    return worker


LOCK_BATCH = text("""
    SELECT b.status, b.item_ids, r.site_id, s.account_id
      FROM stage_batches AS b JOIN automation_runs AS r ON r.id = b.run_id JOIN sites AS s ON s.id = r.site_id
     WHERE b.id = :batch_id
       FOR UPDATE OF b
""")
BATCH_DONE = text("""
    UPDATE stage_batches SET status = 'done', items_out = :items_out, credits = :credits, completed_at = now(),
           attempts = attempts + 1
     WHERE id = :batch_id
""")
COUNTERS = text("""
    UPDATE run_stages SET batches_done = batches_done + 1, items_out = items_out + :items_out,
           credits = credits + :credits, ai_calls = ai_calls + :ai_calls
     WHERE run_id = :run_pk AND stage = :stage
""")
RUN_PROGRESS = text("""
    UPDATE automation_runs SET total_credits_used = total_credits_used + :credits, last_progress_at = now()
     WHERE id = :run_pk
""")


@app.task(name="peer.process_batch")
def process_batch(run_pk: int, run_id: str, stage: int, batch_id: int) -> int:
    worker = _worker()
    try:
        return worker.run(_process_batch(worker, run_pk, run_id, stage, batch_id))
    except Exception as error:
        worker.run(_fail_run(worker, run_pk, f"batch {batch_id}: {type(error).__name__}: {error}"))
        raise


async def _process_batch(worker: _Worker, run_pk: int, run_id: str, stage: int, batch_id: int) -> int:
    work = STAGE_WORK[stage]
    async with worker.sessions() as session, session.begin():
        batch = (await session.execute(LOCK_BATCH, {"batch_id": batch_id})).one()
        if batch.status == "done":  # a redelivery after the commit: nothing to do
            return 0
        ctx = BatchContext(run=RunRef(pk=run_pk, run_id=run_id, site_id=batch.site_id, account_id=batch.account_id),
                           batch_id=batch_id, stage=stage, settings=worker.deps.settings)
        inputs = await work.load(session, batch.site_id, list(batch.item_ids))
        with count_ai_calls() as calls:
            outputs = await work.generate(worker.deps, inputs) if inputs else None
        written = await work.write(session, ctx, inputs, outputs) if inputs else Written(items_out=0, credits=0)
        await charge(session, account_id=batch.account_id, amount=written.credits, run_pk=run_pk,
                     batch_id=batch_id, stage=stage)
        values = {"batch_id": batch_id, "run_pk": run_pk, "stage": stage, "items_out": written.items_out,
                  "credits": written.credits, "ai_calls": calls.count}
        await session.execute(BATCH_DONE, values)
        await session.execute(COUNTERS, values)
        await session.execute(RUN_PROGRESS, values)
    return written.items_out


async def _fail_run(worker: _Worker, run_pk: int, error: str) -> None:
    async with worker.sessions() as session, session.begin():
        await session.execute(text("UPDATE automation_runs SET status = 'failed', error_message = :error, "
                                   "completed_at = now() WHERE id = :run_pk AND status = 'running'"),
                              {"run_pk": run_pk, "error": error[:2000]})


NEW_RUN = text("""
    INSERT INTO automation_runs (run_id, site_id, status, current_stage, total_credits_used, estimated_credits,
                                 trigger, requested_by)
    VALUES (:run_id, :site_id, 'running', 1, 0, 0, 'manual', 'bench peer')
 RETURNING id
""")
COMPLETE_STAGE = text("""
    UPDATE run_stages SET status = 'completed', completed_at = now()
     WHERE run_id = :run_pk AND stage = :stage
 RETURNING batches_total, items_in, items_out, credits, ai_calls
""")
NEW_STAGE = text("""
    INSERT INTO run_stages (run_id, stage, status, batches_total, batches_done, items_in, items_out, credits,
                            ai_calls, started_at)
    VALUES (:run_pk, :stage, 'planned', :batches, 0, :items, 0, 0, 0, now())
""")
STAGE_BATCHES = text("SELECT id FROM stage_batches WHERE run_id = :run_pk AND stage = :stage ORDER BY seq")


@app.task(name="peer.start_run")
def start_run(site_id: int, run_id: str) -> None:
    worker = _worker()
    async def start() -> int:
        async with worker.sessions() as session, session.begin():
            return int(await session.scalar(NEW_RUN, {"run_id": run_id, "site_id": site_id}))
    run_pk = worker.run(start())
    _plan_from(worker, run_pk, run_id, site_id, 1)


@app.task(name="peer.stage_done")
def stage_done(results: list[int], run_pk: int, run_id: str, site_id: int, stage: int) -> None:
    worker = _worker()
    worker.run(_complete_stage(worker, run_pk, stage))
    _plan_from(worker, run_pk, run_id, site_id, stage + 1)


async def _complete_stage(worker: _Worker, run_pk: int, stage: int) -> None:
    async with worker.sessions() as session, session.begin():
        row = (await session.execute(COMPLETE_STAGE, {"run_pk": run_pk, "stage": stage})).one()
        result = {"batches": row.batches_total, "items_in": row.items_in, "items_out": row.items_out,
                  "credits": row.credits, "ai_calls": row.ai_calls}
        await session.execute(
            text(f"UPDATE automation_runs SET stage_{stage}_result = CAST(:result AS jsonb), "
                 "current_stage = :next, last_progress_at = now() WHERE id = :run_pk"),
            {"result": _json(result), "next": min(stage + 1, 7), "run_pk": run_pk})


def _plan_from(worker: _Worker, run_pk: int, run_id: str, site_id: int, stage: int) -> None:
    """Plan `stage` and start its chord; a stage with nothing to do completes at once; after stage 6,
    stage 7 records the review queue and completes the run."""
    while stage <= 6:
        batch_ids = worker.run(_plan(worker, run_pk, site_id, stage))
        if batch_ids:
            chord(group(process_batch.s(run_pk, run_id, stage, batch_id) for batch_id in batch_ids),
                  stage_done.s(run_pk, run_id, site_id, stage)).apply_async()
            return
        worker.run(_complete_stage(worker, run_pk, stage))
        stage += 1
    worker.run(_complete_run(worker, run_pk, site_id))


async def _plan(worker: _Worker, run_pk: int, site_id: int, stage: int) -> list[int]:
    work = STAGE_WORK[stage]
    await analyze_if_stale(worker.sessions, input_table(work))  # as the pipeline's planner does
    async with worker.sessions() as session, session.begin():
        size = int(await session.scalar(text(f"SELECT stage_{stage}_batch_size FROM automation_configs "
                                             "WHERE site_id = :site_id"), {"site_id": site_id}) or 1)
        batches, items = await insert_batches(session, run_pk, work.stage.number, site_id, size)
        await session.execute(NEW_STAGE, {"run_pk": run_pk, "stage": stage, "batches": batches, "items": items})
        return list((await session.scalars(STAGE_BATCHES, {"run_pk": run_pk, "stage": stage})).all())


async def _complete_run(worker: _Worker, run_pk: int, site_id: int) -> None:
    async with worker.sessions() as session, session.begin():
        await store_review_queue(session, run_pk, site_id)
        await session.execute(text("UPDATE automation_runs SET status = 'completed', completed_at = now() "
                                   "WHERE id = :run_pk"), {"run_pk": run_pk})


def _json(value: dict[str, int]) -> str:
    import json

    return json.dumps(value)
