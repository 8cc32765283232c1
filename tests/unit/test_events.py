"""The event contract: what is accepted, what is refused, and the routing keys."""

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.events import ControlCommand, ProcessBatch, RequestStage, StageCompleted, StagePlanTrigger, StartRun

control = TypeAdapter(ControlCommand)
plan = TypeAdapter(StagePlanTrigger)


def test_commands_round_trip_through_json():
    start = StartRun(site_id=3, trigger="scheduled", idempotency_key="3@2026-11-28T02:00")
    again = control.validate_json(start.model_dump_json())
    assert again == start and again.routing_key() == "run.start"


@pytest.mark.parametrize("payload", [
    {"type": "run.start", "site_id": "abc"},
    {"type": "run.start", "site_id": 0},
    {"type": "run.start", "site_id": 1, "trigger": "cron"},
    {"type": "run.explode", "site_id": 1},
    {"type": "run.pause"},
    {"type": "run.start", "site_id": 1, "surprise": True},
])
def test_malformed_commands_are_refused(payload):
    with pytest.raises(ValidationError):
        control.validate_python(payload)


def test_stage_messages_know_their_stage():
    assert ProcessBatch.for_stage("r", 4, 9).routing_key() == "stage.4.batch"
    assert plan.validate_python(StageCompleted.for_stage("r", 3, {}).model_dump()).stage == 3
    assert plan.validate_python(RequestStage.for_stage("r", 7).model_dump()).stage == 7
    with pytest.raises(ValidationError):
        ProcessBatch(type="stage.7.batch", run_id="r", batch_id=1)  # stage 7 has no batches
