"""notifications

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 10:00:00

An account's notification channels (signed webhooks, email, Slack; for one site or all of them), the
notifications made from run and publishing events (one per source event: `dedupe_key` is unique) and
their deliveries, one per notification and channel, with the attempts and the last answer.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "notification_channels",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("account_id", sa.Integer(), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id", ondelete="CASCADE"), index=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("events", JSONB(), nullable=False),
        sa.Column("url", sa.String(2000)),
        sa.Column("url_ciphertext", sa.Text()),
        sa.Column("emails", JSONB(), nullable=False),
        sa.Column("secret_ciphertext", sa.Text()),
        sa.Column("previous_secret_ciphertext", sa.Text()),
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True)),
        sa.Column("secret_rotated_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.UniqueConstraint("account_id", "name"),
        sa.CheckConstraint("kind IN ('webhook', 'email', 'slack')", name="channel_kind_known"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("dedupe_key", sa.String(300), nullable=False, unique=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("account_id", sa.Integer(), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id", ondelete="SET NULL")),
        sa.Column("payload", JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_index("notifications_by_account", "notifications", ["account_id", "id"])
    op.create_table(
        "notification_deliveries",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("notification_id", sa.BigInteger(), sa.ForeignKey("notifications.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("channel_id", sa.Integer(), sa.ForeignKey("notification_channels.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("response_code", sa.Integer()),
        sa.Column("latency_ms", sa.Integer()),
        sa.Column("response_excerpt", sa.String(500)),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column("resent_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("notification_id", "channel_id"),
        sa.CheckConstraint("status IN ('queued', 'retrying', 'delivered', 'failed')", name="delivery_status_known"),
    )
    op.create_index("deliveries_by_channel", "notification_deliveries", ["channel_id", "id"])


def downgrade() -> None:
    op.drop_index("deliveries_by_channel", "notification_deliveries")
    op.drop_table("notification_deliveries")
    op.drop_index("notifications_by_account", "notifications")
    op.drop_table("notifications")
    op.drop_table("notification_channels")
