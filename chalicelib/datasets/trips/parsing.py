"""Parsing a block of trips: strict WKT points and datetimes, vectorised; the derived columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chalicelib.csvblock import Block
from chalicelib.datasets import checks
from chalicelib.datasets.base import Parsed
from chalicelib.datasets.trips.schema import TEXT_CHARS, Grid

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_POINT = rf"(?i)^\s*POINT\s*\(\s*(?P<lon>{_NUM})\s+(?P<lat>{_NUM})\s*\)\s*$"
_EPOCH_MONDAY_OFFSET = 3  # 1970-01-01 was a Thursday: (days + 3) % 7 is 0 on Mondays


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


