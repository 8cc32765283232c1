"""Wire schemas of the HTTP API (kept apart from the ORM models and the event contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.schedule import iana_zone_error, is_iana_zone

BatchSize = Field(None, ge=1, le=1000, description="Items per batch, 1-1000.")


TimeOfDay = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="HH:MM, 24-hour.")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
MonthDay = Annotated[int, Field(ge=1, le=31)]
Frequency = Literal["daily", "weekly", "monthly", "cron"]


class ScheduleFields(BaseModel):
    """A schedule's forms; only the fields given change (a refused request changes nothing)."""

    model_config = ConfigDict(extra="forbid")

    frequency: Frequency | None = Field(None, description="daily; weekly on `weekdays`; monthly on `month_days`; "
                                                          "or cron.")
    scheduled_times: list[TimeOfDay] | None = Field(None, min_length=1, max_length=24,
                                                    description="One or more times of day, in the site's timezone.")
    weekdays: list[Weekday] | None = Field(None, min_length=1, max_length=7, description="For weekly: mon ... sun.")
    month_days: list[MonthDay] | None = Field(None, min_length=1, max_length=31,
                                              description="For monthly: 1-31 (a month without the day skips it).")
    cron: str | None = Field(None, min_length=9, max_length=120, description="For cron: five fields (minute hour "
                             "day-of-month month day-of-week; 0 or 7 is Sunday), in the site's timezone.")
    timezone: str | None = Field(None, max_length=64, description="An IANA timezone name, e.g. Europe/Paris.")

    @field_validator("timezone")
    @classmethod
    def _iana(cls, value: str | None) -> str | None:
        if value is not None and not is_iana_zone(value):
            raise ValueError(iana_zone_error(value))
        return value


class SchedulePreview(BaseModel):
    schedule: str = Field(description="The schedule in words.")
    next_runs: list[datetime] = Field(description="The next five run times (UTC).")


class ConfigOut(BaseModel):
    site_id: int
    is_enabled: bool
    frequency: Frequency
    scheduled_time: str = Field(description="HH:MM, 24-hour, in the site's timezone (the first of scheduled_times).")
    scheduled_times: list[str]
    weekdays: list[str]
    month_days: list[int]
    cron: str | None
    schedule: str = Field(description="The schedule in words.")
    next_runs: list[datetime] = Field(description="The next five run times (UTC); empty when disabled.")
    timezone: str
    stage_1_batch_size: int
    stage_2_batch_size: int
    stage_3_batch_size: int
    stage_4_batch_size: int
    stage_5_batch_size: int
    stage_6_batch_size: int
    auto_publish: bool = Field(description="Approved content is published at once to the site's publish targets.")
    skip_review: bool = Field(description="Stage 7 approves the run's content itself and queues it for publishing.")
    last_run_at: datetime | None
    next_run_at: datetime | None


class ConfigUpdate(ScheduleFields):
    """Only the fields given change; a refused request changes nothing."""

    is_enabled: bool | None = None
    scheduled_time: TimeOfDay | None = Field(None, description="HH:MM, 24-hour: one time a day (the seed's field; "
                                                               "sets scheduled_times to this one time).")
    stage_1_batch_size: int | None = BatchSize
    stage_2_batch_size: int | None = BatchSize
    stage_3_batch_size: int | None = BatchSize
    stage_4_batch_size: int | None = BatchSize
    stage_5_batch_size: int | None = BatchSize
    stage_6_batch_size: int | None = BatchSize
    auto_publish: bool | None = Field(None, description="Publish approved content at once.")
    skip_review: bool | None = Field(None, description="Let stage 7 approve the run's content (no human review) "
                                     "and hand it to publishing. Off unless set explicitly.")


class StageOut(BaseModel):
    """One stage of the catalogue (`shared.catalogue`), as the consumers run it."""

    number: int = Field(description="Its place in the pipeline, from 1.")
    name: str = Field(description="What it turns into what, e.g. `keywords → clusters`.")
    input: str = Field(description="What its batches take, plural.")
    output: str = Field(description="What it writes, plural.")
    default_batch_size: int | None = Field(description="Items per batch by default; null: the stage has no batches.")
    ai_function: str | None = Field(description="The AI function it calls; null: none.")
    credits: int = Field(description="Credits charged per `credits_per` items in.")
    credits_per: int
    seed_query: str = Field(description="Which rows it picks up, in words.")


class Stages(BaseModel):
    stages: list[StageOut] = Field(description="Every stage, in pipeline order.")


class StageProgress(BaseModel):
    stage: int
    name: str
    status: Literal["pending", "active", "completed", "failed"]
    batches_done: int
    batches_total: int
    items_in: int
    items_out: int
    credits: int
    result: dict[str, Any] | None = None


class RunOut(BaseModel):
    run_id: str
    site_id: int
    status: Literal["running", "paused", "completed", "failed"]
    trigger: Literal["manual", "scheduled"]
    idempotency_key: str | None = Field(None, description="The key of the command that started it (run_now names it).")
    current_stage: int
    total_credits_used: int
    estimated_credits: int
    pause_reason: str | None
    error_message: str | None
    started_at: datetime
    completed_at: datetime | None


class RunDetail(RunOut):
    stages: list[StageProgress]


class CurrentRun(BaseModel):
    run: RunDetail | None = Field(description="The active run, or null when there is none.")


class History(BaseModel):
    runs: list[RunOut]


class RunAccepted(BaseModel):
    run_id: str | None = Field(description="Null if run control has not picked the command up yet.")
    status: str = Field(description="The run's status, or `queued` while run control has not picked it up.")
    idempotency_key: str = Field(description="The command's key; the run started by it carries it too.")
    detail: str | None = Field(None, description="When `queued`: what that means and where to look next.")


class Estimate(BaseModel):
    site_id: int
    per_stage: dict[int, int]
    total: int
    buffer: float = Field(description="Safety margin on top of the estimate (0.2 = 20%).")
    required: int
    balance: int
    can_start: bool
    reason: str | None = None


class LogLines(BaseModel):
    run_id: str
    stage: int | None
    lines: list[str]


class Credits(BaseModel):
    account_id: int
    credits_balance: int


class Unauthorized(BaseModel):
    detail: Literal["missing X-API-Key header", "invalid API key"]


class Refusal(BaseModel):
    detail: str
    active_run_id: str | None = None
    estimate: int | None = None
    buffer: float | None = None
    required: int | None = None
    balance: int | None = None
    counts: dict[str, int] | None = Field(None, description="With 'nothing to process': what each stage would take.")
