"""Parsing one block of CSV lines into string columns, keeping each row's line number.

pyarrow does the parsing (C++, no Python per row). It skips blank lines and hands rows with the
wrong number of fields to a callback, numbering them among the non-blank lines only; the line numbers
users see are recovered here with numpy from the newline positions.

sluice reads one record per line. Before pyarrow sees a block, two kinds of line are taken out
(blanked, so the numbering stays) and rejected with their line numbers:
- a line longer than MAX_LINE_BYTES (one huge line must not cost unbounded memory);
- every line of a record whose quoted field spans lines. Such a field opens on a line holding an odd
  number of double quotes and closes on the next such line; every line from the opening one to the
  closing one is rejected. Whether the block starts inside such a field (`start_quoted`) is decided
  by the quotes of every earlier line of the file (the pipeline keeps the count per chunk), so any
  split of a file into chunks rejects the same lines and no fragment of a record becomes a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from chalicelib.errors import FileRejected

#: The longest line sluice reads (bytes, newline excluded); longer lines are rejected rows.
MAX_LINE_BYTES = 1024 * 1024
QUOTE = 34
#: Rejected lines kept with their sentence per block (the ingestion keeps fewer: MAX_ERRORS_KEPT).
KEEP_REJECTS = 100


@dataclass
class Block:
    """A parsed block: string columns, the 1-based line (within the block) of each row, bad lines.

    `quotes` counts the double quotes on the block's lines (over-long lines excluded), whose parity
    tells whether the next block starts inside a quoted field; `end_quoted` is that answer.
    """

    table: pa.Table
    lines: np.ndarray
    line_count: int
    rejects: list[tuple[int, str]] = field(default_factory=list)
    quotes: int = 0
    end_quoted: bool = False
    rejected: int = 0  # every rejected line; `rejects` keeps the first KEEP_REJECTS of them


#: Blocks are screened in slices of about this many bytes, so the per-line arrays stay small even
#: for a block of millions of tiny or blank lines (a gzip bomb of newlines).
SLICE_BYTES = 256 * 1024


@dataclass
class Layout:
    """Where each line of a slice starts and ends (the newline excluded), as offsets."""

    starts: np.ndarray
    ends: np.ndarray

    @property
    def count(self) -> int:
        return len(self.starts)


def layout(buf: np.ndarray) -> Layout:
    newlines = np.flatnonzero(buf == 10).astype(np.int32)
    starts = np.concatenate((np.zeros(1, np.int32), newlines + 1))
    ends = np.concatenate((newlines, np.array([len(buf)], np.int32)))
    del newlines
    if starts[-1] == len(buf):
        starts, ends = starts[:-1], ends[:-1]
    return Layout(starts, ends)


def nonblank_lines(buf: np.ndarray, lines: Layout) -> np.ndarray:
    """1-based numbers of the non-blank lines; a line of only '\\r' is blank."""
    lengths = lines.ends - lines.starts
    has_cr = np.zeros(lines.count, dtype=bool)
    nonempty = lengths > 0
    has_cr[nonempty] = buf[lines.ends[nonempty] - 1] == 13
    return np.flatnonzero((lengths - has_cr) != 0) + 1


def slices(data: bytes, size: int = SLICE_BYTES) -> list[tuple[int, int]]:
    """[start, end) byte ranges of whole lines, each about `size` bytes (a long line is one slice)."""
    out, start = [], 0
    while start < len(data):
        end = data.find(b"\n", min(len(data), start + size) - 1)
        end = len(data) if end < 0 else end + 1
        out.append((start, end))
        start = end
    return out


def quote_counts(buf: np.ndarray, lines: Layout) -> np.ndarray:
    """The number of double quotes on each line."""
    quotes = np.flatnonzero(buf == QUOTE)
    if len(quotes) == 0:
        return np.zeros(lines.count, dtype=np.int64)
    return np.searchsorted(quotes, lines.ends) - np.searchsorted(quotes, lines.starts)


@dataclass
class _Screened:
    """What screening a block found: the data to parse, the lines it keeps, the lines it took out."""

    data: bytes
    line_count: int = 0
    nonblank: list[np.ndarray] = field(default_factory=list)
    rejects: list[tuple[int, str]] = field(default_factory=list)
    rejected: int = 0
    quotes: int = 0
    end_quoted: bool = False


def _screen(data: bytes, start_quoted: bool, max_line_bytes: int) -> _Screened:
    """Take out (blank) the lines sluice does not parse, slice by slice: over-long ones and the lines
    of records whose quoted field spans lines; number the lines that stay."""
    out = _Screened(data, end_quoted=start_quoted)
    parts: list[bytes | tuple[int, int]] = []  # a slice's new bytes, or its range if unchanged
    whole = np.frombuffer(data, dtype=np.uint8)
    for start, end in slices(data):
        buf = whole[start:end]
        lines = layout(buf)
        count = lines.count
        piece = _screen_slice(buf, lines, out, max_line_bytes)
        if piece is not None:
            buf = np.frombuffer(piece, dtype=np.uint8)
            lines = layout(buf)
        out.nonblank.append(nonblank_lines(buf, lines) + out.line_count)
        out.line_count += count
        parts.append(piece if piece is not None else (start, end))
    if any(isinstance(p, bytes) for p in parts):
        out.data = b"".join(p if isinstance(p, bytes) else data[p[0]:p[1]] for p in parts)
    return out


def _screen_slice(buf: np.ndarray, lines: Layout, out: _Screened, max_line_bytes: int) -> bytes | None:
    """Screen one slice: None if every line stays, else its bytes with the bad lines blanked."""
    overlong = (lines.ends - lines.starts) > max_line_bytes
    counts = quote_counts(buf, lines)
    counts[overlong] = 0
    odd = (counts % 2) == 1
    flips = np.cumsum(odd) - odd  # odd lines before each line in the slice
    inside = ((flips + int(out.end_quoted)) % 2) == 1  # the line starts inside a quoted field
    out.quotes += int(counts.sum())
    out.end_quoted = bool((int(odd.sum()) + int(out.end_quoted)) % 2)
    bad = overlong | inside | odd
    if not bad.any():
        return None
    out.rejected += int(bad.sum())
    for i in np.flatnonzero(bad)[: max(0, KEEP_REJECTS - len(out.rejects))]:
        out.rejects.append((out.line_count + int(i) + 1, _why(lines, i, overlong, inside, odd, max_line_bytes)))
    drop = np.zeros(len(buf) + 1, dtype=np.int32)
    np.add.at(drop, lines.starts[bad], 1)
    np.add.at(drop, lines.ends[bad], -1)
    keep = np.cumsum(drop[:-1]) == 0
    return buf[keep].tobytes()


def _why(lines: Layout, i: int, overlong: np.ndarray, inside: np.ndarray, odd: np.ndarray, limit: int) -> str:
    if overlong[i]:
        return f"the line is {int(lines.ends[i] - lines.starts[i]):,} bytes long, more than MAX_LINE_BYTES ({limit:,})"
    if inside[i] and odd[i]:
        return ("a quoted field that began on an earlier line closes here; sluice reads one record "
                "per line, so the whole record is rejected (remove line breaks inside quotes)")
    if inside[i]:
        return ("this line is inside a quoted field that began on an earlier line; sluice reads one "
                "record per line, so the whole record is rejected (remove line breaks inside quotes)")
    return ("a quoted field opens on this line and does not close on it (a line break inside "
            "quotes, or a stray double quote); sluice reads one record per line")


def parse(
    data: bytes, names: list[str], skip_header: bool, start_quoted: bool = False,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Block:
    """Parse `data` (whole lines) into string columns named `names`."""
    if not data:
        return Block(_empty(names), np.empty(0, dtype=np.int64), 0, end_quoted=start_quoted)
    screened = _screen(data, start_quoted, max_line_bytes)
    data = screened.data
    nonblank = np.concatenate(screened.nonblank) if screened.nonblank else np.empty(0, dtype=np.int64)
    line_count = screened.line_count
    found = (screened.rejects, screened.quotes, screened.end_quoted)
    if skip_header and screened.rejects and screened.rejects[0][0] == 1:
        skip_header = False  # the header line itself was taken out
    if len(nonblank) <= (1 if skip_header else 0):
        return Block(_empty(names), np.empty(0, dtype=np.int64), line_count, *found, screened.rejected)
    bad: list[tuple[int, int, int]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        bad.append((row.number or 0, row.expected_columns, row.actual_columns))
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),  # zero-copy: a Python file object would be read into a second copy
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=1 if skip_header else 0, use_threads=False,
                block_size=max(1 << 20, 2 * max_line_bytes + 1024),
            ),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        raise FileRejected(_explain(exc)) from None
    rows = nonblank[1:] if skip_header and len(nonblank) else nonblank
    rejects = list(screened.rejects)
    if bad:
        bad_lines = np.array([nonblank[n - 1] if 0 < n <= len(nonblank) else 0 for n, _, _ in bad])
        rejects += [
            (int(line), f"expected {expected} fields, found {actual}")
            for line, (_, expected, actual) in zip(bad_lines, bad, strict=True)
        ]
        rows = rows[~np.isin(rows, bad_lines)]
    if len(rows) != table.num_rows:  # cannot happen once spanning records are screened; stay safe
        rows = np.arange(1, table.num_rows + 1) + (1 if skip_header else 0)
    return Block(table, rows, line_count, sorted(rejects)[:KEEP_REJECTS], screened.quotes, screened.end_quoted,
                 screened.rejected + len(bad))


def _empty(names: list[str]) -> pa.Table:
    return pa.table({n: pa.array([], pa.string()) for n in names})


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
