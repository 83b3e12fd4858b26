"""The trips dataset: vehicle trips with a region, an origin, a destination and a start time.

Files live under `trips/` with the header `region,origin_coord,destination_coord,datetime,datasource`
(`date_time` is accepted for `datetime`). Coordinates are WKT `POINT (lon lat)`; times are naive UTC.

The data model keeps the answers instant at any size. Each trip is stored with derived columns: its ISO
week (named by its Monday), its time-of-day bucket and the grid cells of its origin and destination.
Each chunk's load adds to three rollups in the same transaction:
- `trip_region_weeks` / `trip_datasource_weeks`: trips per region (datasource) and week;
- `trip_cell_weeks`: trips per grid cell of the origin (point 'o') or destination ('d') and week.
When every chunk is in, the finishing steps add the file to `trip_groups`: trips per similarity
group (region, origin cell, destination cell, time-of-day bucket).

A bounding box is answered from `trip_cell_weeks` for the cells wholly inside it; only the trips in its
boundary cells (first and last column and row) are read, and tested against the exact coordinates.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from chalicelib.csvblock import Block
from chalicelib.datasets import checks
from chalicelib.datasets.base import Parsed
from chalicelib.db import add_counts, bulk_insert, is_postgres, metadata, upsert
from chalicelib.errors import BadRequest, NotFound

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
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_POINT = rf"(?i)^\s*POINT\s*\(\s*(?P<lon>{_NUM})\s+(?P<lat>{_NUM})\s*\)\s*$"
_EPOCH_MONDAY_OFFSET = 3  # 1970-01-01 was a Thursday: (days + 3) % 7 is 0 on Mondays


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


# --- parsing --------------------------------------------------------------------------------------


def parse(block: Block, grid: Grid, keep_errors: int = 20) -> Parsed:
    """Validate and type a block of trips, vectorised; bad rows become (line, message) rejects."""
    t = block.table
    region, region_checks = checks.text(t.column("region"), TEXT_CHARS)
    source, source_checks = checks.text(t.column("datasource"), TEXT_CHARS)
    o_lon, o_lat = _points(t.column("origin_coord"))
    d_lon, d_lat = _points(t.column("destination_coord"))
    started = _timestamps(t.column("datetime"))
    tests = [
        *[("region", mask, reason) for reason, mask in region_checks.items()],
        *[("datasource", mask, reason) for reason, mask in source_checks.items()],
        ("origin_coord", _in_range(o_lon, o_lat), ""),
        ("destination_coord", _in_range(d_lon, d_lat), ""),
        ("datetime", pc.is_valid(started), ""),
        ("datetime", checks.in_date_window(started), f"is outside the accepted dates ({checks.window_sentence()})"),
    ]
    ok = checks.all_ok([mask for _, mask, _ in tests], t.num_rows)
    bad = np.flatnonzero(~ok)
    rejects = [(int(block.lines[i]), _reject_message(t, tests, i)) for i in bad[:keep_errors]]
    keep = pa.array(ok)
    columns = {
        "region": region.filter(keep),
        "datasource": source.filter(keep),
        "origin_lon": o_lon.filter(keep),
        "origin_lat": o_lat.filter(keep),
        "dest_lon": d_lon.filter(keep),
        "dest_lat": d_lat.filter(keep),
        "started_at": started.filter(keep),
    }
    return Parsed(_derive(columns, grid), rejects, len(bad))


def _points(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Longitudes and latitudes of WKT points; null where a value is not a point.

    Files written by one program spell every point the same way, so a block whose values all look
    like 'POINT (lon lat)' is cut by position and cast (4x faster); any other block goes through the
    full regular expression, which also takes spacing and case variants.
    """
    fast = _points_fast(column)
    if fast is not None:
        return fast
    parts = pc.extract_regex(column, _POINT)
    return (
        pc.cast(pc.struct_field(parts, "lon"), pa.float64()),
        pc.cast(pc.struct_field(parts, "lat"), pa.float64()),
    )


def _points_fast(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray] | None:
    shaped = pc.and_(pc.starts_with(column, "POINT ("), pc.ends_with(column, ")"))
    if not pc.all(shaped).as_py():
        return None
    parts = pc.split_pattern(pc.utf8_slice_codeunits(column, 7, -1), " ", max_splits=1)
    try:
        lon = pc.cast(pc.list_element(parts, 0), pa.float64())
        lat = pc.cast(pc.list_element(parts, 1), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowIndexError):
        return None
    finite = pc.and_(pc.is_finite(lon), pc.is_finite(lat))  # the cast takes 'nan' and 'inf'; WKT here does not
    if not pc.all(finite).as_py():
        return None
    return lon, lat


_DATETIME = r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}$"
_FIELDS = ((pc.year, 0, 4), (pc.month, 5, 7), (pc.day, 8, 10), (pc.hour, 11, 13), (pc.minute, 14, 16),
           (pc.second, 17, 19))


def _timestamps(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Strict 'YYYY-MM-DD HH:MM:SS' (or with 'T'); null otherwise.

    Arrow's strptime rolls 02-30 over to 03-02 and accepts second 61, so a value only counts if
    each field of the parsed time equals the digits written in its place.
    """
    text = pc.utf8_trim_whitespace(column)
    shaped = pc.match_substring_regex(text, _DATETIME)
    text = pc.if_else(shaped, text, "1970-01-01 00:00:00")  # placeholders keep the digit casts below valid
    text = pc.replace_substring(text, "T", " ", max_replacements=1)
    parsed = pc.strptime(text, format="%Y-%m-%d %H:%M:%S", unit="s", error_is_null=True)
    exact = shaped
    for field, start, stop in _FIELDS:
        written = pc.cast(pc.utf8_slice_codeunits(text, start, stop), pa.int64())
        exact = pc.and_(exact, pc.fill_null(pc.equal(field(parsed), written), False))
    return pc.if_else(exact, parsed, pa.scalar(None, pa.timestamp("s")))


def _in_range(lon: pa.ChunkedArray, lat: pa.ChunkedArray) -> pa.ChunkedArray:
    lon_ok = pc.and_(pc.greater_equal(lon, -180.0), pc.less_equal(lon, 180.0))
    lat_ok = pc.and_(pc.greater_equal(lat, -90.0), pc.less_equal(lat, 90.0))
    return pc.fill_null(pc.and_(lon_ok, lat_ok), False)


def _reject_message(t: pa.Table, tests: list[tuple[str, Any, str]], i: int) -> str:
    """Why row i was rejected, naming the first failing column and its value (rejected rows only)."""
    for name, mask, reason in tests:
        if not mask[i].as_py():
            return _explain(name, t.column(name)[i].as_py(), reason)
    return "the row could not be read"


def _explain(name: str, value: str, reason: str) -> str:
    if reason == "is empty":
        return f"{name} is empty"
    if reason:
        return f"{name} {checks.shown(value)} {reason}"
    if name == "datetime":
        return f"datetime {checks.shown(value)} is not a date and time like '2018-05-21 02:54:04'"
    if value and _looks_like_point(value):
        return f"{name} {checks.shown(value)} is outside the valid range (longitude -180..180, latitude -90..90)"
    return f"{name} {checks.shown(value)} is not a WKT point like 'POINT (7.68 45.07)' (longitude first)"


def _looks_like_point(value: str) -> bool:
    return pc.match_substring_regex(pa.array([value]), _POINT)[0].as_py()


def _derive(columns: dict[str, Any], grid: Grid) -> pa.Table:
    """Add week, time-of-day bucket and grid cells, with numpy on whole columns."""
    seconds = columns["started_at"].cast(pa.int64()).to_numpy()
    days = seconds // 86400
    monday = days - (days + _EPOCH_MONDAY_OFFSET) % 7
    derived = {
        "week": pa.array(monday.astype("int32"), pa.int32()).cast(pa.date32()),
        "tod": pa.array(((seconds % 86400) // 3600 // grid.hours).astype("int16")),
        "o_cx": _cells(columns["origin_lon"], grid),
        "o_cy": _cells(columns["origin_lat"], grid),
        "d_cx": _cells(columns["dest_lon"], grid),
        "d_cy": _cells(columns["dest_lat"], grid),
    }
    table = pa.table({**columns, **derived})
    return table


def _cells(values: pa.ChunkedArray, grid: Grid) -> pa.Array:
    return pa.array(np.floor(values.to_numpy() / grid.deg).astype("int32"))


# --- loading --------------------------------------------------------------------------------------


def load(conn: Connection, table: pa.Table, ingestion_id: int) -> int:
    """Bulk-load typed trips and add them to every rollup, in the caller's transaction."""
    if table.num_rows == 0:
        return 0
    table = table.append_column("ingestion_id", pa.array(np.full(table.num_rows, ingestion_id, "int32")))
    bulk_insert(conn, trips, LOAD_COLUMNS, table)
    _add_rollups(conn, table)
    return table.num_rows


def _add_rollups(conn: Connection, table: pa.Table) -> None:
    """The chunk's share of the weekly rollups, committed with its rows (groups come at the end)."""
    def counted(keys: list[str], source: pa.Table = table) -> pa.Table:
        out = source.group_by(keys).aggregate([([], "count_all")])
        return out.select([*keys, "count_all"]).rename_columns([*keys, "trips"])

    add_counts(conn, region_weeks, ["region", "week"], counted(["region", "week"]))
    add_counts(conn, datasource_weeks, ["datasource", "week"], counted(["datasource", "week"]))
    cells = pa.concat_tables([
        _cell_keys(table, "o", "o_cx", "o_cy"),
        _cell_keys(table, "d", "d_cx", "d_cy"),
    ])
    add_counts(conn, cell_weeks, ["point", "cx", "cy", "week"], counted(["point", "cx", "cy", "week"], cells))
    _widen_extents(conn, table)


def _widen_extents(conn: Connection, table: pa.Table) -> None:
    """Grow each region's stored extent to hold the chunk's origins and destinations."""
    sources = {"o": ("origin_lon", "origin_lat"), "d": ("dest_lon", "dest_lat")}
    aggregates = [(sources[n[0]][0 if n.endswith("lon") else 1], n[2:5]) for n in EXTENT_COLUMNS]
    out = table.group_by("region").aggregate(aggregates)
    rows = [dict(zip(["region", *EXTENT_COLUMNS], values, strict=True))
            for values in zip(*(out.column(c).to_pylist() for c in ["region", *[f"{a}_{f}" for a, f in aggregates]]),
                              strict=True)]
    bound = sa.func.least if is_postgres(conn) else sa.func.min
    wider = sa.func.greatest if is_postgres(conn) else sa.func.max
    insert = upsert(conn, region_extents)
    widen = {n: (bound if "_min_" in n else wider)(region_extents.c[n], insert.excluded[n]) for n in EXTENT_COLUMNS}
    for row in sorted(rows, key=lambda r: r["region"]):  # one order for every worker: no deadlocks
        conn.execute(insert.values(**row).on_conflict_do_update(index_elements=["region"], set_=widen))


def _cell_keys(table: pa.Table, point: str, cx: str, cy: str) -> pa.Table:
    return pa.table({
        "point": pa.array([point] * table.num_rows, pa.string()),
        "cx": table.column(cx),
        "cy": table.column(cy),
        "week": table.column("week"),
    })


#: The similarity groups are merged when every chunk is in, in this many independent steps (each its
#: own transaction, run in parallel); step k takes the groups whose origin column o_cx is k modulo it.
FINISH_STEPS = 2


def finish_step(conn: Connection, ingestion_id: int, step: int, steps: int, sign: int = 1) -> None:
    """Add (sign -1: take back) the file's trips to the similarity groups of one step.

    Groups are merged once per file rather than per chunk: most groups are small (a few hundred
    metres and an hour hold few trips), so each chunk's groups are nearly as many as its rows, and
    per-chunk upserts cost as much as loading the trips (measured: 11.7 s against 5.0-6.6 s per million
    trips). One set-based statement over the file's rows writes each group once. A file's groups
    therefore appear when its chunks are all in, before it is marked done.
    """
    if is_postgres(conn):
        _take_turns_postgres(conn, step)
        if conn.dialect.server_version_info >= (15,):
            conn.execute(MERGE_GROUPS, {"ingestion_id": ingestion_id, "step": step, "steps": steps, "sign": sign})
            return
    keys = [trips.c[k] for k in GROUP_KEYS]
    mine = sa.and_(trips.c.ingestion_id == ingestion_id, (trips.c.o_cx % steps + steps) % steps == step)
    rows = sa.select(*keys, sign * sa.func.count()).where(mine).group_by(*keys)
    insert = upsert(conn, groups).from_select([*GROUP_KEYS, "trips"], rows)
    conn.execute(insert.on_conflict_do_update(
        index_elements=list(GROUP_KEYS), set_={"trips": groups.c.trips + insert.excluded.trips}
    ))


#: Advisory lock namespace of the group merges (any constant int4 unique to this use).
GROUP_LOCK = 0x7472_6970  # "trip"

_KEYS = ", ".join(GROUP_KEYS)
#: The group merge on PostgreSQL 15 and later: new groups are inserted plainly, where ON CONFLICT
#: inserts speculatively (about twice the work per new group).
MERGE_GROUPS = sa.text(f"""
    MERGE INTO trip_groups g
    USING (
        SELECT {_KEYS}, :sign * count(*) AS trips FROM trips
        WHERE ingestion_id = :ingestion_id AND (o_cx % :steps + :steps) % :steps = :step
        GROUP BY {_KEYS}
    ) f
    ON {" AND ".join(f"g.{k} = f.{k}" for k in GROUP_KEYS)}
    WHEN MATCHED THEN UPDATE SET trips = g.trips + f.trips
    WHEN NOT MATCHED THEN INSERT ({_KEYS}, trips) VALUES ({", ".join(f"f.{k}" for k in GROUP_KEYS)}, f.trips)
""")  # noqa: S608 (the names are the constants above; values are bound)


def _take_turns_postgres(conn: Connection, step: int) -> None:
    """Wait for this step's turn among all files, and fix the merge's plan for this transaction.

    Merges of the same step (from any file) take turns on a transaction-scoped advisory lock. So no
    other transaction can add one of our new groups while the MERGE runs (MERGE would then fail on
    the primary key), and the rows need no locking order (two files upserting the same groups in
    different orders could deadlock). Without an order, the file's rows are grouped by a hash
    aggregate instead of sorted first: 0.8-1.0 s against 2.3-3.1 s for 500,000 trips.

    The planner cannot know how many rows a just-loaded file has (it guesses a handful), so the plan
    is set here rather than left to estimates: no sorting, 64 MB for the aggregate instead of
    spilling to disk, and a nested loop that probes trip_groups by its primary key for each of the
    file's groups (a hash or merge join would read all of trip_groups, which at scale is far larger
    than one file). The primary key is the only index the join can probe: migration 0006 dropped
    the (region, trips) index, which on a new, never-analysed table the planner probed by region
    alone, rescanning every group it had just inserted (6.6 s against 0.19 s for 22,559 groups).
    """
    for setting in ("work_mem = '64MB'", "enable_sort = off", "enable_hashjoin = off", "enable_mergejoin = off"):
        conn.exec_driver_sql(f"SET LOCAL {setting}")
    lock = sa.text("SELECT pg_advisory_xact_lock(CAST(:space AS integer), CAST(:step AS integer))")
    conn.execute(lock, {"space": GROUP_LOCK, "step": step})


def discard(conn: Connection, ingestion_id: int, steps_done: Iterable[int] = ()) -> None:
    """Take an ingestion's trips back out of the rollups and the table (a file failed as a whole).

    The subtraction is aggregated in SQL and streamed in batches, so memory stays bounded however
    many rows the failed file had loaded; groups are taken back for the finishing steps that ran.
    """
    mine = trips.c.ingestion_id == ingestion_id
    c = trips.c
    sources = [
        (region_weeks, ["region", "week"], [c.region, c.week]),
        (datasource_weeks, ["datasource", "week"], [c.datasource, c.week]),
        (cell_weeks, ["point", "cx", "cy", "week"], [sa.literal("o"), c.o_cx, c.o_cy, c.week]),
        (cell_weeks, ["point", "cx", "cy", "week"], [sa.literal("d"), c.d_cx, c.d_cy, c.week]),
    ]
    for rollup, keys, exprs in sources:
        query = sa.select(*exprs, sa.func.count()).where(mine).group_by(*exprs[1:] if keys[0] == "point" else exprs)
        result = conn.execute(query.execution_options(stream_results=True, yield_per=50_000))
        for rows in result.partitions():
            columns = list(zip(*rows, strict=True))
            table = pa.table({k: pa.array(list(v)) for k, v in zip(keys, columns[:-1], strict=True)})
            add_counts(conn, rollup, keys, table.append_column("trips", pa.array([-n for n in columns[-1]], pa.int64())))
        conn.execute(rollup.delete().where(rollup.c.trips <= 0))
    steps_done = list(steps_done)
    for step in steps_done:
        finish_step(conn, ingestion_id, step, FINISH_STEPS, sign=-1)
    if steps_done:
        conn.execute(groups.delete().where(groups.c.trips <= 0))
    conn.execute(trips.delete().where(mine))


def finish(conn: Connection, ingestion: dict[str, Any], settings: Any) -> None:
    """Nothing left once the steps ran: the weekly rollups were kept chunk by chunk."""


# --- queries --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BBox:
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def cells(self, grid: Grid) -> tuple[int, int, int, int]:
        return grid.cell(self.min_lon), grid.cell(self.min_lat), grid.cell(self.max_lon), grid.cell(self.max_lat)


def _point_columns(point: str) -> tuple[Any, Any, Any, Any]:
    if point == "o":
        return trips.c.o_cx, trips.c.o_cy, trips.c.origin_lon, trips.c.origin_lat
    return trips.c.d_cx, trips.c.d_cy, trips.c.dest_lon, trips.c.dest_lat


def _inside(box: BBox, grid: Grid, point: str) -> Any:
    """Condition: the trip's `point` lies in the box (cell range first, so the cell index is used)."""
    cx, cy, lon, lat = _point_columns(point)
    c0, r0, c1, r1 = box.cells(grid)
    return sa.and_(
        cx.between(c0, c1), cy.between(r0, r1),
        lon.between(box.min_lon, box.max_lon), lat.between(box.min_lat, box.max_lat),
    )


def dataset_weeks(conn: Connection) -> tuple[dt.date | None, dt.date | None]:
    """The first and last week holding any trip, across the whole dataset."""
    row = conn.execute(
        sa.select(sa.func.min(region_weeks.c.week), sa.func.max(region_weeks.c.week)).where(
            region_weeks.c.trips > 0
        )
    ).first()
    return (row[0], row[1]) if row else (None, None)


def monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def weekly_counts(
    conn: Connection, grid: Grid, start: dt.date, end: dt.date, region: str | None = None,
    box: BBox | None = None, point: str = "origin",
) -> dict[dt.date, int]:
    """Trips per week in [start, end] (Mondays) for a region or a bounding box; weeks with none absent."""
    if region is not None:
        return _region_weeks(conn, [region], start, end)
    assert box is not None
    covered, every = regions_inside(conn, box, point)
    if every:  # the box holds every trip: the region rollup answers
        return _region_weeks(conn, None, start, end)
    if point == "both":
        counts = _region_weeks(conn, covered, start, end) if covered else {}
        query = sa.select(trips.c.week, sa.func.count()).where(
            _inside(box, grid, "o"), _inside(box, grid, "d"), trips.c.week.between(start, end),
            *([trips.c.region.not_in(covered)] if covered else []),
        ).group_by(trips.c.week)
        for week, n in _sum_by_week(conn.execute(query).all()).items():
            counts[week] = counts.get(week, 0) + n
        return counts
    p = "o" if point == "origin" else "d"
    return _sum_by_week(_interior_rows(conn, grid, box, p, start, end) + _boundary_rows(conn, grid, box, p, start, end))


def _region_weeks(conn: Connection, regions: list[str] | None, start: dt.date, end: dt.date) -> dict[dt.date, int]:
    """Trips per week from the region rollup, for some regions (None: all)."""
    query = sa.select(region_weeks.c.week, region_weeks.c.trips).where(region_weeks.c.week.between(start, end))
    if regions is not None:
        query = query.where(region_weeks.c.region.in_(regions))
    return _sum_by_week(conn.execute(query).all())


def regions_inside(conn: Connection, box: BBox, point: str) -> tuple[list[str], bool]:
    """(the regions all of whose trips lie in the box, whether that is every region with trips).

    Read from the regions' stored extents, so a box as large as a city, a country or the world is
    answered from the rollups however many trips it holds.
    """
    ends = {"origin": ("o",), "destination": ("d",), "both": ("o", "d")}[point]
    c = region_extents.c
    conditions = []
    for e in ends:
        conditions += [c[f"{e}_min_lon"] >= box.min_lon, c[f"{e}_max_lon"] <= box.max_lon,
                       c[f"{e}_min_lat"] >= box.min_lat, c[f"{e}_max_lat"] <= box.max_lat]
    covered = list(conn.execute(sa.select(c.region).where(*conditions).order_by(c.region)).scalars())
    with_trips = conn.execute(
        sa.select(region_weeks.c.region).where(region_weeks.c.trips > 0).distinct()
    ).scalars()
    return covered, set(with_trips) <= set(covered)


def box_total(conn: Connection, grid: Grid, box: BBox, point: str = "origin") -> int:
    """Trips in the box in any week: all the weekly average over the dataset's whole span needs.

    The same plan as `weekly_counts`, counted without a week filter or grouping.
    """
    covered, every = regions_inside(conn, box, point)
    if every:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(region_weeks.c.trips), 0))).scalar())
    if point == "both":
        total = 0
        if covered:
            total = int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(region_weeks.c.trips), 0))
                                     .where(region_weeks.c.region.in_(covered))).scalar())
        query = sa.select(sa.func.count()).where(
            _inside(box, grid, "o"), _inside(box, grid, "d"), *([trips.c.region.not_in(covered)] if covered else [])
        )
        return total + int(conn.execute(query).scalar())
    p = "o" if point == "origin" else "d"
    rows = _interior_rows(conn, grid, box, p) + _boundary_rows(conn, grid, box, p)
    return sum(int(row[-1] or 0) for row in rows)


def _interior_rows(conn: Connection, grid: Grid, box: BBox, p: str, start: dt.date | None = None,
                   end: dt.date | None = None) -> list:
    """Sums over the cells wholly inside the box, from the rollup: per week in [start, end], or one
    total over every week when no range is given."""
    c0, r0, c1, r1 = box.cells(grid)
    if c1 - c0 < 2 or r1 - r0 < 2:
        return []
    c = cell_weeks.c
    inside = [c.point == p, _cell_range(c.cx, c0 + 1, c1 - 1), c.cy.between(r0 + 1, r1 - 1)]
    if start is None:
        return conn.execute(sa.select(sa.func.sum(c.trips)).where(*inside)).all()
    query = sa.select(c.week, sa.func.sum(c.trips)).where(*inside, c.week.between(start, end)).group_by(c.week)
    return conn.execute(query).all()


def _boundary_rows(conn: Connection, grid: Grid, box: BBox, p: str, start: dt.date | None = None,
                   end: dt.date | None = None) -> list:
    """Counts of the trips in the box's boundary cells, tested against exact coordinates: per week
    in [start, end], or one total when no range is given.

    Two strips (the first and last columns; the first and last rows between them), each a set of
    range scans of the covering cell index (cells, lon, lat, week), which PostgreSQL answers from
    the index alone. Each cell is named by an equality on both cell numbers (`_cell_range`), so in
    the columns the longitude bounds narrow the scan itself: only the part inside the box is read.
    """
    cx, cy, lon, lat = _point_columns(p)
    c0, r0, c1, r1 = box.cells(grid)
    strips = [
        sa.and_(cx.in_(sorted({c0, c1})), _cell_range(cy, r0, r1)),
        sa.and_(_cell_range(cx, c0 + 1, c1 - 1), cy.in_(sorted({r0, r1}))),
    ]
    exact = [lon.between(box.min_lon, box.max_lon), lat.between(box.min_lat, box.max_lat)]
    if start is None:
        queries = [sa.select(sa.func.count()).where(strip, *exact) for strip in strips]
    else:
        exact.append(trips.c.week.between(start, end))
        queries = [sa.select(trips.c.week, sa.func.count()).where(strip, *exact).group_by(trips.c.week)
                   for strip in strips]
    return conn.execute(sa.union_all(*queries)).all()


#: Up to this many cell numbers are listed one by one (see _cell_range); wider ranges stay ranges.
MAX_LISTED_CELLS = 1000


def _cell_range(column: Any, first: int, last: int) -> Any:
    """`column` between first and last, as a list of values when the range is short.

    With a range on the first column of a multi-column index, PostgreSQL reads every entry in it and
    filters the next column; a list makes one index descent per value, so each cell is read alone
    (7.8 million entries read and dropped for one bounding box at 100M trips before this).
    """
    if last - first + 1 > MAX_LISTED_CELLS:
        return column.between(first, last)
    return column.in_(range(first, last + 1))


def _sum_by_week(rows: list) -> dict[dt.date, int]:
    out: dict[dt.date, int] = {}
    for week, count in rows:
        week = week if isinstance(week, dt.date) else dt.date.fromisoformat(str(week)[:10])
        out[week] = out.get(week, 0) + int(count)
    return out


def week_range(conn: Connection, start: dt.date | None, end: dt.date | None) -> tuple[dt.date, dt.date] | None:
    """The Mondays to report: from/to when given (snapped to their week), else the dataset's span.

    The span is clamped to the accepted dates (chalicelib.datasets.checks), so a trip stored before
    that window existed cannot stretch every answer over centuries.
    """
    first, last = dataset_weeks(conn)
    if first is not None and last is not None:
        first, last = max(first, monday(checks.DATE_MIN)), min(last, monday(checks.DATE_MAX - dt.timedelta(days=1)))
    start = monday(start) if start else first
    end = monday(end) if end else last
    if start is None or end is None:
        return None
    if start > end:
        raise BadRequest(f"'from' ({start}) must not be after 'to' ({end}).")
    return start, end


def known_region(conn: Connection, region: str | None) -> str | None:
    """The region as stored: exact, else the one region equal to it ignoring case; 404 otherwise."""
    if region is None:
        return None
    names = list(conn.execute(sa.select(region_weeks.c.region).distinct()).scalars())
    if region in names:
        return region
    folded = [name for name in names if name.casefold() == region.casefold()]
    if len(folded) == 1:
        return folded[0]
    listed = ", ".join(sorted(names)[:20]) + (", ..." if len(names) > 20 else "")
    raise NotFound(
        f"No trips have the region {region!r}; " + (f"regions with trips: {listed}." if names else "no trips are loaded yet.")
    )


def weekly_series(counts: dict[dt.date, int], start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    weeks = (end - start).days // 7 + 1
    days = [start + dt.timedelta(weeks=i) for i in range(weeks)]
    return [{"week": d.isoformat(), "trips": counts.get(d, 0)} for d in days]


def average_of(total: int, start: dt.date, end: dt.date) -> dict[str, Any]:
    """The weekly-average answer for `total` trips over the weeks from `start` to `end` (Mondays)."""
    weeks = (end - start).days // 7 + 1
    return {
        "weekly_average": round(total / weeks, 4),
        "weeks": weeks,
        "trips": total,
        "from": start.isoformat(),
        "to": end.isoformat(),
    }


def top_groups(
    conn: Connection, grid: Grid, region: str | None, box: BBox | None, min_trips: int, limit: int,
    after: list[Any] | None = None,
) -> list[dict[str, Any]]:
    """Similar-trip groups, largest first, then by key; a bbox keeps groups whose origin cell centre
    lies in it. `after` is the (trips, *GROUP_KEYS) of the last group of the previous page.

    Only groups of two trips or more are indexed by size (migration 0006: most groups hold one
    trip, and leaving them out spares the merge most of its index work). Those come from that
    partial index, walked from the top; its condition is written into the SQL as a literal,
    because the planner uses a partial index only when the query implies its condition, and a
    bound parameter does not in a generic plan. Single-trip groups (min_trips=1) follow in
    primary-key order, which is their order in the answer too (size first, then key).
    """
    keys = [groups.c[k] for k in GROUP_KEYS]
    where = []
    if region is not None:
        where.append(groups.c.region == region)
    if box is not None:
        c0 = math.ceil(box.min_lon / grid.deg - 0.5)
        c1 = math.floor(box.max_lon / grid.deg - 0.5)
        r0 = math.ceil(box.min_lat / grid.deg - 0.5)
        r1 = math.floor(box.max_lat / grid.deg - 0.5)
        where += [groups.c.o_cx.between(c0, c1), groups.c.o_cy.between(r0, r1)]
    rows: list[Any] = []
    after_trips = after[0] if after else None
    after_keys = sa.tuple_(*keys) > sa.tuple_(*after[1:]) if after else None
    if after_trips is None or after_trips >= 2:
        ranked = sa.select(groups).where(groups.c.trips >= sa.literal_column("2"), groups.c.trips >= min_trips, *where)
        if after_trips is not None:
            ranked = ranked.where(sa.or_(groups.c.trips < after_trips, sa.and_(groups.c.trips == after_trips, after_keys)))
        rows = list(conn.execute(ranked.order_by(groups.c.trips.desc(), *keys).limit(limit)).mappings())
    if min_trips <= 1 and len(rows) < limit:
        singles = sa.select(groups).where(groups.c.trips == sa.literal_column("1"), *where)
        if after_trips == 1:
            singles = singles.where(after_keys)
        rows += conn.execute(singles.order_by(*keys).limit(limit - len(rows))).mappings()
    return [_group_json(r, grid) for r in rows]


def _group_json(row: Any, grid: Grid) -> dict[str, Any]:
    start = row["tod"] * grid.hours
    return {
        "region": row["region"],
        "origin": {"lon": grid.centre(row["o_cx"]), "lat": grid.centre(row["o_cy"])},
        "destination": {"lon": grid.centre(row["d_cx"]), "lat": grid.centre(row["d_cy"])},
        "time_of_day": f"{start:02d}:00-{min(start + grid.hours, 24):02d}:00",
        "trips": int(row["trips"]),
        "_key": [int(row["trips"]), *(row[k] for k in GROUP_KEYS)],
    }


def get_trip(conn: Connection, trip_id: int) -> dict[str, Any]:
    row = conn.execute(sa.select(trips).where(trips.c.id == trip_id)).mappings().first()
    if row is None:
        raise NotFound(f"Trip {trip_id} not found.")
    return trip_json(row)


def list_trips(
    conn: Connection, grid: Grid, limit: int, after: int | None, region: str | None = None,
    datasource: str | None = None, day: dt.date | None = None, box: BBox | None = None,
) -> list[dict[str, Any]]:
    """Trips in id order after `after`, up to limit + 1 rows (the extra one marks a next page)."""
    query = sa.select(trips).order_by(trips.c.id).limit(limit + 1)
    if after is not None:
        query = query.where(trips.c.id > after)
    if region is not None:
        query = query.where(trips.c.region == region)
    if datasource is not None:
        query = query.where(trips.c.datasource == datasource)
    if day is not None:
        start = dt.datetime.combine(day, dt.time())
        query = query.where(trips.c.started_at >= start, trips.c.started_at < start + dt.timedelta(days=1))
    if box is not None:
        query = query.where(_inside(box, grid, "o"))
    return [trip_json(r) for r in conn.execute(query).mappings()]


def trip_json(row: Any) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
        "region": row["region"],
        "datasource": row["datasource"],
        "origin": {"lon": row["origin_lon"], "lat": row["origin_lat"]},
        "destination": {"lon": row["dest_lon"], "lat": row["dest_lat"]},
        "datetime": row["started_at"].isoformat() + "Z",
        "ingestion_id": row["ingestion_id"],
    }


def counts_by(conn: Connection, by: str) -> list[dict[str, Any]]:
    table = region_weeks if by == "region" else datasource_weeks
    column = table.c[by]
    rows = conn.execute(
        sa.select(column, sa.func.sum(table.c.trips)).group_by(column).having(sa.func.sum(table.c.trips) > 0)
        .order_by(column)
    ).all()
    return [{by: name, "trips": int(total)} for name, total in rows]
