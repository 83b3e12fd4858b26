"""Synthetic `plays/` CSV files shaped like a music-royalties play log (DESIGN.md, "The four CSV
datasets", 4): `Song,Date,Number of Plays`.

    python -m tools.generate_plays OUT (--rows N | --bytes B) [--seed S] [--songs 100000] [--zipf 1.1]
        [--start 2021-03-01 --end 2021-03-31] [--crlf] [--bom] [--no-final-newline] [--gzip]
        [--bad-rows 0.01] [--header "song,DATE,number of plays"]

- A catalogue of `--songs` names, fixed by the seed: words in several scripts (accents, Cyrillic,
  Greek, CJK, Hangul, emoji), some names with commas (quoted), double quotes (quoted and doubled),
  parentheses, apostrophes and inner spaces.
- Each row's song is drawn from a Zipf law over the catalogue (a few hits, a long tail), so the rows
  of one song are scattered through the whole file; the date is uniform over [start, end]; the
  play count is small and skewed (1 + a geometric draw).
- `--bad-rows` replaces that share of rows with broken ones (a non-integer or negative play count,
  an impossible date, an empty song), still three fields each.

Rows are made in fixed-size blocks, each fully vectorised (numpy draws, pyarrow string kernels) and
written straight from the Arrow data buffer, so memory stays bounded whatever the size. Each block
draws from its own generator seeded by (seed, block number): the same seed and options give a
byte-identical file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip as gziplib
import os
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BLOCK_ROWS = 50_000
WORKERS = 2  # blocks are built concurrently: numpy and Arrow kernels release the GIL
HEADER = "Song,Date,Number of Plays"
BOM = b"\xef\xbb\xbf"

#: Words song names are made of: plain English, accented Latin, other scripts, and one emoji.
WORDS = (
    "Love", "Night", "Heart", "Fire", "Dance", "Rain", "Summer", "Blue", "Dream", "Home", "Wild", "Gold",
    "River", "Moon", "Light", "Shadow", "Stay", "Run", "Forever", "Tonight", "Baby", "Girl", "Boy", "City",
    "Road", "Sky", "Ocean", "Star", "Angel", "Ghost", "Sweet", "Lonely", "Electric", "Paper", "Glass",
    "Café", "Niño", "Corazón", "Señorita", "Déjà", "Vu", "Über", "Straße", "Ça", "Ira", "Été", "Fiancée",
    "Ångström", "Smörgås", "Żółć", "Łódź", "Ölü", "Ñandú", "Mañana", "Ação", "Coração",
    "Любовь", "Ночь", "Звезда", "Όνειρο", "Θάλασσα", "夜", "東京", "さくら", "愛してる", "사랑", "별빛",
    "שלום", "حب", "🎵",
)
#: Pieces appended to some names, several of which need CSV quoting.
SUFFIXES = (
    "", "", "", "", "", "", "", "", "", "",
    " (Remix)", " (feat. DJ Ñ)", ", Pt. 2", ", Op. 125", ' "Live"', " - Radio Edit", " (Live, 1994)",
    ' ("Unplugged")', " 'Acoustic'", ", \"Demo\", Take 3",
)
BAD_PLAYS = ("12.5", "abc", "", "1e3", "-3", "-1", "five", "3 plays")
BAD_DATES = ("2021-02-30", "2021-13-01", "2021-04-31", "21-03-01", "2021/03/01", "", "2021-3-1", "not a date")
BAD_KINDS = 3  # bad play count, bad date, empty song


@dataclass(frozen=True)
class CsvFormat:
    """Byte-level layout of a file."""

    crlf: bool = False
    bom: bool = False
    final_newline: bool = True
    gzip: bool = False
    header: str = HEADER
    gzip_level: int = 6

    @property
    def terminator(self) -> str:
        return "\r\n" if self.crlf else "\n"

    def preamble(self) -> bytes:
        return (BOM if self.bom else b"") + (self.header + self.terminator).encode()


@dataclass(frozen=True)
class Plan:
    """Everything fixed for a whole file: the catalogue's CSV fields, its Zipf law, the days."""

    seed: int
    fields: pa.Array  # each song as a CSV field (quoted where needed)
    cdf: np.ndarray  # cumulative Zipf probabilities over the catalogue
    days: pa.Array  # 'YYYY-MM-DD' strings
    bad_rows: float
    fmt: CsvFormat


def catalogue(seed: int, songs: int) -> pa.Array:
    """`songs` names, fixed by the seed: one to four words and an optional suffix."""
    rng = np.random.default_rng([seed, 0])
    words = pa.array(WORDS)
    count = rng.integers(1, 5, size=songs)
    parts = [words.take(rng.integers(0, len(WORDS), size=songs)) for _ in range(4)]
    name = parts[0]
    for k in range(1, 4):
        longer = pc.binary_join_element_wise(name, parts[k], " ")
        name = pc.if_else(pa.array(count > k), longer, name)
    suffix = pa.array(SUFFIXES).take(rng.integers(0, len(SUFFIXES), size=songs))
    # A number in a few names keeps the catalogue from collapsing onto the same word pairs.
    numbered = pc.binary_join_element_wise(name, pa.array(np.arange(songs).astype(str)), " No. ")
    name = pc.if_else(pa.array(rng.random(songs) < 0.3), numbered, name)
    return pc.binary_join_element_wise(name, suffix, "")


def csv_fields(names: pa.Array) -> pa.Array:
    """Names as CSV fields: quoted, with inner quotes doubled, where they hold a comma or a quote."""
    needs = pc.match_substring_regex(names, r'[,"]')
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(names, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, names)


def zipf_cdf(songs: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, songs + 1, dtype=np.float64) ** exponent
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def make_plan(seed: int, songs: int, exponent: float, start: dt.date, end: dt.date, bad_rows: float,
              fmt: CsvFormat) -> Plan:
    if songs < 1:
        raise ValueError("songs must be at least 1")
    if end < start:
        raise ValueError("end date is before start date")
    if not 0.0 <= bad_rows <= 1.0:
        raise ValueError("bad_rows is a fraction between 0 and 1")
    days = pa.array([(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)])
    return Plan(seed, csv_fields(catalogue(seed, songs)), zipf_cdf(songs, exponent), days, bad_rows, fmt)


def make_block(plan: Plan, block_no: int, n: int) -> tuple[pa.Array, np.ndarray]:
    """`n` finished lines (each ending in the terminator), deterministic in (seed, block_no), and
    which of them are deliberately broken."""
    rng = np.random.default_rng([plan.seed, 1, block_no])
    song = np.searchsorted(plan.cdf, rng.random(n), side="right").clip(0, len(plan.cdf) - 1)
    day = rng.integers(0, len(plan.days), size=n)
    plays = rng.geometric(0.05, size=n) - 1  # 0 or more, mean 19
    song_field = plan.fields.take(song)
    day_field = plan.days.take(day)
    plays_field = pa.array(plays).cast(pa.string())
    bad = np.zeros(n, dtype=bool)
    if plan.bad_rows > 0:
        bad_rng = np.random.default_rng([plan.seed, 2, block_no])
        kind = np.where(bad_rng.random(n) < plan.bad_rows, bad_rng.integers(0, BAD_KINDS, size=n), -1)
        bad = kind >= 0
        plays_field = _replace(kind == 0, _pick(bad_rng, BAD_PLAYS, n), plays_field)
        day_field = _replace(kind == 1, _pick(bad_rng, BAD_DATES, n), day_field)
        song_field = _replace(kind == 2, pa.scalar(""), song_field)
    end = pa.array(np.full(n, plan.fmt.terminator))
    lines = pc.binary_join_element_wise(song_field, day_field, plays_field, ",")
    return pc.binary_join_element_wise(lines, end, ""), bad


def _pick(rng: np.random.Generator, values: Sequence[str], n: int) -> pa.Array:
    return pa.array(values).take(rng.integers(0, len(values), size=n))


def _replace(mask: np.ndarray, replacement: pa.Array | pa.Scalar, original: pa.Array) -> pa.Array:
    if not mask.any():
        return original
    return pc.if_else(pa.array(mask), replacement, original)


def lines_bytes(lines: pa.Array) -> memoryview:
    """The concatenated text of a string array, without copying: its data buffer between offsets."""
    if len(lines) == 0:
        return memoryview(b"")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    return memoryview(lines.buffers()[2])[int(offsets[0]):int(offsets[-1])]


def build_blocks(plan: Plan, block_rows: int, workers: int) -> Iterator[tuple[pa.Array, np.ndarray]]:
    """Blocks in file order, endlessly; at most `workers` + 1 alive at once (bounds memory)."""
    block_no = 0
    if workers <= 1:
        while True:
            yield make_block(plan, block_no, block_rows)
            block_no += 1
    with ThreadPoolExecutor(workers) as pool:
        queue: deque[Future[tuple[pa.Array, np.ndarray]]] = deque()
        while True:
            while len(queue) <= workers:
                queue.append(pool.submit(make_block, plan, block_no, block_rows))
                block_no += 1
            yield queue.popleft().result()


class _Sink:
    """A binary file, gzipped or not."""

    def __init__(self, path: str | os.PathLike[str], fmt: CsvFormat) -> None:
        self.raw: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.out: BinaryIO = self.raw
        if fmt.gzip:  # no name and mtime 0 in the gzip header: identical bytes for the same input
            self.out = gziplib.GzipFile(filename="", mode="wb", fileobj=self.raw, mtime=0,
                                        compresslevel=fmt.gzip_level)  # type: ignore[assignment]
        self.written = 0

    def write(self, data: bytes | memoryview) -> None:
        self.out.write(data)
        self.written += len(data)

    def close(self) -> None:
        if self.out is not self.raw:
            self.out.close()
        self.raw.close()


def generate(path: str | os.PathLike[str], rows: int | None = None, seed: int = 0, *, min_bytes: int | None = None,
             songs: int = 100_000, zipf: float = 1.1, start: dt.date | str = "2021-03-01",
             end: dt.date | str = "2021-03-31", bad_rows: float = 0.0, block_rows: int = BLOCK_ROWS,
             workers: int = WORKERS, crlf: bool = False, bom: bool = False, final_newline: bool = True,
             gzip: bool | None = None, header: str = HEADER, gzip_level: int = 6) -> dict[str, object]:
    """Write a plays file of exactly `rows` rows, or of whole blocks until at least `min_bytes` of CSV
    text (before gzip), and return {path, rows, bad_rows, bytes (on disk)}.

    The rows are a prefix of one endless seeded sequence, so a file of N rows is the first N rows of
    any larger file with the same seed and options.
    """
    if (rows is None) == (min_bytes is None):
        raise ValueError("give exactly one of rows and min_bytes")
    if (rows is not None and rows < 0) or block_rows <= 0:
        raise ValueError("rows must be >= 0 and block_rows > 0")
    gz = os.fspath(path).endswith(".gz") if gzip is None else gzip
    fmt = CsvFormat(crlf, bom, final_newline, gz, header, gzip_level)
    plan = make_plan(seed, songs, zipf, _as_date(start), _as_date(end), bad_rows, fmt)
    sink = _Sink(path, fmt)
    done = bad = 0
    term = len(fmt.terminator)
    try:
        empty = rows == 0 and not final_newline
        sink.write(fmt.preamble()[:-term] if empty else fmt.preamble())
        blocks = build_blocks(plan, block_rows, workers)
        while (rows is not None and done < rows) or (min_bytes is not None and sink.written < min_bytes):
            lines, broken = next(blocks)
            if rows is not None and rows - done < len(lines):
                lines, broken = lines.slice(0, rows - done), broken[: rows - done]
            data = lines_bytes(lines)
            last = (rows is not None and done + len(lines) >= rows) or (
                min_bytes is not None and sink.written + len(data) >= min_bytes)
            if last and not final_newline:
                data = data[:-term]
            sink.write(data)
            done += len(lines)
            bad += int(broken.sum())
        blocks.close()
    finally:
        sink.close()
    return {"path": os.fspath(path), "rows": done, "bad_rows": bad, "bytes": os.path.getsize(path)}


def _as_date(value: dt.date | str) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


# ----------------------------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.generate_plays", description=__doc__.splitlines()[0])
    p.add_argument("out", help="output file; a .gz suffix means gzip")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--rows", type=int, help="exactly this many rows (default 100000)")
    size.add_argument("--bytes", type=float, help="whole blocks until at least this many bytes of CSV, e.g. 1.1e9")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--songs", type=int, default=100_000, help="songs in the catalogue")
    p.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of song popularity")
    p.add_argument("--start", default="2021-03-01", help="first day (YYYY-MM-DD)")
    p.add_argument("--end", default="2021-03-31", help="last day, inclusive (YYYY-MM-DD)")
    p.add_argument("--crlf", action="store_true", help="CRLF line endings")
    p.add_argument("--bom", action="store_true", help="start with a UTF-8 BOM")
    p.add_argument("--no-final-newline", action="store_true")
    p.add_argument("--gzip", action=argparse.BooleanOptionalAction, default=None,
                   help="gzip the output (default: when OUT ends in .gz)")
    p.add_argument("--bad-rows", type=float, default=0.0, help="fraction of deliberately broken rows")
    p.add_argument("--header", default=HEADER, help=f"the header line (default {HEADER!r})")
    p.add_argument("--block-rows", type=int, default=BLOCK_ROWS, help="rows per block (part of the seed)")
    p.add_argument("--workers", type=int, default=WORKERS, help="threads building blocks (no effect on output)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rows = args.rows if args.rows is not None or args.bytes is not None else 100_000
    started = time.perf_counter()
    summary = generate(
        args.out, rows, args.seed, min_bytes=int(args.bytes) if args.bytes is not None else None,
        songs=args.songs, zipf=args.zipf, start=args.start, end=args.end, bad_rows=args.bad_rows,
        block_rows=args.block_rows, workers=args.workers, crlf=args.crlf, bom=args.bom,
        final_newline=not args.no_final_newline, gzip=args.gzip, header=args.header,
    )
    elapsed = time.perf_counter() - started
    rate = summary["rows"] / elapsed if elapsed > 0 else 0.0  # type: ignore[operator]
    print(f"{summary['path']}: {summary['rows']} rows ({summary['bad_rows']} bad), {summary['bytes']} bytes, "
          f"{elapsed:.2f} s, {rate:,.0f} rows/s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
