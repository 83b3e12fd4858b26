"""trip_groups keeps one index by size, on groups of two trips or more, besides its primary key.

A file's groups are merged in one statement at its end, and index work is most of that
statement's cost (11–19 µs per new group on this 2-core machine). Most groups hold one trip
(472,000 of 579,000 after a 1M-row file), so the `(trips)` index now leaves them out: the largest
groups, all the routes ask for by default, are found on it as before, and single-trip groups in
primary-key order. The `(region, trips)` index is gone: the largest groups of a region are found
on `(trips)` too, skipping other regions' groups, and on a new, never-analysed table the planner
probed it by region alone in the merge instead of the primary key.

Revision ID: 0006_groups_one_trips_index
Revises: 0005_ingestion_steps
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_groups_one_trips_index"
down_revision = "0005_ingestion_steps"
branch_labels = None
depends_on = None

RANKED = sa.text("trips >= 2")


def upgrade() -> None:
    op.drop_index("ix_trip_groups_region_trips", table_name="trip_groups")
    op.drop_index("ix_trip_groups_trips", table_name="trip_groups")
    op.create_index("ix_trip_groups_trips", "trip_groups", ["trips"], postgresql_where=RANKED, sqlite_where=RANKED)


def downgrade() -> None:
    op.drop_index("ix_trip_groups_trips", table_name="trip_groups")
    op.create_index("ix_trip_groups_trips", "trip_groups", ["trips"])
    op.create_index("ix_trip_groups_region_trips", "trip_groups", ["region", "trips"])
