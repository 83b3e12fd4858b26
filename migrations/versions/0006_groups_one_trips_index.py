"""trip_groups keeps one index on `trips` (for the largest groups, by region or not) besides its key.

The `(region, trips)` index cost a third of every group row's index work when a file's groups are
merged, and it misled the merge: on a new, never-analysed table the planner probed it by region alone
instead of probing the primary key. The largest groups of a region are found on `(trips)` as well,
skipping the other regions' groups as it walks down from the largest.

Revision ID: 0006_groups_one_trips_index
Revises: 0005_ingestion_steps
"""

from __future__ import annotations

from alembic import op

revision = "0006_groups_one_trips_index"
down_revision = "0005_ingestion_steps"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_trip_groups_region_trips", table_name="trip_groups")


def downgrade() -> None:
    op.create_index("ix_trip_groups_region_trips", "trip_groups", ["region", "trips"])
