"""Where approved articles go (WordPress targets) and what was published there."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
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


class PublishTarget(Base):
    """Where a site's articles are published: a WordPress site reached with an application password,
    which is stored encrypted (`shared.secrets`) and never returned."""

    __tablename__ = "publish_targets"
    __table_args__ = (
        UniqueConstraint("site_id", "name"),
        CheckConstraint("kind IN ('wordpress')", name="target_kind_known"),
        CheckConstraint("post_status IN ('draft', 'publish', 'future')", name="target_post_status_known"),
        CheckConstraint("schedule_spacing_minutes BETWEEN 1 AND 43200", name="target_spacing_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="wordpress")
    kind: Mapped[str] = mapped_column(String(16), default="wordpress")
    base_url: Mapped[str] = mapped_column(String(500))
    username: Mapped[str] = mapped_column(String(200))
    secret_ciphertext: Mapped[str] = mapped_column(Text)
    post_status: Mapped[str] = mapped_column(String(16), default="draft")
    schedule_spacing_minutes: Mapped[int] = mapped_column(Integer, default=1440, server_default="1440")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())


class Publication(Base):
    """One article on one target: the remote post it became, so every later publish updates that post."""

    __tablename__ = "publications"
    __table_args__ = (
        UniqueConstraint("content_id", "target_id"),
        CheckConstraint("status IN ('queued', 'published', 'failed')", name="publication_status_known"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    content_id: Mapped[int] = mapped_column(ForeignKey("content.id", ondelete="CASCADE"), index=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("publish_targets.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    revision: Mapped[int] = mapped_column(Integer, doc="The content revision asked for.")
    published_revision: Mapped[int | None] = mapped_column(Integer)
    remote_id: Mapped[int | None] = mapped_column(BigInteger)
    remote_url: Mapped[str | None] = mapped_column(String(1000))
    media: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict,
                                                  doc="Image id -> [remote media id, URL], uploaded once each.")
    scheduled_for: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    create_started_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), doc="Set before the remote post is created: a crash before its id is stored "
        "leaves this, and the next attempt looks the post up instead of creating a second one.")
    requested_by: Mapped[str | None] = mapped_column(String(200))
    requested_at: Mapped[datetime] = created_column()
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
