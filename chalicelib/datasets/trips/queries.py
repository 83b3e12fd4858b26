"""The trips queries behind the routes: weekly series and averages, groups, lists, counts."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from chalicelib.datasets import checks
from chalicelib.datasets.trips.schema import (
    GROUP_KEYS,
    Grid,
    cell_weeks,
    datasource_weeks,
    groups,
    region_extents,
    region_weeks,
    trips,
)
from chalicelib.errors import BadRequest, NotFound

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

