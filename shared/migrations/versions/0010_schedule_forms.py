"""schedule forms: several times a day, weekdays, days of the month, cron

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 17:40:00

A site runs daily, weekly on any set of weekdays, or monthly on any days of the month, at one or
more times; or by a cron expression. The seed's single `scheduled_time` stays the first time.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("automation_configs", sa.Column("scheduled_times", JSONB(), nullable=False,
                                                  server_default=sa.text("'[]'::jsonb")))
    op.add_column("automation_configs", sa.Column("weekdays", JSONB(), nullable=False,
                                                  server_default=sa.text("'[\"mon\"]'::jsonb")))
    op.add_column("automation_configs", sa.Column("month_days", JSONB(), nullable=False,
                                                  server_default=sa.text("'[1]'::jsonb")))
    op.add_column("automation_configs", sa.Column("cron", sa.String(120)))
    op.drop_constraint("frequency_known", "automation_configs", type_="check")
    op.create_check_constraint("frequency_known", "automation_configs",
                               "frequency IN ('daily', 'weekly', 'monthly', 'cron')")


def downgrade() -> None:
    op.execute("UPDATE automation_configs SET frequency = 'daily' WHERE frequency = 'cron'")
    op.drop_constraint("frequency_known", "automation_configs", type_="check")
    op.create_check_constraint("frequency_known", "automation_configs", "frequency IN ('daily', 'weekly', 'monthly')")
    for column in ("cron", "month_days", "weekdays", "scheduled_times"):
        op.drop_column("automation_configs", column)
