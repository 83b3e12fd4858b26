"""Vectorised checks every dataset shares, so a value the database would refuse (or a date no query
can span) is a rejected row with its line number, the same on PostgreSQL and SQLite.

Each check takes Arrow columns and returns a boolean mask (True: the value is fine) or the cleaned
column; the dataset turns the first failing mask of a rejected row into its sentence.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Dates and times outside [DATE_MIN, DATE_MAX) are rejected: no dataset holds data from before
#: 1970 or after 2099, and a window of 130 years keeps every weekly or hourly range computable.
DATE_MIN = dt.date(1970, 1, 1)
DATE_MAX = dt.date(2100, 1, 1)
_CONTROL = r"[\x00-\x08\x0a-\x1f\x7f]"  # C0 controls but tab: PostgreSQL refuses NUL, the rest is junk


def text(column: pa.ChunkedArray | pa.Array, max_chars: int, trim: bool = True) -> tuple[pa.ChunkedArray, dict]:
    """(cleaned text, {reason: ok mask}) for a text column stored in a column of `max_chars`.

    The reasons are checked in order: empty, too long, holds a control character.
    """
    values = pc.utf8_trim_whitespace(column) if trim else column
    length = pc.utf8_length(values)
    return values, {
        "is empty": pc.greater(length, 0),
        f"is longer than {max_chars} characters": pc.less_equal(length, max_chars),
        "holds a control character": pc.invert(pc.match_substring_regex(values, _CONTROL)),
    }


def in_date_window(values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """True where a date or timestamp (null: False) lies in [DATE_MIN, DATE_MAX)."""
    if pa.types.is_timestamp(values.type):
        low = pa.scalar(dt.datetime.combine(DATE_MIN, dt.time()), values.type)
        high = pa.scalar(dt.datetime.combine(DATE_MAX, dt.time()), values.type)
    else:
        low, high = pa.scalar(DATE_MIN, values.type), pa.scalar(DATE_MAX, values.type)
    return pc.fill_null(pc.and_(pc.greater_equal(values, low), pc.less(values, high)), False)


def window_sentence() -> str:
    return f"between {DATE_MIN.isoformat()} and {(DATE_MAX - dt.timedelta(days=1)).isoformat()}"


def all_ok(masks: list[pa.ChunkedArray | pa.Array], rows: int) -> np.ndarray:
    """The rows every mask accepts, as a numpy boolean array (null counts as a failure)."""
    ok = np.ones(rows, dtype=bool)
    for mask in masks:
        ok &= pc.fill_null(mask, False).to_numpy(zero_copy_only=False).astype(bool)
    return ok


def shown(value: object, width: int = 80) -> str:
    """A value quoted for an error sentence, cut to `width` characters."""
    text_value = "" if value is None else str(value)
    if len(text_value) > width:
        text_value = text_value[: width - 3] + "..."
    return repr(text_value)
