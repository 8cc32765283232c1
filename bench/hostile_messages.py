"""The hostile bench's messages: malformed bodies on real routing keys, and forged stage commands.

Messages that need a run name the healthy run under attack, so a consumer that lets a bad
message reach the run (fail it, advance it) shows up in its totals. Every routing key used is
one some consumer queue is bound to, so each message reaches a consumer.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.catalogue import LAST_STAGE, STAGE_NUMBERS
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

DEEP = 100_000  # nesting far beyond Python's recursion limit
ONE_MB = 1024 * 1024


@dataclass(frozen=True)
class Hostile:
    kind: str
    routing_key: str
    body: bytes
    message_id: str


def valid_payload(routing_key: str, run_id: str, site_id: int) -> dict[str, Any]:
    """A schema-valid message for `routing_key` (the base the malformed ones damage): a stage command or
    fact, a control command, or what the publish and notify consumers read."""
    if routing_key.startswith("stage."):
        _, number, verb = routing_key.split(".")
        stage = int(number)
        if verb == "requested":
            return RequestStage.for_stage(run_id, stage).model_dump(mode="json")
        if verb == "completed":
            return StageCompleted.for_stage(run_id, stage, {}).model_dump(mode="json")
        return ProcessBatch.for_stage(run_id, stage, 1).model_dump(mode="json")
    messages: dict[str, Message] = {
        "run.start": StartRun(site_id=site_id), "run.pause": PauseRun(run_id=run_id),
        "run.resume": ResumeRun(run_id=run_id),
        "run.rejected": RunRejected(site_id=site_id, reason="hostile bench"),
        "content.publish": PublishContent(publication_id=1, content_id=1, revision=1),
        "content.publish_failed": PublicationChanged(type="content.publish_failed", publication_id=1, content_id=1,
                                                     site_id=site_id, target_id=1, error="hostile bench"),
        "notify.deliver": DeliverNotification(delivery_id=1, channel_id=1, notification_event_id=uuid.uuid4()),
    }
    for state in ("completed", "failed", "paused"):
        messages[f"run.{state}"] = RunStateChanged(type=f"run.{state}", run_id=run_id, site_id=site_id,
                                                   status=state)
    return messages[routing_key].model_dump(mode="json")


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def malformed_kinds(run_id: str, site_id: int) -> dict[str, tuple[str, Any]]:
    """kind -> (which routing keys it goes to, body builder taking the routing key)."""
    return {
        "bad JSON": ("any", lambda key: b'{"type": "' + key.encode() + b'", "run_id": '),
        "wrong schema": ("any", lambda key: _json({"type": key, "run_id": ["not", "a", "string"], "batch_id": -5,
                                                   "site_id": "ten", "event_id": "not-a-uuid"})),
        "unknown type": ("any", lambda key: _json({**valid_payload(key, run_id, site_id), "type": "stage.9.exploded"})),
        "NUL in run_id": ("run_id", lambda key: _json({**valid_payload(key, run_id, site_id),
                                                       "run_id": f"{run_id}\u0000; DROP TABLE sites"})),
        "batch_id 2**63": ("batch", lambda key: _json({**valid_payload(key, run_id, site_id), "batch_id": 2**63})),
        "site_id 10**12": ("start", lambda key: _json({**valid_payload(key, run_id, site_id), "site_id": 10**12})),
        "deep nesting": ("any", lambda key: b'{"type": "' + key.encode() + b'", "nested": '
                         + b"[" * DEEP + b"]" * DEEP + b"}"),
        "1 MB body": ("any", lambda key: _json({**valid_payload(key, run_id, site_id), "padding": "x" * ONE_MB})),
    }


def routing_keys(topology: Topology) -> dict[str, list[str]]:
    """The bound routing keys, by what a malformed kind needs of them."""
    keys = list(dict.fromkeys(key for _, key in topology.bindings()))
    return {"any": keys, "run_id": [k for k in keys if k != "run.start"],
            "batch": [k for k in keys if k.endswith(".batch")], "start": ["run.start"]}


def malformed(topology: Topology, count: int, run_id: str, site_id: int) -> Iterator[Hostile]:
    """`count` malformed messages, the kinds in turn, each kind cycling through its routing keys."""
    kinds = malformed_kinds(run_id, site_id)
    keys = routing_keys(topology)
    cycles = {kind: itertools.cycle(keys[where]) for kind, (where, _) in kinds.items()}
    names = itertools.cycle(kinds)
    for index in range(count):
        kind = next(names)
        key = next(cycles[kind])
        yield Hostile(kind, key, kinds[kind][1](key), f"hostile-{index}-{kind.replace(' ', '-')}")


def forged_stage_commands(run_id: str, current_stage: int) -> tuple[list[Hostile], list[Hostile]]:
    """(forged, stale) stage commands for a run working on `current_stage`.

    Forged: what the pipeline can never have sent at this point: requests for later stages, and
    `stage.N.completed` for the current and later stages (`stage.7.completed` is left out: no
    queue is bound to it). Stale: requests and completions of stages already completed, which
    an outbox re-send can legitimately repeat; the run must ignore them too, dead-lettered or not.
    `stage.<current>.requested` is neither: a resume sends exactly that.
    """
    forged: list[Any] = []
    stale: list[Any] = []
    for stage in STAGE_NUMBERS:
        if stage != current_stage:  # a request for the current stage is what a resume sends
            request = RequestStage.for_stage(run_id, stage)
            (forged if stage > current_stage else stale).append(request)
        if stage < LAST_STAGE:
            completion = StageCompleted.for_stage(run_id, stage, {"items_in": 0, "items_out": 0})
            (forged if stage >= current_stage else stale).append(completion)
    as_hostile = [[Hostile("forged" if group is forged else "stale", m.routing_key(),
                           m.model_dump_json().encode(), str(m.event_id)) for m in group]
                  for group in (forged, stale)]
    return as_hostile[0], as_hostile[1]
