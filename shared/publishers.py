"""Declared publishers: one for every routing key the system emits, documented with its schema.

Declared on a broker (`declare_publishers`), they put every outgoing message into the AsyncAPI
document (`automation.contract`) beside the subscribers, and they are the one way messages leave a
process: the outbox relay, the client library and the scheduler send through them. A message is
persistent JSON with its event id as the message id; a send returns once the broker confirmed it.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass

from faststream.rabbit import RabbitBroker
from faststream.rabbit.publisher import RabbitPublisher

from shared.catalogue import BY_NUMBER, LAST_STAGE
from shared.events import (
    DeliverNotification,
    Message,
    PauseRun,
    ProcessBatch,
    PublicationChanged,
    PublishContent,
    RequestStage,
    ResumeRun,
    RunRejected,
    RunStateChanged,
    StageCompleted,
    StartRun,
)
from shared.topology import Topology

# Every message type of the contract; `tests/unit/test_asyncapi.py` checks none of `shared.events` is missing.
EMITTED: tuple[type[Message], ...] = (StartRun, PauseRun, ResumeRun, RequestStage, ProcessBatch, StageCompleted,
                                      RunRejected, RunStateChanged, PublishContent, PublicationChanged,
                                      DeliverNotification)

COMMANDS = {
    "run.start": "Start a run for a site. Published by the main app (client library, API) and the scheduler.",
    "run.pause": "Pause a run: no new batch is claimed until it is resumed. Published by the main app.",
    "run.resume": "Resume a paused or failed run where it stopped. Published by the main app.",
}


def routing_keys(model: type[Message]) -> tuple[str, ...]:
    """The routing keys `model` is published with: the values its `type` can take."""
    return typing.get_args(model.model_fields["type"].annotation)


def describe(key: str) -> str:
    """What the message published with `key` says, who publishes it and who takes it."""
    if key in COMMANDS:
        return f"{COMMANDS[key]} Run control takes it."
    if key == "run.rejected":
        return ("Run control refused a run.start; `reason` says why. For the main app; the notify consumer "
                "takes it (credits low).")
    if key == "notify.deliver":
        return ("Deliver one notification to one channel (webhook, email, Slack). Published by the notify "
                "consumer (one per notification and channel) and the API (redeliver); taken by any replica of the "
                "notify consumer.")
    if key == "content.publish":
        return ("Publish one approved article on one of its site's targets (create its post, or update the one it "
                "has). Published by the API (review actions, auto-publish) and stage 7 (skip review); taken by any "
                "replica of the publish consumer.")
    if key.startswith("content."):
        outcome = "was published or updated" if key == "content.published" else "could not be published (for good)"
        taker = "the notify consumer takes it" if key == "content.publish_failed" else "no consumer here"
        return f"An article {outcome} on a target. Published by the publish consumer. For the main app; {taker}."
    if key.startswith("run."):
        taker = ("the notify consumer takes it" if key in ("run.paused", "run.completed", "run.failed")
                 else "no consumer here")
        return (f"A run {key.removeprefix('run.')}. Published by whoever changed the run's state (run control, "
                f"stage 7, a batch out of credits, the watchdog). For the main app; {taker}.")
    _, number, kind = key.split(".")
    stage = BY_NUMBER[int(number)]
    label = f"stage {stage.number} ({stage.name})"
    if kind == "requested":
        return (f"Asks {label} to plan its work for a run, or to re-emit its pending batches. Published by run "
                f"control on start and resume and by the watchdog for a stalled run; taken by stage {stage.number}.")
    if kind == "batch":
        return (f"One planned batch of {label}. Published by stage {stage.number} when it plans or its batch window "
                f"moves on, and by the watchdog when a claim expired; taken by any replica of stage {stage.number}.")
    then = ("the run is complete (the notify consumer announces the content ready for review)"
            if stage.number == LAST_STAGE else f"it triggers stage {stage.number + 1}")
    return f"{label.capitalize()} finished all its batches for a run, with its result; {then}."


@dataclass(frozen=True)
class Publishers:
    """The declared publishers of one broker, by routing key."""

    broker: RabbitBroker
    topology: Topology
    by_key: Mapping[str, RabbitPublisher]

    async def send(self, routing_key: str, payload: Mapping[str, object]) -> None:
        """Publish one message (a contract model dumped to JSON) and wait for the broker's confirm."""
        message_id = str(payload.get("event_id") or "") or None
        publisher = self.by_key.get(routing_key)
        if publisher is not None:
            await publisher.publish(dict(payload), message_id=message_id)
            return
        # A key this process does not know: a newer process's event, relayed from the shared outbox
        # during a rolling upgrade. Refusing it would stop this process's relay at that row for good.
        await self.broker.publish(dict(payload), exchange=self.topology.exchange, routing_key=routing_key,
                                  persist=True, content_type="application/json", message_id=message_id)


def declare_publishers(broker: RabbitBroker, topology: Topology) -> Publishers:
    """Declare on `broker` a publisher for every routing key of the contract, on the topic exchange."""
    by_key = {
        key: broker.publisher(routing_key=key, exchange=topology.exchange, persist=True,
                              content_type="application/json", schema=model, title=key, description=describe(key))
        for model in EMITTED for key in routing_keys(model)
    }
    return Publishers(broker, topology, by_key)
