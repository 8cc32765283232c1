"""index of the batches out and not done, which a finish counts against its run's window

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 01:30:00

A finish tops its run's window up to the window's size now (which grows while the run is the only one
running), less the batches of the stage that are out and not done (`consumers.planning.REFILL`). Those
are at most a window's worth, while `batches_open` also holds a stage's whole unemitted backlog (tens of
thousands of rows at stage 6 of a big run), so they get an index of their own.
"""

from alembic import op
from sqlalchemy import text

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("batches_in_flight", "stage_batches", ["run_id", "stage"],
                    postgresql_where=text("emitted_at IS NOT NULL AND status <> 'done'"))


def downgrade() -> None:
    op.drop_index("batches_in_flight", table_name="stage_batches")
