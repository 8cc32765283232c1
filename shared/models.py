"""SQLAlchemy models: the seed's content objects, the run bookkeeping and the outbox.

Constraints here are what makes duplicate outputs impossible even under races: a keyword
has one cluster column, a task one content (unique), an image one slot per content
position (unique), a batch one ledger row (unique), a site one active run (partial unique).
"""

from __future__ import annotations

from datetime import datetime, time
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
    Time,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.catalogue import DEFAULT_BATCH_SIZES

ACTIVE_RUN_STATUSES = ("running", "paused")
# review -> approved -> published, or rejected; publish_failed until a publish succeeds.
CONTENT_STATUSES = ("draft", "review", "approved", "rejected", "published", "publish_failed")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB, list[Any]: JSONB}


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("credits_balance >= 0", name="credits_balance_not_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    credits_balance: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = _created()


class Site(Base):
    __tablename__ = "sites"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[datetime] = _created()


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
    started_at: Mapped[datetime] = _created()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_progress_at: Mapped[datetime] = _created()
    watchdog_nudged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def stage_result(self, stage: int) -> dict[str, Any] | None:
        value = getattr(self, f"stage_{stage}_result")
        return dict(value) if value is not None else None


class Keyword(Base):
    __tablename__ = "keywords"
    __table_args__ = (
        UniqueConstraint("site_id", "keyword"),
        CheckConstraint("status IN ('new', 'clustered')", name="keyword_status_known"),
        Index("keywords_eligible", "site_id", postgresql_where=text(
            "status = 'new' AND cluster_id IS NULL AND disabled = false")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    keyword: Mapped[str] = mapped_column(String(300))
    volume: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="new")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    cluster_id: Mapped[int | None] = mapped_column(ForeignKey("clusters.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = _created()


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
    created_at: Mapped[datetime] = _created()


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
    created_at: Mapped[datetime] = _created()


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (CheckConstraint("status IN ('queued', 'completed')", name="task_status_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    idea_id: Mapped[int] = mapped_column(ForeignKey("content_ideas.id", ondelete="CASCADE"), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    created_at: Mapped[datetime] = _created()


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
    created_at: Mapped[datetime] = _created()
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
    created_at: Mapped[datetime] = _created()


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
    created_at: Mapped[datetime] = _created()
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
    requested_at: Mapped[datetime] = _created()
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


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
    created_at: Mapped[datetime] = _created()


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
    created_at: Mapped[datetime] = _created()


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
    started_at: Mapped[datetime] = _created()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StageBatch(Base):
    """One unit of work and of idempotency: claimed once, finished once."""

    __tablename__ = "stage_batches"
    __table_args__ = (
        UniqueConstraint("run_id", "stage", "seq"),
        CheckConstraint("status IN ('pending', 'claimed', 'done')", name="batch_status_known"),
        Index("batches_open", "run_id", "stage", postgresql_where=text("status <> 'done'")),
        Index("batches_unemitted", "run_id", "stage", "seq", postgresql_where=text("emitted_at IS NULL")),
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
    created_at: Mapped[datetime] = _created()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OutboxMessage(Base):
    """An event written in the same transaction as the change it announces."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    routing_key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created()


class RunLogLine(Base):
    """The run's log lines, also kept in the database so any API replica can serve them."""

    __tablename__ = "run_log_lines"
    __table_args__ = (Index("log_lines_by_run", "run_id", "stage", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("automation_runs.id", ondelete="CASCADE"))
    stage: Mapped[int] = mapped_column(Integer, default=0)  # 0: the run's main log
    level: Mapped[str] = mapped_column(String(16), default="INFO")
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


class ApiKey(Base):
    """An account's API key; only its SHA-256 is stored, the key itself is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="default")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = _created()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RunRejection(Base):
    """A refused `run.start`, kept so callers (the API) can learn why by idempotency key."""

    __tablename__ = "run_rejections"
    __table_args__ = (Index("rejections_by_key", "site_id", "idempotency_key"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    site_id: Mapped[int] = mapped_column(Integer)  # no foreign key: an unknown site is a reason too
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = _created()


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
    created_at: Mapped[datetime] = _created()


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
    created_at: Mapped[datetime] = _created()
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
    created_at: Mapped[datetime] = _created()


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
    created_at: Mapped[datetime] = _created()
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resent_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), doc="When the watchdog last re-sent its message (lost while the database was away).")
