"""The trips value parsers: the fast paths agree with the strict rules, value by value."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from chalicelib.datasets.trips import parsing as trips_parse

POINTS = [
    ("POINT (7.67 44.99)", (7.67, 44.99)),
    ("POINT (-179.5 -89.25)", (-179.5, -89.25)),
    ("POINT (1e-3 +2.5)", (0.001, 2.5)),
    ("point(7.6 45.0)", (7.6, 45.0)),
    ("  POINT ( 7.6   45.0 )  ", (7.6, 45.0)),
    ("POINT (nan 1)", None),
    ("POINT (inf 1)", None),
    ("POINT (1 2 3)", None),
    ("POINT (7.68)", None),
    ("POINT ()", None),
    ("POINT (abc def)", None),
    ("7.68 45.07", None),
    ("", None),
]


def _points(values: list[str]) -> list[tuple[float, float] | None]:
    lon, lat = trips_parse._points(pa.chunked_array([pa.array(values)]))
    return [None if a is None or b is None else (a, b) for a, b in zip(lon.to_pylist(), lat.to_pylist(), strict=True)]


@pytest.mark.parametrize(("text", "expected"), POINTS)
def test_each_point_alone_and_among_others(text, expected):
    assert _points([text]) == [expected]
    clean = ["POINT (7.1 45.1)"] * 3
    assert _points([*clean, text]) == [(7.1, 45.1)] * 3 + [expected]  # one odd value: the whole block re-read


def test_a_clean_block_takes_the_fast_path_with_exact_values():
    values = [f"POINT ({7 + i / 1e6:.15g} {45 - i / 1e7:.15g})" for i in range(1000)]
    assert trips_parse._points_fast(pa.chunked_array([pa.array(values)])) is not None
    assert _points(values) == [(7 + i / 1e6, 45 - i / 1e7) for i in range(1000)]


TIMES = [
    ("2018-05-21 02:54:04", dt.datetime(2018, 5, 21, 2, 54, 4)),
    ("2018-05-21T02:54:04", dt.datetime(2018, 5, 21, 2, 54, 4)),
    (" 2016-02-29 23:59:59 ", dt.datetime(2016, 2, 29, 23, 59, 59)),
    ("2018-02-30 10:00:00", None),
    ("2017-02-29 10:00:00", None),
    ("2018-13-01 08:00:00", None),
    ("2018-05-01 25:61:00", None),
    ("2018-05-01 23:60:00", None),
    ("2018-05-01 23:59:60", None),
    ("31/05/2018 10:00", None),
    ("2018-5-1 8:00:00", None),
    ("2018-05-01T08:00:00+25:00", None),
    ("2018-05-01 08:00:00.5", None),
    ("not a date", None),
    ("", None),
]


@pytest.mark.parametrize(("text", "expected"), TIMES)
def test_datetimes_are_strict(text, expected):
    got = trips_parse._timestamps(pa.chunked_array([pa.array(["2018-05-21 02:54:04", text])])).to_pylist()
    assert got == [dt.datetime(2018, 5, 21, 2, 54, 4), expected]
