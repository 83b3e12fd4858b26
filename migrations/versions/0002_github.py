"""GitHub contributor metrics: pulls, issues, timeline events, members, teams, sync state.

Revision ID: 0002_github
Revises: 0001_ingestions_and_trips
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_github"
down_revision = "0001_ingestions_and_trips"
branch_labels = None
depends_on = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _issue_like_columns() -> list[sa.Column]:
    return [
        sa.Column("repo", sa.String(255), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("github_id", sa.BigInteger),
        sa.Column("title", sa.Text, nullable=False, server_default=""),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("author", sa.String(255)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("closed_at", sa.DateTime),
    ]


def upgrade() -> None:
    _create_issue_tables()
    _create_people_tables()
    _create_state_tables()


def _create_issue_tables() -> None:
    op.create_table(
        "github_pulls",
        *_issue_like_columns(),
        sa.Column("merged", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("merged_at", sa.DateTime),
        sa.Column("first_review_at", sa.DateTime),
        sa.Column("timeline_synced_at", sa.DateTime),
    )
    op.create_index("ix_github_pulls_created", "github_pulls", ["created_at"])
    op.create_index("ix_github_pulls_author", "github_pulls", ["author"])
    op.create_table(
        "github_issues",
        *_issue_like_columns(),
        sa.Column("is_pull", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("deleted_at", sa.DateTime),
        sa.Column("transferred_to", sa.String(512)),
        sa.Column("timeline_synced_at", sa.DateTime),
    )
    op.create_index("ix_github_issues_created", "github_issues", ["created_at"])
    op.create_table(
        "github_events",
        sa.Column("repo", sa.String(255), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("event_key", sa.String(128), primary_key=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(255)),
        sa.Column("created_at", sa.DateTime),
        sa.Column("payload", sa.JSON),
    )


def _create_people_tables() -> None:
    op.create_table(
        "github_members",
        sa.Column("login", sa.String(255), primary_key=True),
        sa.Column("github_id", sa.BigInteger),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("first_seen_at", sa.DateTime, nullable=False),
        sa.Column("last_seen_at", sa.DateTime, nullable=False),
        sa.Column("left_at", sa.DateTime),
    )
    op.create_table(
        "github_team_members",
        sa.Column("team", sa.String(255), primary_key=True),
        sa.Column("login", sa.String(255), primary_key=True),
    )
    op.create_table(
        "github_transfers",
        sa.Column("old_repo", sa.String(255), primary_key=True),
        sa.Column("old_number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("new_repo", sa.String(255)),
        sa.Column("new_number", sa.Integer),
        sa.Column("new_location", sa.String(1024), nullable=False),
        sa.Column("detected_at", sa.DateTime, nullable=False),
    )


def _create_state_tables() -> None:
    op.create_table(
        "github_etags",
        sa.Column("url", sa.String(1024), primary_key=True),
        sa.Column("etag", sa.String(255), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("link", sa.Text),
        sa.Column("fetched_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "github_cursors",
        sa.Column("stream", sa.String(64), primary_key=True),
        sa.Column("scope", sa.String(255), primary_key=True),
        sa.Column("cursor", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "github_runs",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("requests", sa.Integer, nullable=False, server_default="0"),
        sa.Column("not_modified", sa.Integer, nullable=False, server_default="0"),
        sa.Column("quota_used", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rate_remaining", sa.Integer),
        sa.Column("rate_reset", sa.DateTime),
        sa.Column("stop_reason", sa.Text),
        sa.Column("cursor", sa.Text),
    )
    op.create_index("ix_github_runs_stream", "github_runs", ["stream", "id"])


def downgrade() -> None:
    op.drop_index("ix_github_runs_stream", table_name="github_runs")
    for name in (
        "github_runs",
        "github_cursors",
        "github_etags",
        "github_transfers",
        "github_team_members",
        "github_members",
        "github_events",
    ):
        op.drop_table(name)
    op.drop_index("ix_github_issues_created", table_name="github_issues")
    op.drop_table("github_issues")
    op.drop_index("ix_github_pulls_author", table_name="github_pulls")
    op.drop_index("ix_github_pulls_created", table_name="github_pulls")
    op.drop_table("github_pulls")
