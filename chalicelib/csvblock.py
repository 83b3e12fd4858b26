"""Parsing one block of CSV lines into string columns, keeping each row's line number.

pyarrow does the parsing (C++, no Python per row). It skips blank lines and hands rows with the
wrong number of fields to a callback, numbering them among the non-blank lines only; the line numbers
users see are recovered here with numpy from the newline positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from chalicelib.errors import FileRejected


@dataclass
class Block:
    """A parsed block: string columns, the 1-based line (within the block) of each row, bad lines."""

    table: pa.Table
    lines: np.ndarray
    line_count: int
    rejects: list[tuple[int, str]] = field(default_factory=list)


def line_layout(data: bytes) -> tuple[int, np.ndarray]:
    """(number of lines, 1-based numbers of the non-blank lines). A line of only '\\r' is blank."""
    if not data:
        return 0, np.empty(0, dtype=np.int64)
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(buf)]))
    if starts[-1] == len(buf):
        starts, ends = starts[:-1], ends[:-1]
    lengths = ends - starts
    has_cr = np.zeros(len(starts), dtype=bool)
    nonempty = lengths > 0
    has_cr[nonempty] = buf[ends[nonempty] - 1] == 13
    blank = (lengths - has_cr) == 0
    return len(starts), np.flatnonzero(~blank) + 1


def parse(data: bytes, names: list[str], skip_header: bool) -> Block:
    """Parse `data` (whole lines) into string columns named `names`."""
    line_count, nonblank = line_layout(data)
    if len(nonblank) <= (1 if skip_header else 0):
        empty = pa.table({n: pa.array([], pa.string()) for n in names})
        return Block(empty, np.empty(0, dtype=np.int64), line_count)
    bad: list[tuple[int, int, int]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad.append((row.number or 0, row.expected_columns, row.actual_columns))
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),  # zero-copy: a Python file object would be read into a second copy
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=1 if skip_header else 0, use_threads=False,
                block_size=1 << 20,
            ),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        raise FileRejected(_explain(exc)) from None
    rows = nonblank[1:] if skip_header and len(nonblank) else nonblank
    rejects = []
    if bad:
        bad_lines = np.array([nonblank[n - 1] if 0 < n <= len(nonblank) else 0 for n, _, _ in bad])
        rejects = [
            (int(line), f"expected {expected} fields, found {actual}")
            for line, (_, expected, actual) in zip(bad_lines, bad, strict=True)
        ]
        rows = rows[~np.isin(rows, bad_lines)]
    if len(rows) != table.num_rows:  # e.g. a quoted field holding a line break: number rows in order
        rows = np.arange(1, table.num_rows + 1) + (1 if skip_header else 0)
    return Block(table, rows, line_count, rejects)


def release_memory() -> None:
    """Hand the memory Arrow keeps cached after a block back to the system (bounded peak RSS).

    With ARROW_DEFAULT_MEMORY_POOL=system in the environment (read when pyarrow is first imported)
    this trims the heap (malloc_trim); with the default mimalloc it frees its cached pages.
    """
    pa.default_memory_pool().release_unused()


def _explain(exc: Exception) -> str:
    text = str(exc)
    if "UTF8" in text or "utf8" in text.lower():
        return "The file is not UTF-8 text; save it as UTF-8 (with or without a BOM) and upload it again."
    return f"The file could not be parsed as CSV: {text.splitlines()[0]}"
