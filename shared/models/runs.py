"""Run bookkeeping: runs, their stages and batches, the credit ledger, the outbox, the run log,
refused starts and schedule slots."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, created_column


class AutomationRun(Base):
    __tablename__ = "automation_runs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'paused', 'completed', 'failed')", name="status_known"),
        CheckConstraint("trigger IN ('manual', 'scheduled')", name="trigger_known"),
        CheckConstraint("current_stage BETWEEN 1 AND 7", name="current_stage_range"),
        # The per-site lock: at most one running-or-paused run per site.
        Index(
            "one_active_run_per_site",
            "site_id",
            unique=True,
            postgresql_where=text("status IN ('running', 'paused')"),
        ),
        Index(
            "one_run_per_idempotency_key",
            "site_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        Index("runs_by_site_newest", "site_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[str] = mapped_column(String(64), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="running")
    pause_reason: Mapped[str | None] = mapped_column(Text)
    current_stage: Mapped[int] = mapped_column(Integer, default=1)
    stage_1_result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    stage_2_result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    stage_3_result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    stage_4_result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    stage_5_result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    stage_6_result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    stage_7_result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    total_credits_used: Mapped[int] = mapped_column(Integer, default=0)
    estimated_credits: Mapped[int] = mapped_column(Integer, default=0)
    trigger: Mapped[str] = mapped_column(String(16), default="manual")
    requested_by: Mapped[str | None] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    error_message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = created_column()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_progress_at: Mapped[datetime] = created_column()
    watchdog_nudged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def stage_result(self, stage: int) -> dict[str, Any] | None:
        value = getattr(self, f"stage_{stage}_result")
        return dict(value) if value is not None else None


class RunStage(Base):
    """Per run and stage: the plan's size and the running totals the dashboard shows."""

    __tablename__ = "run_stages"
    __table_args__ = (CheckConstraint("status IN ('planned', 'completed')", name="run_stage_status_known"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("automation_runs.id", ondelete="CASCADE"), primary_key=True)
    stage: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="planned")
    batches_total: Mapped[int] = mapped_column(Integer, default=0)
    batches_done: Mapped[int] = mapped_column(Integer, default=0)
    items_in: Mapped[int] = mapped_column(Integer, default=0)
    items_out: Mapped[int] = mapped_column(Integer, default=0)
    credits: Mapped[int] = mapped_column(Integer, default=0)
    ai_calls: Mapped[int] = mapped_column(Integer, default=0)
    streamed: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(),
        doc="Fed by the stage before it as its batches finish; completes once that stage has and its own batches "
            "are done (`consumers.streaming`).")
    batch_size: Mapped[int | None] = mapped_column(Integer, doc="The size of the batches appended to a streamed stage.")
    started_at: Mapped[datetime] = created_column()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StageBatch(Base):
    """One unit of work and of idempotency: claimed once, finished once."""

    __tablename__ = "stage_batches"
    __table_args__ = (
        UniqueConstraint("run_id", "stage", "seq"),
        CheckConstraint("status IN ('pending', 'claimed', 'done')", name="batch_status_known"),
        Index("batches_open", "run_id", "stage", postgresql_where=text("status <> 'done'")),
        Index("batches_unemitted", "run_id", "stage", "seq", postgresql_where=text("emitted_at IS NULL")),
        # out and not done: what a finish counts against the run's window (consumers.planning.REFILL)
        Index("batches_in_flight", "run_id", "stage",
              postgresql_where=text("emitted_at IS NOT NULL AND status <> 'done'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("automation_runs.id", ondelete="CASCADE"))
    stage: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    item_ids: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claim_token: Mapped[str | None] = mapped_column(String(64))
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    emitted_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), doc="When its message was queued; NULL while it waits outside the run's window.")
    items_out: Mapped[int] = mapped_column(Integer, default=0)
    credits: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_column()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CreditLedger(Base):
    """Every credit movement: a charge per batch (negative) or a grant (positive)."""

    __tablename__ = "credit_ledger"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("automation_runs.id", ondelete="SET NULL"), index=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("stage_batches.id", ondelete="SET NULL"), unique=True)
    stage: Mapped[int | None] = mapped_column(Integer)
    delta: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_column()


class OutboxMessage(Base):
    """An event written in the same transaction as the change it announces."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    routing_key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = created_column()
    # the relay's sweep leaves the row alone until then: a batch finish reserves the rows it writes for
    # its own process to send right after its commit (`shared.outbox`)
    available_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                   nullable=False)


class RunLogLine(Base):
    """The run's log lines, also kept in the database so any API replica can serve them."""

    __tablename__ = "run_log_lines"
    __table_args__ = (Index("log_lines_by_run", "run_id", "stage", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("automation_runs.id", ondelete="CASCADE"))
    stage: Mapped[int] = mapped_column(Integer, default=0)  # 0: the run's main log
    level: Mapped[str] = mapped_column(String(16), default="INFO")
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = created_column()


class RunRejection(Base):
    """A refused `run.start`, kept so callers (the API) can learn why by idempotency key."""

    __tablename__ = "run_rejections"
    __table_args__ = (Index("rejections_by_key", "site_id", "idempotency_key"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    site_id: Mapped[int] = mapped_column(Integer)  # no foreign key: an unknown site is a reason too
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = created_column()


class ScheduleSlot(Base):
    """One scheduled slot of a site, claimed by the scheduler replica that handles it (fired or skipped).

    The slot is named by its local wall-clock time, so the repeated hour of a daylight-saving
    change is one slot, not two.
    """

    __tablename__ = "schedule_slots"
    __table_args__ = (
        UniqueConstraint("site_id", "slot"),
        CheckConstraint("action IN ('fired', 'skipped')", name="slot_action_known"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"))
    slot: Mapped[str] = mapped_column(String(40))  # e.g. "2026-11-01T01:30 America/New_York"
    slot_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    scheduler: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_column()
