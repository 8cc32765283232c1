"""What a run makes: keywords, clusters, ideas, tasks, articles (with their edit history) and images."""

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

from shared.models.base import CONTENT_STATUSES, Base, created_column


class Keyword(Base):
    __tablename__ = "keywords"
    __table_args__ = (
        UniqueConstraint("site_id", "keyword"),
        CheckConstraint("status IN ('new', 'clustered')", name="keyword_status_known"),
        Index("keywords_eligible", "site_id", postgresql_where=text(
            "status = 'new' AND cluster_id IS NULL AND disabled = false")),
        # trigram index for stage 2's word matching of earlier keywords (consumers/relevance.py), migration 0014
        Index("keywords_site_keyword_trgm", "site_id", "keyword", postgresql_using="gin",
              postgresql_ops={"keyword": "gin_trgm_ops"}, postgresql_with={"fastupdate": "off"}),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    keyword: Mapped[str] = mapped_column(String(300))
    volume: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="new")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    cluster_id: Mapped[int | None] = mapped_column(ForeignKey("clusters.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = created_column()


class Cluster(Base):
    __tablename__ = "clusters"
    __table_args__ = (
        UniqueConstraint("site_id", "name"),
        CheckConstraint("status IN ('new', 'mapped', 'reopened')", name="cluster_status_known"),
        # trigram index for stage 1's word matching (consumers/relevance.py), migration 0005
        Index("clusters_name_trgm", "name", postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"},
              postgresql_with={"fastupdate": "off"}),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="new")
    created_at: Mapped[datetime] = created_column()


class ContentIdea(Base):
    __tablename__ = "content_ideas"
    __table_args__ = (
        UniqueConstraint("site_id", "title"),
        CheckConstraint("status IN ('new', 'queued')", name="idea_status_known"),
        # trigram index for stage 2's word matching (consumers/relevance.py), migration 0005
        Index("ideas_title_trgm", "title", postgresql_using="gin", postgresql_ops={"title": "gin_trgm_ops"},
              postgresql_with={"fastupdate": "off"}),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(32))
    target_keywords: Mapped[list[Any]] = mapped_column(JSONB, default=list)
    primary_keyword: Mapped[str | None] = mapped_column(String(300))  # the one intent it targets
    outline: Mapped[list[Any]] = mapped_column(JSONB, default=list)
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="new")
    created_at: Mapped[datetime] = created_column()


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (CheckConstraint("status IN ('queued', 'completed')", name="task_status_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    idea_id: Mapped[int] = mapped_column(ForeignKey("content_ideas.id", ondelete="CASCADE"), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    created_at: Mapped[datetime] = created_column()


class Content(Base):
    __tablename__ = "content"
    __table_args__ = (
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in CONTENT_STATUSES)})", name="content_status_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    meta_title: Mapped[str] = mapped_column(String(60))
    meta_description: Mapped[str] = mapped_column(String(160))
    slug: Mapped[str] = mapped_column(String(300))
    html: Mapped[str] = mapped_column(Text)
    markdown: Mapped[str] = mapped_column(Text)
    sections: Mapped[list[Any]] = mapped_column(JSONB, default=list)
    word_count: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1",
                                          doc="Goes up with every edit; a publication records the one it sent.")
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    reviewed_by: Mapped[str | None] = mapped_column(String(200))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())


class ContentChange(Base):
    """One review action on an article (approve, reject, edit, publish and its outcome): who, when, what."""

    __tablename__ = "content_changes"
    __table_args__ = (Index("changes_by_content", "content_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    content_id: Mapped[int] = mapped_column(ForeignKey("content.id", ondelete="CASCADE"))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    changes: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = created_column()


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("content_id", "position"),
        CheckConstraint("status IN ('pending', 'generated')", name="image_status_known"),
        CheckConstraint("kind IN ('featured', 'in_article')", name="image_kind_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    content_id: Mapped[int] = mapped_column(ForeignKey("content.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(Integer)
    prompt: Mapped[str] = mapped_column(Text)
    section: Mapped[str | None] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    image_url: Mapped[str | None] = mapped_column(String(500))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = created_column()
