"""The pr-reviews value rules, value by value: times, dates (ISO and Excel serial), teams, empty cells."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from chalicelib.csvblock import Block
from chalicelib.datasets.pr_reviews import parsing as p

SECONDS = [
    ("0", 0, None),
    ("3600", 3600, None),
    (" 12 ", 12, None),
    ("3600.0", 3600, None),  # pandas and spreadsheets write whole numbers so
    ("007", 7, None),
    ("315360000", 315_360_000, None),
    ("", None, None),  # a missing value, not an error
    ("12.5", None, p.SECONDS_EXPECTED),
    ("abc", None, p.SECONDS_EXPECTED),
    ("1e3", None, p.SECONDS_EXPECTED),
    ("3,600", None, p.SECONDS_EXPECTED),
    ("-5", None, p.NEGATIVE),
    ("-0.5", None, p.NEGATIVE),
    ("315360001", None, p.TOO_LONG),
    ("99999999999999999999999", None, p.TOO_LONG),
]


def _failed(tests: list, i: int) -> str | None:
    return next((reason for reason, mask in tests if not mask[i].as_py()), None)


@pytest.mark.parametrize(("text", "value", "reason"), SECONDS)
def test_seconds(text, value, reason):
    typed, tests = p.seconds(pa.chunked_array([pa.array(["1", text, "2"])]))
    assert typed.to_pylist() == [1, value, 2]
    assert _failed(tests, 1) == reason


DATES = [
    ("2023-01-14", dt.date(2023, 1, 14), None),
    (" 2024-02-29 ", dt.date(2024, 2, 29), None),
    ("2023-01-14 00:00:00", dt.date(2023, 1, 14), None),
    ("2023-01-14T17:30", dt.date(2023, 1, 14), None),
    ("44940", dt.date(2023, 1, 14), None),  # Excel's serial day number
    ("44940.75", dt.date(2023, 1, 14), None),  # with a time of day, dropped
    ("25569", dt.date(1970, 1, 1), None),
    ("73050", dt.date(2099, 12, 31), None),
    ("", None, None),
    ("2023-02-30", None, p.DATE_EXPECTED),
    ("2023-02-29", None, p.DATE_EXPECTED),
    ("2023-13-01", None, p.DATE_EXPECTED),
    ("14/01/2023", None, p.DATE_EXPECTED),
    ("2023-01-14 25:00", None, p.DATE_EXPECTED),
    ("yesterday", None, p.DATE_EXPECTED),
    ("-44940", None, p.DATE_EXPECTED),
    ("1969-12-31", None, "outside"),
    ("25568", None, "outside"),
    ("73051", None, "outside"),
    ("9999999", None, "outside"),
]


@pytest.mark.parametrize(("text", "value", "reason"), DATES)
def test_dates(text, value, reason):
    typed, tests = p.dates(pa.chunked_array([pa.array(["2023-01-01", text])]))
    assert typed.to_pylist() == [dt.date(2023, 1, 1), value]
    failed = _failed(tests, 1)
    assert (failed is None) == (reason is None)
    if reason:
        assert reason in failed


def _block(rows: list[tuple[str, str, str, str]]) -> Block:
    columns = list(zip(*rows, strict=True)) if rows else [[], [], [], []]
    table = pa.table({name: pa.array(list(values), pa.string())
                      for name, values in zip(("review_time", "team", "date", "merge_time"), columns, strict=True)})
    return Block(table, np.arange(2, len(rows) + 2), len(rows) + 1)


def test_a_block_keeps_missing_values_skips_blank_rows_and_rejects_bad_ones_with_their_lines():
    block = _block([
        ("10", "Platform", "2023-01-14", "5"),
        ("", "", "", ""),  # a blank spreadsheet row: skipped
        ("", "Platform", "44941", ""),  # missing times: kept
        ("abc", "Platform", "2023-01-14", "5"),
        ("10", "", "2023-01-14", "-3"),
        ("10", "Data\x01Service", "2023-01-14", "5"),
        ("10", "x" * 129, "2023-01-14", "5"),
        ("10", "Platform", "2023-02-30", "5"),
        (" 7 ", "  Application ", "", "0"),
    ])
    parsed = p.parse(block, None, keep_errors=20)
    assert parsed.table.to_pylist() == [
        {"review_time": 10, "merge_time": 5, "team": "Platform", "date": dt.date(2023, 1, 14)},
        {"review_time": None, "merge_time": None, "team": "Platform", "date": dt.date(2023, 1, 15)},
        {"review_time": 7, "merge_time": 0, "team": "Application", "date": None},
    ]
    assert parsed.rejected == 5
    assert parsed.rejects == [
        (5, f"review_time 'abc' {p.SECONDS_EXPECTED}"),
        (6, f"merge_time '-3' {p.NEGATIVE}"),
        (7, "team 'Data\\x01Service' holds a control character"),
        (8, f"team '{'x' * 77}...' is longer than 128 characters"),
        (9, f"date '2023-02-30' {p.DATE_EXPECTED}"),
    ]


def test_keep_errors_bounds_the_sentences_not_the_count():
    parsed = p.parse(_block([("x", "A", "2023-01-01", "1")] * 30), None, keep_errors=3)
    assert parsed.rejected == 30 and len(parsed.rejects) == 3 and parsed.table.num_rows == 0
