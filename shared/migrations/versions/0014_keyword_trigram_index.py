"""trigram index on keywords, for stage 2's earlier keywords

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 16:00:00

Stage 2 compares a cluster's keywords with those of the site's earlier clusters that share words
with them (`consumers.relevance.closest`). Without an index each batch read every keyword of its
site: 230 ms a batch at 100,000 keywords, and a run's cost grew with the square of its size. With
it each word of the batch is one bitmap over the index. The site comes first in it (`btree_gin`,
trusted like `pg_trgm`): with the keyword alone, a common word's bitmap covered every site's rows, and
a batch fetched other sites' rows until it found its own. `fastupdate` is off for the reason given in
0005.
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    op.create_index("keywords_site_keyword_trgm", "keywords", ["site_id", "keyword"], postgresql_using="gin",
                    postgresql_ops={"keyword": "gin_trgm_ops"}, postgresql_with={"fastupdate": "off"})


def downgrade() -> None:
    op.drop_index("keywords_site_keyword_trgm", table_name="keywords")
