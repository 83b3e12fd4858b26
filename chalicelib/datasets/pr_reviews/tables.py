"""The pr-reviews tables: every good row of every upload, and one stored report per upload.

Rows are small (two integers, a short name, a date) and are all kept: the team report across uploads
computes its medians and modes over them. `ix_pr_reviews_ingestion` serves an upload's report and its
removal; `ix_pr_reviews_team_date` the team report's `team` and `from`/`to` filters.
"""

from __future__ import annotations

import sqlalchemy as sa

from chalicelib.db import metadata

#: Longest team name (the column's size).
TEAM_CHARS = 128

rows = sa.Table(
    "pr_reviews",
    metadata,
    sa.Column("ingestion_id", sa.Integer, nullable=False),
    sa.Column("review_time", sa.Integer),  # seconds; NULL: the cell was empty
    sa.Column("merge_time", sa.Integer),
    sa.Column("team", sa.String(TEAM_CHARS)),
    sa.Column("date", sa.Date),
    sa.Index("ix_pr_reviews_ingestion", "ingestion_id"),
    sa.Index("ix_pr_reviews_team_date", "team", "date"),
)

reports = sa.Table(
    "pr_review_reports",
    metadata,
    sa.Column("ingestion_id", sa.Integer, sa.ForeignKey("ingestions.id"), primary_key=True, autoincrement=False),
    sa.Column("report", sa.Text, nullable=False),  # JSON: the report the route answers with
    sa.Column("plot_inputs", sa.Text, nullable=False),  # JSON: what plots.render draws (bounded size)
    sa.Column("plots", sa.Text),  # JSON list of plot file names, once written to S3
    sa.Column("created_at", sa.DateTime, nullable=False),
)

LOAD_COLUMNS = ["ingestion_id", "review_time", "merge_time", "team", "date"]
