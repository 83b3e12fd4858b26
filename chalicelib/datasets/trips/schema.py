"""The trips tables, the similarity grid and the constants the other trips modules share."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from chalicelib.db import metadata, upsert

PREFIX = "trips"
HAS_HEADER = True
COLUMNS: dict[str, tuple[str, ...]] = {
    "region": ("region",),
    "origin_coord": ("origin_coord",),
    "destination_coord": ("destination_coord",),
    "datetime": ("datetime", "date_time"),
    "datasource": ("datasource",),
}
EXAMPLE_ROW = "Turin,POINT (7.67 44.99),POINT (7.72 45.06),2018-05-21 02:54:04,baba_car"

_BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

trips = sa.Table(
    "trips",
    metadata,
    sa.Column("id", _BIGID, primary_key=True, autoincrement=True),
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
region_weeks = sa.Table(
    "trip_region_weeks",
    metadata,
    sa.Column("region", sa.String(128), primary_key=True),
    sa.Column("week", sa.Date, primary_key=True),
    sa.Column("trips", sa.BigInteger, nullable=False),
)
datasource_weeks = sa.Table(
    "trip_datasource_weeks",
    metadata,
    sa.Column("datasource", sa.String(128), primary_key=True),
    sa.Column("week", sa.Date, primary_key=True),
    sa.Column("trips", sa.BigInteger, nullable=False),
)
cell_weeks = sa.Table(
    "trip_cell_weeks",
    metadata,
    sa.Column("point", sa.String(1), primary_key=True),
    sa.Column("cx", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("cy", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("week", sa.Date, primary_key=True),
    sa.Column("trips", sa.BigInteger, nullable=False),
)
groups = sa.Table(
    "trip_groups",
    metadata,
    sa.Column("region", sa.String(128), primary_key=True),
    sa.Column("o_cx", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("o_cy", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("d_cx", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("d_cy", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tod", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("trips", sa.BigInteger, nullable=False),
)
#: The extent of every origin and destination ever loaded per region (never shrunk when rows are
#: taken out, so still a bound): a box holding a region's extent holds all its trips.
EXTENT_COLUMNS = [f"{p}_{m}_{a}" for p in ("o", "d") for m in ("min", "max") for a in ("lon", "lat")]
region_extents = sa.Table(
    "trip_region_extents",
    metadata,
    sa.Column("region", sa.String(128), primary_key=True),
    *[sa.Column(name, sa.Float(53), nullable=False) for name in EXTENT_COLUMNS],
)
meta = sa.Table(
    "sluice_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

#: Longest region or datasource name (the columns' size).
TEXT_CHARS = 128
TABLES = (trips, region_weeks, datasource_weeks, cell_weeks, groups)
GROUP_KEYS = ("region", "o_cx", "o_cy", "d_cx", "d_cy", "tod")
LOAD_COLUMNS = [c.name for c in trips.columns if c.name != "id"]


# --- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """The similarity rule: square cells of `deg` degrees and time-of-day buckets of `hours` hours."""

    deg: float
    hours: int

    def cell(self, value: float) -> int:
        return math.floor(value / self.deg)

    def centre(self, cell: int) -> float:
        return round((cell + 0.5) * self.deg, 6)


def context(conn: Connection, settings: Any) -> Grid:
    """The grid in force: fixed by the first load (stored in sluice_meta), so rollups stay consistent."""
    stored = _stored_grid(conn)
    if stored is not None:
        return stored
    grid = Grid(settings.grid_deg, settings.hour_bucket)
    value = json.dumps({"deg": grid.deg, "hours": grid.hours})
    # Two first loads may get here at once: the second waits for the first's row, then keeps it.
    conn.execute(upsert(conn, meta).values(key="trips.grid", value=value).on_conflict_do_nothing(index_elements=["key"]))
    return _stored_grid(conn) or grid


def read_grid(conn: Connection, settings: Any) -> Grid:
    """The stored grid for queries, or the configured one while nothing is loaded."""
    return _stored_grid(conn) or Grid(settings.grid_deg, settings.hour_bucket)


def _stored_grid(conn: Connection) -> Grid | None:
    stored = conn.execute(sa.select(meta.c.value).where(meta.c.key == "trips.grid")).scalar()
    if stored is None:
        return None
    values = json.loads(stored)
    return Grid(float(values["deg"]), int(values["hours"]))


