"""review actions and publishing

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 17:20:00

Content moves review -> approved -> published, or rejected (publish_failed until a publish
succeeds); every action is a `content_changes` row. A site publishes to `publish_targets`
(WordPress, application password encrypted), and `publications` remember the remote post of each
article on each target, so a retry or a re-publish updates it instead of creating another.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def upgrade() -> None:
    op.drop_constraint("content_status_known", "content", type_="check")
    op.create_check_constraint("content_status_known", "content", "status IN ('draft', 'review', 'approved', "
                               "'rejected', 'published', 'publish_failed')")
    op.add_column("content", sa.Column("revision", sa.Integer(), nullable=False, server_default="1"))
    op.add_column("content", sa.Column("rejection_reason", sa.Text()))
    op.add_column("content", sa.Column("reviewed_by", sa.String(200)))
    op.add_column("content", sa.Column("reviewed_at", sa.DateTime(timezone=True)))
    op.add_column("content", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW))
    op.add_column("automation_configs", sa.Column("auto_publish", sa.Boolean(), nullable=False,
                                                  server_default=sa.false()))
    op.add_column("automation_configs", sa.Column("skip_review", sa.Boolean(), nullable=False,
                                                  server_default=sa.false()))
    op.create_table(
        "content_changes",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("content_id", sa.Integer(), sa.ForeignKey("content.id", ondelete="CASCADE"), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("changes", JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_index("changes_by_content", "content_changes", ["content_id", "id"])
    op.create_table(
        "publish_targets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("base_url", sa.String(500), nullable=False),
        sa.Column("username", sa.String(200), nullable=False),
        sa.Column("secret_ciphertext", sa.Text(), nullable=False),
        sa.Column("post_status", sa.String(16), nullable=False),
        sa.Column("schedule_spacing_minutes", sa.Integer(), nullable=False, server_default="1440"),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.UniqueConstraint("site_id", "name"),
        sa.CheckConstraint("kind IN ('wordpress')", name="target_kind_known"),
        sa.CheckConstraint("post_status IN ('draft', 'publish', 'future')", name="target_post_status_known"),
        sa.CheckConstraint("schedule_spacing_minutes BETWEEN 1 AND 43200", name="target_spacing_range"),
    )
    op.create_table(
        "publications",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("content_id", sa.Integer(), sa.ForeignKey("content.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("target_id", sa.Integer(), sa.ForeignKey("publish_targets.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("published_revision", sa.Integer()),
        sa.Column("remote_id", sa.BigInteger()),
        sa.Column("remote_url", sa.String(1000)),
        sa.Column("media", JSONB(), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("create_started_at", sa.DateTime(timezone=True)),
        sa.Column("requested_by", sa.String(200)),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("content_id", "target_id"),
        sa.CheckConstraint("status IN ('queued', 'published', 'failed')", name="publication_status_known"),
    )


def downgrade() -> None:
    op.drop_table("publications")
    op.drop_table("publish_targets")
    op.drop_index("changes_by_content", "content_changes")
    op.drop_table("content_changes")
    op.drop_column("automation_configs", "skip_review")
    op.drop_column("automation_configs", "auto_publish")
    for column in ("updated_at", "reviewed_at", "reviewed_by", "rejection_reason", "revision"):
        op.drop_column("content", column)
    op.execute("UPDATE content SET status = 'review' WHERE status IN ('approved', 'rejected', 'publish_failed')")
    op.drop_constraint("content_status_known", "content", type_="check")
    op.create_check_constraint("content_status_known", "content", "status IN ('draft', 'review', 'published')")
