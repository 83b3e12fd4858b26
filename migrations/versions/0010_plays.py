"""Tables of the plays dataset (issue 13).

- (Staging tables, `play_stage_<ingestion id>_<step>`, are made by a file's first chunk and dropped
  by its finishing steps: they are work space, not schema.)
- `play_file_totals`: each counted file's totals per (song, date), the source of its result files
  and of what taking it back out subtracts from the rollup.
- `play_totals`: plays per (song, date) over every done upload, and how many files hold the pair.
- `play_files`, `play_result_files`: each done file's summary and its result part files.

Song names compare by their bytes: collation "C" on PostgreSQL (SQLite's default already does).

Revision ID: 0010_plays
Revises: 0009_pr_reviews
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_plays"
down_revision = "0009_pr_reviews"
branch_labels = None
depends_on = None

SONG_CHARS = 500


def _song() -> sa.types.TypeEngine:
    return sa.String(SONG_CHARS).with_variant(sa.String(SONG_CHARS, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "play_file_totals",
        sa.Column("ingestion_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("song", _song(), primary_key=True),
        sa.Column("date", sa.Date, primary_key=True),
        sa.Column("plays", sa.BigInteger, nullable=False),
        sa.Column("part", sa.SmallInteger, nullable=False),
    )
    op.create_table(
        "play_totals",
        sa.Column("song", _song(), primary_key=True),
        sa.Column("date", sa.Date, primary_key=True),
        sa.Column("plays", sa.BigInteger, nullable=False),
        sa.Column("files", sa.Integer, nullable=False),
    )
    op.create_table(
        "play_files",
        sa.Column("ingestion_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("songs", sa.BigInteger, nullable=False),
        sa.Column("dates", sa.Integer, nullable=False),
        sa.Column("total_plays", sa.BigInteger, nullable=False),
        sa.Column("part_bytes", sa.BigInteger, nullable=False),
        sa.Column("bucket", sa.String(255), nullable=False),
        sa.Column("write_seconds", sa.Float, nullable=False),
        sa.Column("written_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "play_result_files",
        sa.Column("ingestion_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("part", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("play_result_files")
    op.drop_table("play_files")
    op.drop_table("play_totals")
    op.drop_table("play_file_totals")
