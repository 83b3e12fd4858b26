"""Covering cell indexes on trips, so a bounding box's boundary cells are read from the index alone.

Revision ID: 0004_trips_covering_cells
Revises: 0003_websocket
"""

from __future__ import annotations

from alembic import op

revision = "0004_trips_covering_cells"
down_revision = "0003_websocket"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_trips_origin_cover", "trips", ["o_cx", "o_cy", "origin_lon", "origin_lat", "week"])
    op.create_index("ix_trips_dest_cover", "trips", ["d_cx", "d_cy", "dest_lon", "dest_lat", "week"])
    op.drop_index("ix_trips_origin_cell", table_name="trips")
    op.drop_index("ix_trips_dest_cell", table_name="trips")
    if op.get_bind().dialect.name == "postgresql":
        # Index-only scans need the visibility map, which VACUUM sets; trips only grows, so let
        # autovacuum run after every 100,000 inserted rows instead of after 20% of the table.
        op.execute(
            "ALTER TABLE trips SET (autovacuum_vacuum_insert_threshold = 100000, "
            "autovacuum_vacuum_insert_scale_factor = 0)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE trips RESET (autovacuum_vacuum_insert_threshold, autovacuum_vacuum_insert_scale_factor)")
    op.create_index("ix_trips_origin_cell", "trips", ["o_cx", "o_cy"])
    op.create_index("ix_trips_dest_cell", "trips", ["d_cx", "d_cy"])
    op.drop_index("ix_trips_dest_cover", table_name="trips")
    op.drop_index("ix_trips_origin_cover", table_name="trips")
