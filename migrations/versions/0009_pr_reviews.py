"""Tables of the pr-reviews dataset (issue 12).

- `pr_reviews`: every good row of every upload (review_time and merge_time in whole seconds, team,
  date; NULL where the cell was empty), indexed by ingestion (an upload's report, its removal) and by
  (team, date) (the team report across uploads).
- `pr_review_reports`: one row per done upload: its report and the data of its plots (JSON), and
  the names of the plots written to S3.

Revision ID: 0009_pr_reviews
Revises: 0008_events
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_pr_reviews"
down_revision = "0008_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pr_reviews",
        sa.Column("ingestion_id", sa.Integer, nullable=False),
        sa.Column("review_time", sa.Integer),
        sa.Column("merge_time", sa.Integer),
        sa.Column("team", sa.String(128)),
        sa.Column("date", sa.Date),
    )
    op.create_index("ix_pr_reviews_ingestion", "pr_reviews", ["ingestion_id"])
    op.create_index("ix_pr_reviews_team_date", "pr_reviews", ["team", "date"])
    op.create_table(
        "pr_review_reports",
        sa.Column("ingestion_id", sa.Integer, sa.ForeignKey("ingestions.id"), primary_key=True, autoincrement=False),
        sa.Column("report", sa.Text, nullable=False),
        sa.Column("plot_inputs", sa.Text, nullable=False),
        sa.Column("plots", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pr_review_reports")
    op.drop_index("ix_pr_reviews_team_date", table_name="pr_reviews")
    op.drop_index("ix_pr_reviews_ingestion", table_name="pr_reviews")
    op.drop_table("pr_reviews")
