"""Composition root of a consumer process: `automation consume control|stage1..stage7|publish|notify`.

It builds the broker, engine, relay and the handlers' `Deps` from settings when the process starts,
subscribes the process's queues, and hands each message, with the process's `Deps`, to the plain
functions that hold the logic. The handlers count each message and time
each batch here (`shared.metrics`), so the logic stays free of metrics; with `AUTOMATION_METRICS_PORT`
set, the process serves /metrics, /healthz and /readyz (`shared.health`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from functools import partial

from faststream import FastStream
from faststream.context import ContextRepo
from faststream.rabbit import Channel, RabbitBroker

from ai import make_provider
from consumers import notify, publish, run_control
from consumers.batches import ClaimGroups, FinishGroups, process_batch
from consumers.deps import Deps
from consumers.planning import plan_stage as plan_batches
from consumers.registry import STAGE_WORK
from consumers.stage7_review import complete_run
from consumers.watchdog import watch_forever
from shared.automation_logger import AutomationLogger
from shared.catalogue import BATCH_STAGES, STAGE_NUMBERS
from shared.db import make_engine, make_sessionmaker
from shared.events import (
    ControlCommand,
    DeliverNotification,
    NotifyTrigger,
    PauseRun,
    ProcessBatch,
    PublishContent,
    ResumeRun,
    StagePlanTrigger,
)
from shared.health import broker_check, database_check, ops_server
from shared.messaging import FAILURES, FailureRouter, PoisonMessage, make_broker
from shared.metrics import BATCH_SECONDS, PIPELINE_STATE, REGISTRY, counted
from shared.outbox import OutboxRelay
from shared.publishers import declare_publishers
from shared.settings import Settings
from shared.topology import Topology, declare_topology

log = logging.getLogger("automation.consumer")
PROCESSES = ("control", *(f"stage{n}" for n in STAGE_NUMBERS), "publish", "notify")
# Batch messages a stage process holds per slot of its concurrency. With exactly one, a freed
# slot waits for its ack to reach the broker and the next message to come back (tens of ms on a
# busy host, a sixth of the slots' time at 200 ms calls); with two, the next one is already here.
# The extra messages are not claimed, so a crash only hands them to another consumer.
PREFETCH_PER_SLOT = 2
# How often a stage process recounts its stage's consumers (`count_consumer_slots`), one round trip to
# the broker: a replica started or stopped changes how far the runs' windows open within this long, and
# so does the process's own start (its consumer may not be registered yet at the first count).
RECOUNT_SLOTS_SECONDS = 2.0


# How a handler reaches its process's `Deps`. Handlers close over it rather than take the `Deps` as a
# FastStream `Context()` parameter: FastDepends resolves such a parameter by calling a plain function
# on a worker thread for every message (a thread hand-off, a task group and a wake-up of the event
# loop), which was a twentieth of a stage process's CPU at zero AI latency.
DepsOf = Callable[[], Deps]


def subscribe_control(broker: RabbitBroker, topology: Topology, concurrency: int, deps_of: DepsOf) -> None:
    queue = topology.control_queue()

    @broker.subscriber(topology.consumed(queue), channel=Channel(prefetch_count=concurrency), title="control",
                       description=f"Run commands; the queue is bound to {', '.join(topology.keys_of(queue))}.")
    async def on_control(command: ControlCommand) -> None:
        deps = deps_of()
        with counted("control", "command"):
            if isinstance(command, PauseRun):
                await run_control.pause_run(deps, command)
            elif isinstance(command, ResumeRun):
                await run_control.resume_run(deps, command)
            else:
                await run_control.start_run(deps, command)


def subscribe_stage(broker: RabbitBroker, topology: Topology, stage: int, concurrency: int, deps_of: DepsOf) -> None:
    plan = topology.plan_queue(stage)

    @broker.subscriber(topology.consumed(plan), channel=Channel(prefetch_count=2), title=f"stage{stage}.plan",
                       description=f"Plans stage {stage}; the queue is bound to {', '.join(topology.keys_of(plan))}.")
    async def on_plan(trigger: StagePlanTrigger) -> None:
        with counted(str(stage), "plan"):
            if stage == 7:
                await complete_run(deps_of(), trigger)
            else:
                await plan_batches(deps_of(), trigger, STAGE_WORK[stage])

    if stage == 7:
        return

    slots, finishes, claims = asyncio.Semaphore(concurrency), FinishGroups(), ClaimGroups()
    batch = topology.batch_queue(stage)

    @broker.subscriber(topology.consumed(batch), channel=Channel(prefetch_count=concurrency * PREFETCH_PER_SLOT),
                       title=f"stage{stage}.batch",
                       description=f"Processes one batch of stage {stage}; the queue is bound to "
                                   f"{', '.join(topology.keys_of(batch))}.")
    async def on_batch(command: ProcessBatch) -> None:
        with counted(str(stage), "batch"):
            if command.stage != stage:
                raise PoisonMessage(f"{command.type} does not belong to stage {stage}")
            with BATCH_SECONDS.labels(str(stage)).time():
                await process_batch(deps_of(), command, STAGE_WORK[stage], slots, finishes, claims)


def subscribe_publish(broker: RabbitBroker, topology: Topology, concurrency: int, deps_of: DepsOf) -> None:
    queue = topology.publish_queue()

    @broker.subscriber(topology.consumed(queue), channel=Channel(prefetch_count=concurrency), title="publish",
                       description=f"Publishes approved articles; the queue is bound to "
                                   f"{', '.join(topology.keys_of(queue))}.")
    async def on_publish(command: PublishContent) -> None:
        with counted("publish", "publish"):
            await publish.publish(deps_of(), command)


def subscribe_notify(broker: RabbitBroker, topology: Topology, concurrency: int, deps_of: DepsOf) -> None:
    events, deliveries = topology.notify_queue(), topology.notify_deliver_queue()

    @broker.subscriber(topology.consumed(events), channel=Channel(prefetch_count=2), title="notify",
                       description=f"Turns the events people are told about into deliveries; the queue is bound to "
                                   f"{', '.join(topology.keys_of(events))}.")
    async def on_event(event: NotifyTrigger) -> None:
        with counted("notify", "event"):
            await notify.announce(deps_of(), event)

    @broker.subscriber(topology.consumed(deliveries), channel=Channel(prefetch_count=concurrency),
                       title="notify.deliveries",
                       description=f"Delivers one notification to one channel; the queue is bound to "
                                   f"{', '.join(topology.keys_of(deliveries))}.")
    async def on_deliver(command: DeliverNotification) -> None:
        with counted("notify", "deliver"):
            await notify.deliver_one(deps_of(), command)


def subscribe(broker: RabbitBroker, topology: Topology, process: str, concurrency: int, deps_of: DepsOf) -> None:
    """Subscribe the handlers of one consumer process (`control`, `stage1` ... `stage7`, `publish`, `notify`);
    each message's handler calls `deps_of` for the process's `Deps`."""
    if process not in PROCESSES:
        raise ValueError(f"unknown process {process!r}; expected one of {', '.join(PROCESSES)}")
    if process == "control":
        subscribe_control(broker, topology, concurrency, deps_of)
    elif process == "publish":
        subscribe_publish(broker, topology, concurrency, deps_of)
    elif process == "notify":
        subscribe_notify(broker, topology, concurrency, deps_of)
    else:
        subscribe_stage(broker, topology, int(process.removeprefix("stage")), concurrency, deps_of)


def consumer_context(deps: Deps, broker: RabbitBroker, topology: Topology, process: str = "control") -> ContextRepo:
    """The FastStream context of a consumer: the failure routing its failure middleware uses. For the
    pipeline's processes the last resort fails the message's run and retries are written to the run's
    log; for publishing, the publication ends failed and shows the retries; for notifications, the
    delivery ends failed, with `notify_max_attempts` tries, and never touches a run."""
    if process == "notify":
        failures = FailureRouter(deps.settings.model_copy(update={"max_attempts": deps.settings.notify_max_attempts}),
                                 topology, broker, on_exhausted=partial(notify.mark_failed, deps),
                                 on_retry=partial(notify.note_retry, deps))
    elif process == "publish":
        failures = FailureRouter(deps.settings, topology, broker, on_exhausted=partial(publish.mark_failed, deps),
                                 on_retry=partial(publish.note_retry, deps))
    else:
        failures = FailureRouter(deps.settings, topology, broker,
                                 on_exhausted=partial(run_control.fail_run_for_message, deps),
                                 on_retry=partial(run_control.log_retry, deps))
    return ContextRepo({FAILURES: failures})


async def count_consumer_slots(deps: Deps, broker: RabbitBroker, topology: Topology, stage: int, concurrency: int
                               ) -> None:
    """Keep `deps.consumer_slots` at what the consumers of the stage's batch queue hold at once: the
    broker's live consumer count (re-declaring the queue with its own arguments, one round trip)
    times this process's prefetch, on the assumption that replicas of a stage share one concurrency.
    A failed count keeps the last one: the window is a matter of speed, never of correctness."""
    queue = topology.batch_queue(stage)
    while True:
        try:
            declared = await (await broker.declare_queue(queue)).declare()
            deps.consumer_slots = (declared.consumer_count or 0) * concurrency * PREFETCH_PER_SLOT
        except Exception as error:  # a broker hiccup: the next count will do
            log.warning("stage %d: could not count the batch queue's consumers: %s", stage, error)
        await asyncio.sleep(RECOUNT_SLOTS_SECONDS)


def build_app(process: str, settings: Settings, concurrency: int | None = None) -> FastStream:
    """The FastStream app of one consumer process, built in dependency order: the broker, the relay
    over its declared publishers, the `Deps`, the subscribers that use them, then the app with its
    context. At start the topology is declared before the subscribers attach to their queues."""
    concurrency = concurrency or settings.concurrency
    topology = Topology.from_settings(settings)
    broker = make_broker(settings, registry=REGISTRY, app_name=process, graceful_timeout=30.0)
    engine = make_engine(settings, pool_size=settings.db_pool_size, pre_ping=False)
    sessions = make_sessionmaker(engine)
    relay = OutboxRelay(sessions, declare_publishers(broker, topology), settings.outbox_poll_seconds)
    deps = Deps(settings=settings, sessions=sessions, logger=AutomationLogger(settings.log_dir),
                provider=make_provider(settings), relay=relay,
                worker_id=f"{process}@{socket.gethostname()}:{os.getpid()}")
    subscribe(broker, topology, process, concurrency, lambda: deps)
    app = FastStream(broker, context=consumer_context(deps, broker, topology, process))
    ops = ops_server(settings, {"database": database_check(engine), "broker": broker_check(broker)})
    tasks: list[asyncio.Task[None]] = []
    stage = int(process.removeprefix("stage")) if process.startswith("stage") else None

    @app.on_startup
    async def declare() -> None:
        if ops is not None:  # up before the broker, so /readyz can say it is not connected yet
            await ops.start()
        await broker.connect()
        await declare_topology(broker, topology)  # the subscribers' queues are passive: they must exist

    @app.after_startup
    async def start_relay() -> None:
        tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
        if stage in BATCH_STAGES:
            tasks.append(asyncio.create_task(count_consumer_slots(deps, broker, topology, stage, concurrency),
                                             name="consumer-slots"))
        if process == "notify":
            tasks.append(asyncio.create_task(notify.check_credits_forever(deps), name="credits-sweep"))
        if process == "control":
            tasks.append(asyncio.create_task(watch_forever(deps), name="watchdog"))
            if ops is not None:  # only control (and the API) reads the pipeline state for the gauges
                tasks.append(asyncio.create_task(
                    PIPELINE_STATE.refresh_forever(sessions, settings.metrics_refresh_seconds), name="metrics"))
        log.info("%s consuming (concurrency %d)", process, concurrency)

    @app.after_shutdown
    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await relay.delete_sent()  # what no claim deleted: else re-sent once its reservation runs out
        if ops is not None:
            await ops.stop()
        await engine.dispose()

    return app
