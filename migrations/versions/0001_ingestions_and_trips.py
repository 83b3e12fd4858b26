"""Ingestion records and the trips dataset with its rollups.

Revision ID: 0001_ingestions_and_trips
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_ingestions_and_trips"
down_revision = None
branch_labels = None
depends_on = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sluice_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "ingestions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dataset", sa.String(32), nullable=False),
        sa.Column("bucket", sa.String(255), nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("etag", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rows_loaded", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rows_rejected", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("bytes_total", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("bytes_done", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("chunks_total", sa.Integer),
        sa.Column("header", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("duplicate_of", sa.Integer, sa.ForeignKey("ingestions.id")),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("notified_at", sa.DateTime),
        sa.UniqueConstraint("bucket", "key", "etag", name="uq_ingestions_object"),
    )
    op.create_index("ix_ingestions_content", "ingestions", ["etag", "bytes_total"])
    op.create_table(
        "ingestion_chunks",
        sa.Column("ingestion_id", sa.Integer, sa.ForeignKey("ingestions.id"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("byte_start", sa.BigInteger, nullable=False),
        sa.Column("byte_end", sa.BigInteger, nullable=False),
        sa.Column("lines", sa.Integer, nullable=False),
        sa.Column("rows_loaded", sa.Integer, nullable=False),
        sa.Column("rows_rejected", sa.Integer, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "ingestion_rejects",
        sa.Column("ingestion_id", sa.Integer, sa.ForeignKey("ingestions.id"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("line", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_table(
        "trips",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("ingestion_id", sa.Integer, nullable=False),
        sa.Column("region", sa.String(128), nullable=False),
        sa.Column("datasource", sa.String(128), nullable=False),
        sa.Column("origin_lon", sa.Float(53), nullable=False),
        sa.Column("origin_lat", sa.Float(53), nullable=False),
        sa.Column("dest_lon", sa.Float(53), nullable=False),
        sa.Column("dest_lat", sa.Float(53), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("week", sa.Date, nullable=False),
        sa.Column("tod", sa.SmallInteger, nullable=False),
        sa.Column("o_cx", sa.Integer, nullable=False),
        sa.Column("o_cy", sa.Integer, nullable=False),
        sa.Column("d_cx", sa.Integer, nullable=False),
        sa.Column("d_cy", sa.Integer, nullable=False),
    )
    op.create_index("ix_trips_ingestion", "trips", ["ingestion_id"])
    op.create_index("ix_trips_region_id", "trips", ["region", "id"])
    op.create_index("ix_trips_origin_cell", "trips", ["o_cx", "o_cy"])
    op.create_index("ix_trips_dest_cell", "trips", ["d_cx", "d_cy"])
    op.create_table(
        "trip_region_weeks",
        sa.Column("region", sa.String(128), primary_key=True),
        sa.Column("week", sa.Date, primary_key=True),
        sa.Column("trips", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "trip_datasource_weeks",
        sa.Column("datasource", sa.String(128), primary_key=True),
        sa.Column("week", sa.Date, primary_key=True),
        sa.Column("trips", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "trip_cell_weeks",
        sa.Column("point", sa.String(1), primary_key=True),
        sa.Column("cx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("cy", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("week", sa.Date, primary_key=True),
        sa.Column("trips", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "trip_groups",
        sa.Column("region", sa.String(128), primary_key=True),
        sa.Column("o_cx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("o_cy", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("d_cx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("d_cy", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tod", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("trips", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_trip_groups_region_trips", "trip_groups", ["region", "trips"])
    op.create_index("ix_trip_groups_trips", "trip_groups", ["trips"])


def downgrade() -> None:
    for name in (
        "trip_groups",
        "trip_cell_weeks",
        "trip_datasource_weeks",
        "trip_region_weeks",
        "trips",
        "ingestion_rejects",
        "ingestion_chunks",
        "ingestions",
        "sluice_meta",
    ):
        op.drop_table(name)
