"""trigram indexes for the word matching of stages 1 and 2

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 21:20:00

Stage 1 shows the clusterer the site's clusters whose names share words with the batch, and
stage 2 the idea titles that share words with the clusters' names (`consumers/relevance.py`):
`ILIKE '%word%'`, which a B-tree cannot serve. Without these indexes each batch scans every
cluster or idea of its site, and a 100,000-keyword site's stage 2 slows as its ideas pile up
(20 ms a batch at 37,500 ideas; 1 ms with the index). pg_trgm ships with PostgreSQL and is a
trusted extension: the database's owner may create it. `fastupdate` is off: the pending list it
keeps would be scanned by every batch's search while stage 1 inserts clusters (twice as slow).
"""

from alembic import op


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_index("clusters_name_trgm", "clusters", ["name"], postgresql_using="gin",
                    postgresql_ops={"name": "gin_trgm_ops"}, postgresql_with={"fastupdate": "off"})
    op.create_index("ideas_title_trgm", "content_ideas", ["title"], postgresql_using="gin",
                    postgresql_ops={"title": "gin_trgm_ops"}, postgresql_with={"fastupdate": "off"})


def downgrade() -> None:
    op.drop_index("ideas_title_trgm", table_name="content_ideas")
    op.drop_index("clusters_name_trgm", table_name="clusters")
