"""outbox rows a batch finish reserves for its own process to send after its commit

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 11:00:00

A batch finish writes the run's next batch messages with `available_at` a little in the future and
sends them itself once its transaction has committed; the relay's sweep takes a row only once its
`available_at` has passed (`shared.outbox`). Every other row is available when it is written.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("available_at", sa.DateTime(timezone=True), nullable=False,
                                      server_default=sa.func.now()))


def downgrade() -> None:
    op.drop_column("outbox", "available_at")
