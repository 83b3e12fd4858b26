"""Typing and validating a block of pr-reviews rows, vectorised (pyarrow compute; no loop per row).

What a cell may hold, and what becomes of it:
- `review_time`, `merge_time`: whole seconds, 0 or more (`3600`; `3600.0` too, as spreadsheets and
  pandas write whole numbers); at most MAX_SECONDS (ten years).
- `team`: any name of at most TEAM_CHARS characters without control characters (trimmed).
- `date`: `YYYY-MM-DD`, optionally followed by a time of day that is dropped (`2023-01-14 00:00:00`,
  `2023-01-14T00:00:00`); or an Excel serial day number (`44940` is 2023-01-14; a fraction, the time
  of day, is dropped); between 1970-01-01 and 2099-12-31 (chalicelib.datasets.checks).
- An empty cell is a missing value: stored as NULL and counted in the report, not a rejected row.
- A line whose four cells are all empty (a blank spreadsheet row, `,,,`) is skipped like a blank line.
- Anything else rejects the row, with a sentence naming the column, the value and what was expected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chalicelib.csvblock import Block
from chalicelib.datasets import checks
from chalicelib.datasets.base import Parsed
from chalicelib.datasets.pr_reviews.tables import TEAM_CHARS

#: Longest accepted time: ten years of seconds. No review waits longer, and every sum over millions
#: of rows stays far inside a 64-bit integer.
MAX_SECONDS = 10 * 365 * 86_400
#: Excel's day 0 is 1899-12-30, so serial 25569 is 1970-01-01 (Arrow's day 0).
EXCEL_EPOCH_SERIAL = 25_569

_WHOLE = r"^[0-9]+(?:\.0*)?$"
_NEGATIVE = r"^-\s*[0-9]+(?:\.[0-9]*)?$"
_ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[ T](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]+)?)?)?$"
_SERIAL = r"^[0-9]{1,7}(?:\.[0-9]+)?$"
_DATE_FIELDS = ((pc.year, 0, 4), (pc.month, 5, 7), (pc.day, 8, 10))

SECONDS_EXPECTED = "is not a whole number of seconds like 3600"
NEGATIVE = "is negative; a time is a whole number of seconds, 0 or more"
TOO_LONG = f"is more than ten years ({MAX_SECONDS} seconds)"
DATE_EXPECTED = "is not a date like 2023-01-14 (or an Excel serial day number like 44940)"


def parse(block: Block, ctx: Any = None, keep_errors: int = 20) -> Parsed:
    """Validate and type a block of pr-reviews rows; bad rows become (line, sentence) rejects."""
    t = block.table
    review, review_tests = seconds(t.column("review_time"))
    merge, merge_tests = seconds(t.column("merge_time"))
    team, team_tests = teams(t.column("team"))
    date, date_tests = dates(t.column("date"))
    tests = [
        *[("review_time", mask, reason) for reason, mask in review_tests],
        *[("team", mask, reason) for reason, mask in team_tests],
        *[("date", mask, reason) for reason, mask in date_tests],
        *[("merge_time", mask, reason) for reason, mask in merge_tests],
    ]
    ok = checks.all_ok([mask for _, mask, _ in tests], t.num_rows)
    blank = _all_empty(t)
    bad = np.flatnonzero(~ok & ~blank)
    rejects = [(int(block.lines[i]), _reject_message(t, tests, i)) for i in bad[:keep_errors]]
    keep = pa.array(ok & ~blank)
    table = pa.table({
        "review_time": review.filter(keep),
        "merge_time": merge.filter(keep),
        "team": team.filter(keep),
        "date": date.filter(keep),
    })
    return Parsed(table, rejects, len(bad))


def _empty(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(column)), 0)


def _all_empty(t: pa.Table) -> np.ndarray:
    blank = np.ones(t.num_rows, dtype=bool)
    for name in ("review_time", "merge_time", "team", "date"):
        blank &= _empty(t.column(name)).to_numpy(zero_copy_only=False).astype(bool)
    return blank


def seconds(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, list[tuple[str, Any]]]:
    """(int32 seconds, null where empty or bad; [(reason, ok mask)]) for a time column.

    A block whose every cell is empty or plain digits (as generated files are) is cast at once; any
    other block goes through the regular expressions that tell each kind of bad value apart.
    """
    text = pc.utf8_trim_whitespace(column)
    empty = pc.equal(pc.utf8_length(text), 0)
    fast = _whole_seconds(text, empty)
    if fast is not None:
        return fast
    whole = pc.match_substring_regex(text, _WHOLE)
    digits = pc.utf8_ltrim(pc.replace_substring_regex(text, r"\.0*$", ""), characters="0")
    fits = pc.less_equal(pc.utf8_length(digits), 10)  # no int64 overflow below; longer is over MAX anyway
    usable = pc.and_(whole, fits)
    value = pc.cast(pc.if_else(usable, pc.if_else(pc.equal(digits, ""), "0", digits), "0"), pa.int64())
    in_range = pc.and_(usable, pc.less_equal(value, MAX_SECONDS))
    typed = pc.if_else(in_range, value, pa.scalar(None, pa.int64())).cast(pa.int32())
    return typed, [
        (NEGATIVE, pc.invert(pc.match_substring_regex(text, _NEGATIVE))),
        (SECONDS_EXPECTED, pc.or_(empty, whole)),
        (TOO_LONG, pc.or_(empty, pc.or_(pc.invert(whole), in_range))),
    ]


def _whole_seconds(text: pa.ChunkedArray, empty: pa.ChunkedArray) -> tuple[pa.ChunkedArray, list] | None:
    try:
        value = pc.cast(pc.if_else(empty, "0", text), pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    signed = pc.or_(pc.starts_with(text, "-"), pc.starts_with(text, "+"))
    if pc.any(signed).as_py():  # '-5' is a negative time, '+5' not digits: the full rules say which
        return None
    in_range = pc.less_equal(value, MAX_SECONDS)
    typed = pc.if_else(pc.and_(pc.invert(empty), in_range), value, pa.scalar(None, pa.int64())).cast(pa.int32())
    return typed, [(TOO_LONG, pc.or_(empty, in_range))]


def teams(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, list[tuple[str, Any]]]:
    """(team name, null where empty; [(reason, ok mask)]): an empty team is a missing value."""
    values, found = checks.text(column, TEAM_CHARS)
    empty = pc.equal(pc.utf8_length(values), 0)
    typed = pc.if_else(empty, pa.scalar(None, pa.string()), values)
    return typed, [(reason, mask) for reason, mask in found.items() if reason != "is empty"]


def dates(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, list[tuple[str, Any]]]:
    """(date32, null where empty or bad; [(reason, ok mask)]) from ISO dates or Excel serial days."""
    text = pc.utf8_trim_whitespace(column)
    empty = pc.equal(pc.utf8_length(text), 0)
    iso = _iso_dates(text)
    serial = _serial_dates(text)
    parsed = pc.coalesce(iso, serial)
    readable = pc.is_valid(parsed)
    in_window = checks.in_date_window(parsed)
    typed = pc.if_else(in_window, parsed, pa.scalar(None, pa.date32()))
    return typed, [
        (DATE_EXPECTED, pc.or_(empty, readable)),
        (f"is outside the accepted dates ({checks.window_sentence()})", pc.or_(empty, pc.or_(pc.invert(readable), in_window))),
    ]


def _iso_dates(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """`YYYY-MM-DD[ HH:MM[:SS]]` as a date (the time of day dropped); null otherwise.

    Arrow's cast to date32 checks each date but fails the whole block on one impossible date
    (2023-02-30); such a block is read again field by field. There, Arrow's strptime rolls 02-30
    over to 03-02, so a date only counts if its parsed year, month and day equal the digits written.
    """
    shaped = pc.match_substring_regex(text, _ISO_DATE)
    day = pc.if_else(shaped, pc.utf8_slice_codeunits(text, 0, 10), "1970-01-01")
    try:
        return pc.if_else(shaped, pc.cast(day, pa.date32()), pa.scalar(None, pa.date32()))
    except pa.ArrowInvalid:
        pass
    parsed = pc.strptime(day, format="%Y-%m-%d", unit="s", error_is_null=True)
    exact = shaped
    for field, start, stop in _DATE_FIELDS:
        written = pc.cast(pc.utf8_slice_codeunits(day, start, stop), pa.int64())
        exact = pc.and_(exact, pc.fill_null(pc.equal(field(parsed), written), False))
    return pc.if_else(exact, pc.cast(parsed, pa.date32()), pa.scalar(None, pa.date32()))


def _serial_dates(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """Excel serial day numbers (days since 1899-12-30) as dates; null otherwise."""
    shaped = pc.match_substring_regex(text, _SERIAL)
    whole = pc.if_else(shaped, pc.replace_substring_regex(text, r"\.[0-9]*$", ""), "0")
    days = pc.subtract(pc.cast(whole, pa.int32()), EXCEL_EPOCH_SERIAL)
    return pc.if_else(shaped, pc.cast(pc.cast(days, pa.int32()), pa.date32()), pa.scalar(None, pa.date32()))


def _reject_message(t: pa.Table, tests: list[tuple[str, Any, str]], i: int) -> str:
    """Why row i was rejected, naming the first failing column and its value (rejected rows only)."""
    for name, mask, reason in tests:
        if not mask[i].as_py():
            return f"{name} {checks.shown(t.column(name)[i].as_py())} {reason}"
    return "the row could not be read"
