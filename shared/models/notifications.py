"""Notification channels, the notifications a site's events make, and their deliveries."""

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
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, created_column

NOTIFICATION_CHANNEL_KINDS = ("webhook", "email", "slack")
DELIVERY_STATUSES = ("queued", "retrying", "delivered", "failed")


class NotificationChannel(Base):
    """Where an account's notifications go: a signed webhook, email addresses or a Slack incoming webhook,
    for one of its sites or (`site_id` NULL) for all of them. Secrets (the webhook's signing secrets, the
    Slack URL, which is its own credential) are stored encrypted (`shared.secrets`) and never returned."""

    __tablename__ = "notification_channels"
    __table_args__ = (
        UniqueConstraint("account_id", "name"),
        CheckConstraint("kind IN ('webhook', 'email', 'slack')", name="channel_kind_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    events: Mapped[list[Any]] = mapped_column(JSONB, default=list, doc="Notification types it takes.")
    url: Mapped[str | None] = mapped_column(String(2000),
                                            doc="A webhook's URL; for Slack, whose URL is kept encrypted, a hint.")
    url_ciphertext: Mapped[str | None] = mapped_column(Text, doc="A Slack incoming-webhook URL, encrypted.")
    emails: Mapped[list[Any]] = mapped_column(JSONB, default=list)
    secret_ciphertext: Mapped[str | None] = mapped_column(Text, doc="A webhook's signing secret, encrypted.")
    previous_secret_ciphertext: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), doc="Until then deliveries are signed with the previous secret too.")
    secret_rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())


class Notification(Base):
    """One notification (a run completed, paused ...): its body as every channel receives it, made once per
    source event (`dedupe_key`), so a redelivered event notifies nobody twice."""

    __tablename__ = "notifications"
    __table_args__ = (Index("notifications_by_account", "account_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    dedupe_key: Mapped[str] = mapped_column(String(300), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="SET NULL"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = created_column()


class NotificationDelivery(Base):
    """One notification to one channel: its attempts and the last answer (code, latency, a short excerpt)."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint("notification_id", "channel_id"),
        CheckConstraint("status IN ('queued', 'retrying', 'delivered', 'failed')", name="delivery_status_known"),
        Index("deliveries_by_channel", "channel_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id", ondelete="CASCADE"))
    channel_id: Mapped[int] = mapped_column(ForeignKey("notification_channels.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    response_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(String(500))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_column()
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resent_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), doc="When the watchdog last re-sent its message (lost while the database was away).")
