"""Composition root of a consumer process: `automation consume control|stage1..stage7`.

It builds the broker, engine and relay from settings at start-up, subscribes the process's
queues, and hands each message to the plain functions that hold the logic. The handlers count
each message and time each batch here (`shared.metrics`), so the logic stays free of metrics;
with `AUTOMATION_METRICS_PORT` set, the process serves /metrics, /healthz and /readyz
(`shared.health`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from faststream import FastStream
from faststream.rabbit import Channel, RabbitBroker

from ai import make_provider
from consumers import run_control
from consumers.batches import process_batch
from consumers.deps import Deps
from consumers.planning import plan_stage as plan_batches
from consumers.registry import STAGE_WORK
from consumers.stage7_review import complete_run
from consumers.watchdog import watch_forever
from shared.automation_logger import AutomationLogger
from shared.catalogue import STAGE_NUMBERS
from shared.db import make_engine, make_sessionmaker
from shared.events import ControlCommand, PauseRun, ProcessBatch, ResumeRun, StagePlanTrigger
from shared.health import broker_check, database_check, ops_server
from shared.messaging import FailureRouter, PoisonMessage, make_broker
from shared.metrics import BATCH_SECONDS, PIPELINE_STATE, REGISTRY, counted
from shared.outbox import OutboxRelay
from shared.settings import Settings
from shared.topology import Topology, declare_topology

log = logging.getLogger("automation.consumer")
PROCESSES = ("control", *(f"stage{n}" for n in STAGE_NUMBERS))
# Batch messages a stage process holds per slot of its concurrency. With exactly one, a freed
# slot waits for its ack to reach the broker and the next message to come back (tens of ms on a
# busy host, a sixth of the slots' time at 200 ms calls); with two, the next one is already here.
# The extra messages are not claimed, so a crash only hands them to another consumer.
PREFETCH_PER_SLOT = 2


@dataclass
class ProcessState:
    """What start-up builds; handlers read it."""

    deps: Deps | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def ready(self) -> Deps:
        assert self.deps is not None, "process not started"
        return self.deps


def subscribe_control(broker: RabbitBroker, topology: Topology, state: ProcessState, concurrency: int) -> None:
    @broker.subscriber(topology.control_queue(), channel=Channel(prefetch_count=concurrency),
                       title="control", description="run.start, run.pause and run.resume commands.")
    async def on_control(command: ControlCommand) -> None:
        with counted("control", "command"):
            if isinstance(command, PauseRun):
                await run_control.pause_run(state.ready, command)
            elif isinstance(command, ResumeRun):
                await run_control.resume_run(state.ready, command)
            else:
                await run_control.start_run(state.ready, command)


def subscribe_stage(broker: RabbitBroker, topology: Topology, state: ProcessState, stage: int,
                    concurrency: int) -> None:
    @broker.subscriber(topology.plan_queue(stage), channel=Channel(prefetch_count=2),
                       title=f"stage{stage}.plan",
                       description=f"Plans stage {stage} when stage {stage - 1} completes or it is requested.")
    async def on_plan(trigger: StagePlanTrigger) -> None:
        with counted(str(stage), "plan"):
            if stage == 7:
                await complete_run(state.ready, trigger)
            else:
                await plan_batches(state.ready, trigger, STAGE_WORK[stage])

    if stage == 7:
        return

    slots = asyncio.Semaphore(concurrency)

    @broker.subscriber(topology.batch_queue(stage), channel=Channel(prefetch_count=concurrency * PREFETCH_PER_SLOT),
                       title=f"stage{stage}.batch", description=f"Processes one batch of stage {stage}.")
    async def on_batch(command: ProcessBatch) -> None:
        async with slots:
            with counted(str(stage), "batch"):
                if command.stage != stage:
                    raise PoisonMessage(f"{command.type} does not belong to stage {stage}")
                with BATCH_SECONDS.labels(str(stage)).time():
                    await process_batch(state.ready, command, STAGE_WORK[stage])


def build_app(process: str, settings: Settings, concurrency: int | None = None) -> FastStream:
    """The FastStream app of one consumer process."""
    if process not in PROCESSES:
        raise ValueError(f"unknown process {process!r}; expected one of {', '.join(PROCESSES)}")
    concurrency = concurrency or settings.concurrency
    topology = Topology.from_settings(settings)
    router = FailureRouter(settings, topology)
    broker = make_broker(settings, router, registry=REGISTRY, app_name=process, graceful_timeout=30.0)
    state = ProcessState()
    if process == "control":
        subscribe_control(broker, topology, state, concurrency)
    else:
        subscribe_stage(broker, topology, state, int(process.removeprefix("stage")), concurrency)
    app = FastStream(broker)
    engine = make_engine(settings, pool_size=settings.db_pool_size, pre_ping=False)
    sessions = make_sessionmaker(engine)
    relay = OutboxRelay(sessions, broker, topology, settings.outbox_poll_seconds)
    ops = ops_server(settings, {"database": database_check(engine), "broker": broker_check(broker)})

    @app.on_startup
    async def build_deps() -> None:
        if ops is not None:  # up before the broker, so /readyz can say it is not connected yet
            await ops.start()
        state.deps = Deps(settings=settings, sessions=sessions, logger=AutomationLogger(settings.log_dir),
                          provider=make_provider(settings), relay=relay,
                          worker_id=f"{process}@{socket.gethostname()}:{os.getpid()}")
        router.on_exhausted = lambda payload, reason: run_control.fail_run_for_message(state.ready, payload, reason)
        router.on_retry = lambda payload, attempt, delay, reason: run_control.log_retry(
            state.ready, payload, attempt, delay, reason)

    @app.after_startup
    async def start_relay() -> None:
        await declare_topology(broker, topology)
        state.tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
        if process == "control":
            state.tasks.append(asyncio.create_task(watch_forever(state.ready), name="watchdog"))
            if ops is not None:  # only control (and the API) reads the pipeline state for the gauges
                state.tasks.append(asyncio.create_task(
                    PIPELINE_STATE.refresh_forever(sessions, settings.metrics_refresh_seconds), name="metrics"))
        log.info("%s consuming (concurrency %d)", process, concurrency)

    @app.after_shutdown
    async def stop() -> None:
        for task in state.tasks:
            task.cancel()
        if ops is not None:
            await ops.stop()
        await engine.dispose()

    return app
