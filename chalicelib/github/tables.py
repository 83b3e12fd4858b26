"""The GitHub tables as SQLAlchemy Core objects (their schema is created by migration 0002_github).

Times are naive UTC datetimes, as everywhere in sluice. A pull request is also an issue on GitHub: it
has a row in `github_issues` (is_pull = true, where deletions, transfers and the timeline cursor live)
and one in `github_pulls` (merge and review state).
"""

from __future__ import annotations

import sqlalchemy as sa

from chalicelib.db import metadata

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _issue_like(name: str, *extra: sa.Column) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("repo", sa.String(255), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("github_id", sa.BigInteger),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("author", sa.String(255)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("closed_at", sa.DateTime),
        *extra,
    )


pulls = _issue_like(
    "github_pulls",
    sa.Column("merged", sa.Boolean, nullable=False),
    sa.Column("merged_at", sa.DateTime),
    sa.Column("first_review_at", sa.DateTime),
    sa.Column("timeline_synced_at", sa.DateTime),
)

issues = _issue_like(
    "github_issues",
    sa.Column("is_pull", sa.Boolean, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False),
    sa.Column("deleted_at", sa.DateTime),
    sa.Column("transferred_to", sa.String(512)),
    sa.Column("timeline_synced_at", sa.DateTime),
)

events = sa.Table(
    "github_events",
    metadata,
    sa.Column("repo", sa.String(255), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("event_key", sa.String(128), primary_key=True),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(255)),
    sa.Column("created_at", sa.DateTime),
    sa.Column("payload", sa.JSON),
)

members = sa.Table(
    "github_members",
    metadata,
    sa.Column("login", sa.String(255), primary_key=True),
    sa.Column("github_id", sa.BigInteger),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("first_seen_at", sa.DateTime, nullable=False),
    sa.Column("last_seen_at", sa.DateTime, nullable=False),
    sa.Column("left_at", sa.DateTime),
)

team_members = sa.Table(
    "github_team_members",
    metadata,
    sa.Column("team", sa.String(255), primary_key=True),
    sa.Column("login", sa.String(255), primary_key=True),
)

transfers = sa.Table(
    "github_transfers",
    metadata,
    sa.Column("old_repo", sa.String(255), primary_key=True),
    sa.Column("old_number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("new_repo", sa.String(255)),
    sa.Column("new_number", sa.Integer),
    sa.Column("new_location", sa.String(1024), nullable=False),
    sa.Column("detected_at", sa.DateTime, nullable=False),
)

etags = sa.Table(
    "github_etags",
    metadata,
    sa.Column("url", sa.String(1024), primary_key=True),
    sa.Column("etag", sa.String(255), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("link", sa.Text),
    sa.Column("fetched_at", sa.DateTime, nullable=False),
)

cursors = sa.Table(
    "github_cursors",
    metadata,
    sa.Column("stream", sa.String(64), primary_key=True),
    sa.Column("scope", sa.String(255), primary_key=True),
    sa.Column("cursor", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

runs = sa.Table(
    "github_runs",
    metadata,
    sa.Column("id", BIGID, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(64), nullable=False),
    sa.Column("stream", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("requests", sa.Integer, nullable=False),
    sa.Column("not_modified", sa.Integer, nullable=False),
    sa.Column("quota_used", sa.Integer, nullable=False),
    sa.Column("rate_remaining", sa.Integer),
    sa.Column("rate_reset", sa.DateTime),
    sa.Column("stop_reason", sa.Text),
    sa.Column("cursor", sa.Text),
)
