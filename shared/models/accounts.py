"""Accounts, their sites, a site's automation settings and API keys."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Time,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.catalogue import DEFAULT_BATCH_SIZES
from shared.models.base import Base, created_column


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("credits_balance >= 0", name="credits_balance_not_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    credits_balance: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = created_column()


class Site(Base):
    __tablename__ = "sites"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[datetime] = created_column()


class AutomationConfig(Base):
    __tablename__ = "automation_configs"
    __table_args__ = (
        CheckConstraint("frequency IN ('daily', 'weekly', 'monthly', 'cron')", name="frequency_known"),
        *(
            CheckConstraint(f"stage_{n}_batch_size BETWEEN 1 AND 1000", name=f"stage_{n}_batch_size_range")
            for n in DEFAULT_BATCH_SIZES
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), unique=True)
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    frequency: Mapped[str] = mapped_column(String(16), default="daily")
    scheduled_time: Mapped[time] = mapped_column(Time, default=time(2, 0))
    scheduled_times: Mapped[list[Any]] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"),
                                                       doc='Several times a day ("HH:MM"); empty: scheduled_time.')
    weekdays: Mapped[list[Any]] = mapped_column(JSONB, default=lambda: ["mon"],
                                                server_default=text("'[\"mon\"]'::jsonb"))
    month_days: Mapped[list[Any]] = mapped_column(JSONB, default=lambda: [1], server_default=text("'[1]'::jsonb"))
    cron: Mapped[str | None] = mapped_column(String(120), doc="Five-field cron, in the site's timezone.")
    stage_1_batch_size: Mapped[int] = mapped_column(Integer, default=DEFAULT_BATCH_SIZES[1])
    stage_2_batch_size: Mapped[int] = mapped_column(Integer, default=DEFAULT_BATCH_SIZES[2])
    stage_3_batch_size: Mapped[int] = mapped_column(Integer, default=DEFAULT_BATCH_SIZES[3])
    stage_4_batch_size: Mapped[int] = mapped_column(Integer, default=DEFAULT_BATCH_SIZES[4])
    stage_5_batch_size: Mapped[int] = mapped_column(Integer, default=DEFAULT_BATCH_SIZES[5])
    stage_6_batch_size: Mapped[int] = mapped_column(Integer, default=DEFAULT_BATCH_SIZES[6])
    auto_publish: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"),
                                               doc="Approved content is published at once to the site's targets.")
    skip_review: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"),
                                              doc="Stage 7 approves content itself (and, with auto_publish, "
                                                  "publishes it) instead of leaving it in review.")
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # when enable/frequency/time/timezone last changed: slots before it are never "missed"
    schedule_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    def batch_size(self, stage: int) -> int:
        return int(getattr(self, f"stage_{stage}_batch_size"))


class ApiKey(Base):
    """An account's API key; only its SHA-256 is stored, the key itself is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="default")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = created_column()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
