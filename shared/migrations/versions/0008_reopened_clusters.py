"""clusters reopened by new keywords

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 16:40:00

A mapped cluster that stage 1 adds keywords to becomes `reopened`: stage 2 looks at it again and
writes ideas for the intents of its keywords that none of its ideas targets yet. A `new` cluster
with ideas (written by hand, say) stays as the seed's query leaves it: alone.
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("cluster_status_known", "clusters", type_="check")
    op.create_check_constraint("cluster_status_known", "clusters", "status IN ('new', 'mapped', 'reopened')")


def downgrade() -> None:
    op.execute("UPDATE clusters SET status = 'mapped' WHERE status = 'reopened'")
    op.drop_constraint("cluster_status_known", "clusters", type_="check")
    op.create_check_constraint("cluster_status_known", "clusters", "status IN ('new', 'mapped')")
