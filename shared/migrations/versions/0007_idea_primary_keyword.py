"""the keyword an idea targets

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 16:00:00

An idea targets one search intent, named by one keyword of its cluster: two articles competing for
one intent would cannibalize each other. Ideas written before this revision targeted the first of
their `target_keywords`, which becomes their primary keyword.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("content_ideas", sa.Column("primary_keyword", sa.String(300), nullable=True))
    op.execute("UPDATE content_ideas SET primary_keyword = left(target_keywords->>0, 300) "
               "WHERE jsonb_array_length(target_keywords) > 0")


def downgrade() -> None:
    op.drop_column("content_ideas", "primary_keyword")
