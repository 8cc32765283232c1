"""batch window: stage_batches.emitted_at

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 18:00:00

Batches planned before this revision had their messages emitted at planning time, so
they are marked emitted (at their creation time) and never refilled a second time.
"""

from alembic import op
import sqlalchemy as sa


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("stage_batches", sa.Column("emitted_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE stage_batches SET emitted_at = created_at")
    op.create_index("batches_unemitted", "stage_batches", ["run_id", "stage", "seq"], unique=False,
                    postgresql_where=sa.text("emitted_at IS NULL"))


def downgrade() -> None:
    op.drop_index("batches_unemitted", table_name="stage_batches", postgresql_where=sa.text("emitted_at IS NULL"))
    op.drop_column("stage_batches", "emitted_at")
