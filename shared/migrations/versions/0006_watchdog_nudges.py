"""when the watchdog last re-requested a stalled run's stage

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 15:30:00

A run whose stage message was dead-lettered while the database was away (its retries ran out and
failing the run needed the database too) has nothing in flight: the watchdog re-requests its
current stage. `watchdog_nudged_at` spaces those re-requests by `stall_seconds` without touching
`last_progress_at`, which still measures real progress for the stale-run timeout.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("automation_runs", sa.Column("watchdog_nudged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("automation_runs", "watchdog_nudged_at")
