"""Pipeline hardening: duplicate and removed row counts, versions of a key, chunk attempts, quote
parity per chunk, and per-region extents of the trips.

- `ingestions.rows_duplicate`: rows that repeated data already stored (datasets that deduplicate).
- `ingestions.rows_removed`: rows that were loaded and then taken back out (the file failed as a
  whole, was superseded by a newer version of its key, or was deleted); `rows_loaded` then says
  what is in the database (0).
- `ingestions.superseded_by`: the newer version of the same key that replaced this one.
- `ingestions.last_modified`: the object's S3 LastModified, which orders versions of one key.
- `ingestion_chunks.quotes`: the number of double-quote characters in the chunk's lines, whose
  running parity tells where a quoted field spans lines (see chalicelib/csvblock.py).
- `ingestion_chunks.rows_duplicate`: the chunk's share of `rows_duplicate`.
- `ingestion_attempts`: how often each chunk (or finishing step) was attempted, and the last error,
  so a chunk that fails for good ends its file after a bounded number of attempts.
- `trip_region_extents`: the bounding box of every origin and destination ever loaded per region,
  so a box covering a whole region is answered from the region rollup.

Revision ID: 0007_pipeline_hardening
Revises: 0006_groups_one_trips_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_pipeline_hardening"
down_revision = "0006_groups_one_trips_index"
branch_labels = None
depends_on = None

EXTENT_COLUMNS = [f"{p}_{m}_{a}" for p in ("o", "d") for m in ("min", "max") for a in ("lon", "lat")]


def upgrade() -> None:
    with op.batch_alter_table("ingestions") as batch:
        batch.add_column(sa.Column("rows_duplicate", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("rows_removed", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("superseded_by", sa.Integer, nullable=True))
        batch.add_column(sa.Column("last_modified", sa.DateTime, nullable=True))
        batch.create_foreign_key("fk_ingestions_superseded_by", "ingestions", ["superseded_by"], ["id"])
        batch.create_index("ix_ingestions_key", ["bucket", "key"])
    with op.batch_alter_table("ingestion_chunks") as batch:
        batch.add_column(sa.Column("quotes", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("rows_duplicate", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "ingestion_attempts",
        sa.Column("ingestion_id", sa.Integer, sa.ForeignKey("ingestions.id"), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "trip_region_extents",
        sa.Column("region", sa.String(128), primary_key=True),
        *[sa.Column(name, sa.Float(53), nullable=False) for name in EXTENT_COLUMNS],
    )
    # Regions already loaded get their extents from the stored trips.
    aggregates = ", ".join(
        f"{m}({'origin' if p == 'o' else 'dest'}_{a})" for p in ("o", "d") for m in ("min", "max") for a in ("lon", "lat")
    )
    op.execute(
        f"INSERT INTO trip_region_extents (region, {', '.join(EXTENT_COLUMNS)}) "  # noqa: S608 (constants)
        f"SELECT region, {aggregates} FROM trips GROUP BY region"
    )


def downgrade() -> None:
    op.drop_table("trip_region_extents")
    op.drop_table("ingestion_attempts")
    with op.batch_alter_table("ingestion_chunks") as batch:
        batch.drop_column("rows_duplicate")
        batch.drop_column("quotes")
    with op.batch_alter_table("ingestions") as batch:
        batch.drop_index("ix_ingestions_key")
        batch.drop_constraint("fk_ingestions_superseded_by", type_="foreignkey")
        batch.drop_column("last_modified")
        batch.drop_column("superseded_by")
        batch.drop_column("rows_removed")
        batch.drop_column("rows_duplicate")
