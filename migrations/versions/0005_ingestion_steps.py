"""Finishing steps of an ingestion (e.g. merging a trips file into the similarity groups), recorded
like chunks so each runs exactly once, in parallel, and a rerun resumes with the ones not done.

Revision ID: 0005_ingestion_steps
Revises: 0004_trips_covering_cells
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_ingestion_steps"
down_revision = "0004_trips_covering_cells"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingestion_steps",
        sa.Column("ingestion_id", sa.Integer, sa.ForeignKey("ingestions.id"), primary_key=True),
        sa.Column("step", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("finished_at", sa.DateTime, nullable=False),
    )
    # Ingestions that finished before this revision had their groups merged chunk by chunk: mark
    # their steps done, so nothing would merge them again.
    op.execute(
        "INSERT INTO ingestion_steps (ingestion_id, step, finished_at) "
        "SELECT i.id, s.step, i.finished_at FROM ingestions i "
        "CROSS JOIN (SELECT 0 AS step UNION ALL SELECT 1) s "
        "WHERE i.status = 'done' AND i.dataset = 'trips' AND i.finished_at IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("ingestion_steps")
