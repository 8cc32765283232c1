"""streamed stages: a run's stages 3-6 fed by the batches before them as they finish

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 00:20:00

With `stream_stages` on, planning stage 2 also opens stages 3-6 (`streamed`): each batch that finishes
appends the items it made as batches of the next stage, so an article reaches review while the rest of
the run is still being worked on. `batch_size` keeps the size the stage was opened with, for those
appended batches (the site's config may change mid-run).
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("run_stages", sa.Column("streamed", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("run_stages", sa.Column("batch_size", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("run_stages", "batch_size")
    op.drop_column("run_stages", "streamed")
