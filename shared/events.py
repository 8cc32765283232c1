"""The event contract: every message on the broker is one of these models.

Commands are named as orders (`StartRun`), events as facts (`StageCompleted`). Each
carries `event_id`, `type`, `version` and `occurred_at`; `type` is also the routing key
pattern, so a consumer can tell a message it does not know from one it does.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# Ranges and alphabets of the ids a message may carry. A value outside them would reach
# PostgreSQL and fail there (an integer out of range, a NUL byte), which used to look like a
# database outage and be retried; checked here, such a message is poison from the start.
RUN_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


RunId = Annotated[str, Field(pattern=RUN_ID_PATTERN, description="The run's id.")]
SiteId = Annotated[int, Field(gt=0, le=INT4_MAX, description="The site's id.")]
Text = Annotated[str, AfterValidator(_no_nul)]


def _now() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """Fields every message has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4, description="Unique id of this message.")
    version: Literal[1] = Field(1, description="Schema version of the message.")
    occurred_at: datetime = Field(default_factory=_now, description="When the message was created (UTC).")

    def routing_key(self) -> str:
        """The topic routing key this message is published with."""
        return str(getattr(self, "type"))  # noqa: B009 - declared by each concrete message, not the base


# --- commands -------------------------------------------------------------------------


class StartRun(Message):
    """Ask run control to start an automation run for a site."""

    type: Literal["run.start"] = "run.start"
    site_id: SiteId
    trigger: Literal["manual", "scheduled"] = Field("manual", description="Who asked.")
    requested_by: Text = Field("main-app", max_length=200, description="User or process that asked.")
    idempotency_key: Text | None = Field(
        None, max_length=200, description="One run at most is started per (site, key)."
    )


class PauseRun(Message):
    """Ask run control to pause a run: no new batch is claimed until it is resumed."""

    type: Literal["run.pause"] = "run.pause"
    run_id: RunId
    reason: Text = Field("paused by user", max_length=500)


class ResumeRun(Message):
    """Ask run control to resume a paused (or failed) run where it stopped."""

    type: Literal["run.resume"] = "run.resume"
    run_id: RunId


class RequestStage(Message):
    """Ask stage N to plan (or re-emit the pending batches of) its work for a run."""

    type: Literal["stage.1.requested", "stage.2.requested", "stage.3.requested", "stage.4.requested",
                  "stage.5.requested", "stage.6.requested", "stage.7.requested"]
    run_id: RunId

    @property
    def stage(self) -> int:
        return int(self.type.split(".")[1])

    @classmethod
    def for_stage(cls, run_id: str, stage: int) -> RequestStage:
        return cls(type=f"stage.{stage}.requested", run_id=run_id)


class ProcessBatch(Message):
    """Ask any replica of stage N to process one planned batch."""

    type: Literal["stage.1.batch", "stage.2.batch", "stage.3.batch", "stage.4.batch",
                  "stage.5.batch", "stage.6.batch"]
    run_id: RunId
    batch_id: int = Field(gt=0, le=INT8_MAX)

    @property
    def stage(self) -> int:
        return int(self.type.split(".")[1])

    @classmethod
    def for_stage(cls, run_id: str, stage: int, batch_id: int) -> ProcessBatch:
        return cls(type=cls.type_for(stage), run_id=run_id, batch_id=batch_id)

    @staticmethod
    def type_for(stage: int) -> str:
        """The `type` (and routing key) of a stage's batch messages; the finish statement writes it in SQL."""
        return f"stage.{stage}.batch"


# --- events ---------------------------------------------------------------------------


class StageCompleted(Message):
    """Stage N finished all its batches for a run; it triggers stage N+1."""

    type: Literal["stage.1.completed", "stage.2.completed", "stage.3.completed", "stage.4.completed",
                  "stage.5.completed", "stage.6.completed", "stage.7.completed"]
    run_id: RunId
    result: dict[str, Any] = Field(default_factory=dict, description="The stage's result, as stored.")

    @property
    def stage(self) -> int:
        return int(self.type.split(".")[1])

    @classmethod
    def for_stage(cls, run_id: str, stage: int, result: dict[str, Any]) -> StageCompleted:
        return cls(type=f"stage.{stage}.completed", run_id=run_id, result=result)


class RunRejected(Message):
    """A `run.start` was refused; `reason` says why."""

    type: Literal["run.rejected"] = "run.rejected"
    site_id: int
    reason: str
    idempotency_key: str | None = None
    active_run_id: str | None = None
    estimate: int | None = None
    required: int | None = None
    balance: int | None = None
    counts: dict[str, int] | None = Field(None, description="With 'nothing to process': what each stage would take.")


class RunStateChanged(Message):
    """A run was started, paused, resumed, completed or failed."""

    type: Literal["run.started", "run.paused", "run.resumed", "run.completed", "run.failed"]
    run_id: str
    site_id: int
    status: str
    reason: str | None = None


class PublishContent(Message):
    """Ask the publish consumer to put one article on one target (create its post, or update it)."""

    type: Literal["content.publish"] = "content.publish"
    publication_id: int = Field(gt=0, le=INT8_MAX, description="The publication (article x target) to publish.")
    content_id: int = Field(gt=0, le=INT4_MAX)
    revision: int = Field(ge=1, le=INT4_MAX, description="The content revision to publish (a later one wins).")


class PublicationChanged(Message):
    """An article was published (or updated) on a target, or publishing it failed for good."""

    type: Literal["content.published", "content.publish_failed"]
    publication_id: int
    content_id: int
    site_id: int
    target_id: int
    remote_id: int | None = None
    remote_url: str | None = None
    error: str | None = None


class DeliverNotification(Message):
    """Ask the notify consumer to deliver one notification to one channel (one message per pair, so a slow
    or failing receiver holds up no other)."""

    type: Literal["notify.deliver"] = "notify.deliver"
    delivery_id: int = Field(gt=0, le=INT8_MAX, description="The delivery (notification x channel) to make.")
    channel_id: int = Field(gt=0, le=INT4_MAX)
    notification_event_id: uuid.UUID = Field(description="The notification's `event_id` (receivers dedupe on it).")


def planned_stage(trigger: RequestStage | StageCompleted) -> int:
    """The stage a plan trigger asks for: N+1 after `stage.N.completed`, N for `stage.N.requested`."""
    return trigger.stage + 1 if isinstance(trigger, StageCompleted) else trigger.stage


NotifyTrigger = Annotated[RunStateChanged | StageCompleted | PublicationChanged | RunRejected,
                         Field(discriminator="type")]
ControlCommand = Annotated[StartRun | PauseRun | ResumeRun, Field(discriminator="type")]
StagePlanTrigger = Annotated[RequestStage | StageCompleted, Field(discriminator="type")]
