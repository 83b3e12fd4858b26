"""Synthetic `trips/` CSV files shaped like the real ones (README.md, "Datasets", `trips/`).

    python -m tools.generate_trips OUT --rows N --seed S [--start 2018-05-01 --end 2018-05-31]
        [--regions Turin,Prague,Hamburg] [--datetime-header date_time] [--crlf] [--bom]
        [--no-final-newline] [--gzip] [--bad-rows 0.01] [--no-header] [--canonical]

Rows are made in fixed-size blocks, each fully vectorised (numpy for the numbers, pyarrow string
kernels for the text), and each block is written straight from the Arrow data buffer, so memory stays
bounded whatever the row count. Every block draws from its own generator seeded by (seed, block
number): the same seed and options give a byte-identical file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip as gziplib
import itertools
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BLOCK_ROWS = 25_000
WORKERS = 2  # blocks are built concurrently: numpy and Arrow kernels release the GIL

#: Approximate city centres, (longitude, latitude).
REGIONS: dict[str, tuple[float, float]] = {
    "Turin": (7.68, 45.07),
    "Prague": (14.44, 50.08),
    "Hamburg": (9.99, 53.55),
}
DEFAULT_REGIONS: tuple[str, ...] = ("Turin", "Prague", "Hamburg")
DATASOURCES: tuple[str, ...] = ("cheap_mobile", "funny_car", "baba_car", "bad_diesel_vehicles", "pt_search_app")
DATASOURCE_WEIGHTS = np.array([0.3, 0.2, 0.2, 0.15, 0.15])

#: Relative trip volume per hour of day (UTC): quiet night, morning and evening rush hours.
HOURLY_WEIGHTS = np.array(
    [1, 0.6, 0.4, 0.3, 0.4, 1, 3, 6, 8, 6, 4, 4, 4.5, 4.5, 4, 4.5, 5.5, 7.5, 8, 6, 4, 3, 2.5, 1.5],
    dtype=float,
)
HOURLY_P = HOURLY_WEIGHTS / HOURLY_WEIGHTS.sum()

HOTSPOTS_PER_REGION = 6
HOTSPOT_SPREAD = 0.08  # hotspots lie within this many degrees of the centre
HOTSPOT_SIGMA = 0.004  # ~400 m scatter around a hotspot
HOTSPOT_SHARE = 0.8  # the rest is uniform noise
NOISE_SPREAD = 0.15

HEADER_COLUMNS = ("region", "origin_coord", "destination_coord", "{datetime}", "datasource")
BOM = b"\xef\xbb\xbf"

#: Replacement values for deliberately broken rows; every one keeps the row at five fields.
BAD_WKT = ("POINT (7.68)", "POINT 7.68 45.07", "7.68 45.07", "POINT (abc def)", "POINT ()", "",
           "\"LINESTRING (7.6 45.0, 7.7 45.1)\"", "POINT (7.68 45.07")
BAD_DATETIMES = ("2018-02-30 10:00:00", "2018-13-01 08:00:00", "2018-05-01 25:61:00", "31/05/2018 10:00",
                 "not a date", "", "2018-05-0", "2018-05-01T08:00:00+25:00")
BAD_KINDS = 5  # bad origin WKT, bad destination WKT, bad datetime, out-of-range coordinate, empty region


@dataclass(frozen=True)
class CsvFormat:
    """Byte-level layout of a file (shared by `generate` and `canonical_sample`)."""

    datetime_header: str = "datetime"
    crlf: bool = False
    bom: bool = False
    final_newline: bool = True
    gzip: bool = False
    no_header: bool = False
    gzip_level: int = 6

    @property
    def terminator(self) -> str:
        return "\r\n" if self.crlf else "\n"

    def preamble(self) -> bytes:
        """BOM and header line, as the file starts."""
        out = BOM if self.bom else b""
        if not self.no_header:
            header = ",".join(HEADER_COLUMNS).format(datetime=self.datetime_header)
            out += (header + self.terminator).encode()
        return out


def make_format(path: str | os.PathLike[str], **options: object) -> CsvFormat:
    """A CsvFormat from keyword options; `gzip=None` (default) means "if the path ends in .gz"."""
    if options.get("gzip") is None:
        options["gzip"] = os.fspath(path).endswith(".gz")
    if options.get("datetime_header", "datetime") not in ("datetime", "date_time"):
        raise ValueError("datetime_header must be 'datetime' or 'date_time'")
    return CsvFormat(**options)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- text


def format_coord(values: np.ndarray) -> pa.Array:
    """Decimal text with 15 significant digits, like the real files (`44.995710924205`).

    Rounding to 15 significant digits first makes Arrow's shortest round-trip float formatting print
    at most those digits (any 15-digit decimal survives a trip through a double).
    """
    v = np.asarray(values, dtype=np.float64)
    mag = np.abs(v)
    tiny = mag < 1e-5  # Arrow would switch to exponent notation below this
    exp10 = np.floor(np.log10(np.where(tiny, 1.0, mag)))
    scale = 10.0 ** (14 - exp10)
    rounded = np.rint(v * scale) / scale
    rounded[tiny] = 0.0
    return pa.array(rounded, type=pa.float64()).cast(pa.string())


def wkt_points(lon: np.ndarray, lat: np.ndarray) -> pa.Array:
    """`POINT (lon lat)` strings, longitude first."""
    return pc.binary_join_element_wise("POINT (", format_coord(lon), " ", format_coord(lat), ")", "")


@cache
def _times_of_day() -> pa.Array:
    """All 86,400 `HH:MM:SS` strings, indexed by second of the day (built as one fixed-width buffer)."""
    s = np.arange(86_400)
    digits = np.stack([s // 36000, s // 3600 % 10, s // 600 % 6, s // 60 % 10, s // 10 % 6, s % 10], axis=1)
    text = np.full((86_400, 8), ord(":"), dtype=np.uint8)
    text[:, [0, 1, 3, 4, 6, 7]] = digits + ord("0")
    offsets = np.arange(0, 8 * 86_400 + 1, 8, dtype=np.int32)
    return pa.StringArray.from_buffers(86_400, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()))


def format_datetimes(day_strings: pa.Array, day_idx: np.ndarray, second_of_day: np.ndarray) -> pa.Array:
    """`YYYY-MM-DD HH:MM:SS` from day indexes into `day_strings` (each ending in a space) and seconds."""
    return pc.binary_join_element_wise(day_strings.take(day_idx), _times_of_day().take(second_of_day), "")


def join_lines(region: pa.Array, origin: pa.Array, dest: pa.Array, when: pa.Array,
               source_with_terminator: pa.Array) -> pa.Array:
    """Complete CSV lines; the last field already carries the line terminator."""
    return pc.binary_join_element_wise(region, origin, dest, when, source_with_terminator, ",")


def lines_bytes(lines: pa.Array) -> memoryview:
    """The concatenated text of a string array, without copying: its data buffer between offsets."""
    if len(lines) == 0:
        return memoryview(b"")
    width = 8 if pa.types.is_large_string(lines.type) else 4
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64 if width == 8 else np.int32,
                            count=len(lines) + 1, offset=lines.offset * width)
    return memoryview(lines.buffers()[2])[int(offsets[0]):int(offsets[-1])]


# ------------------------------------------------------------------------------------------- numbers


def make_hotspots(seed: int, centres: np.ndarray) -> np.ndarray:
    """Hotspot centres, shape (regions, HOTSPOTS_PER_REGION, 2), fixed by the seed."""
    rng = np.random.default_rng([seed, 0])
    offsets = rng.uniform(-HOTSPOT_SPREAD, HOTSPOT_SPREAD, size=(len(centres), HOTSPOTS_PER_REGION, 2))
    return centres[:, None, :] + offsets


#: Hotspot popularity: a few busy places, a long tail.
HOTSPOT_P = 1.0 / np.arange(1, HOTSPOTS_PER_REGION + 1)
HOTSPOT_P = HOTSPOT_P / HOTSPOT_P.sum()


def sample_points(rng: np.random.Generator, region_idx: np.ndarray, centres: np.ndarray,
                  hotspots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitudes and latitudes: mostly near a hotspot of the row's region, else uniform noise."""
    n = len(region_idx)
    spot = rng.choice(HOTSPOTS_PER_REGION, size=n, p=HOTSPOT_P)
    near = hotspots[region_idx, spot] + rng.normal(0.0, HOTSPOT_SIGMA, size=(n, 2))
    noise = centres[region_idx] + rng.uniform(-NOISE_SPREAD, NOISE_SPREAD, size=(n, 2))
    pts = np.where((rng.random(n) < HOTSPOT_SHARE)[:, None], near, noise)
    return pts[:, 0], pts[:, 1]


def day_weights(days: Sequence[dt.date]) -> np.ndarray:
    """Fewer trips at weekends."""
    w = np.array([{5: 0.8, 6: 0.7}.get(d.weekday(), 1.0) for d in days])
    return w / w.sum()


def sample_seconds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Second of the day following the daily (rush hour) pattern."""
    return rng.choice(24, size=n, p=HOURLY_P) * 3600 + rng.integers(0, 3600, size=n)


# ---------------------------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class Plan:
    """Everything fixed for a whole file (not per block)."""

    seed: int
    regions: tuple[str, ...]
    centres: np.ndarray
    hotspots: np.ndarray
    day_strings: pa.Array
    day_p: np.ndarray
    bad_rows: float
    fmt: CsvFormat


def make_plan(seed: int, start: dt.date, end: dt.date, regions: Sequence[str] | dict[str, tuple[float, float]],
              bad_rows: float, fmt: CsvFormat) -> Plan:
    if end < start:
        raise ValueError("end date is before start date")
    if not 0.0 <= bad_rows <= 1.0:
        raise ValueError("bad_rows is a fraction between 0 and 1")
    table = dict(regions) if isinstance(regions, dict) else {r: REGIONS[r] for r in regions}
    if not table:
        raise ValueError("at least one region is needed")
    for name in table:
        if not name or any(c in name for c in ',"\r\n'):
            raise ValueError(f"region name {name!r} would need CSV quoting")
    centres = np.array(list(table.values()), dtype=float)
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    return Plan(seed, tuple(table), centres, make_hotspots(seed, centres),
                pa.array([f"{d.isoformat()} " for d in days]), day_weights(days), bad_rows, fmt)


@dataclass
class Block:
    """Finished CSV lines (each ending in the terminator) and what they hold."""

    lines: pa.Array
    region_counts: np.ndarray  # good rows per region
    bad: int


def _pick(rng: np.random.Generator, values: Sequence[str], n: int) -> pa.Array:
    return pa.array(values).take(rng.integers(0, len(values), size=n))


def make_block(plan: Plan, block_no: int, n: int) -> Block:
    """`n` rows, deterministic in (seed, block_no)."""
    rng = np.random.default_rng([plan.seed, 1, block_no])
    region_idx = rng.integers(0, len(plan.regions), size=n)
    o_lon, o_lat = sample_points(rng, region_idx, plan.centres, plan.hotspots)
    d_lon, d_lat = sample_points(rng, region_idx, plan.centres, plan.hotspots)
    day_idx = rng.choice(len(plan.day_p), size=n, p=plan.day_p)
    seconds = sample_seconds(rng, n)
    source_idx = rng.choice(len(DATASOURCES), size=n, p=DATASOURCE_WEIGHTS)

    bad_kind = np.full(n, -1)
    if plan.bad_rows > 0:
        bad_rng = np.random.default_rng([plan.seed, 2, block_no])
        is_bad = bad_rng.random(n) < plan.bad_rows
        bad_kind[is_bad] = bad_rng.integers(0, BAD_KINDS, size=int(is_bad.sum()))
        _out_of_range(bad_rng, bad_kind == 3, o_lon, o_lat, d_lon, d_lat)

    region = pa.array(plan.regions).take(region_idx)
    origin = wkt_points(o_lon, o_lat)
    dest = wkt_points(d_lon, d_lat)
    when = format_datetimes(plan.day_strings, day_idx, seconds)
    if plan.bad_rows > 0:
        origin = _replace(bad_kind == 0, _pick(bad_rng, BAD_WKT, n), origin)
        dest = _replace(bad_kind == 1, _pick(bad_rng, BAD_WKT, n), dest)
        when = _replace(bad_kind == 2, _pick(bad_rng, BAD_DATETIMES, n), when)
        region = _replace(bad_kind == 4, pa.scalar(""), region)
    sources = pa.array([s + plan.fmt.terminator for s in DATASOURCES]).take(source_idx)
    good = bad_kind < 0
    counts = np.bincount(region_idx[good], minlength=len(plan.regions))
    return Block(join_lines(region, origin, dest, when, sources), counts, int(n - good.sum()))


def _out_of_range(rng: np.random.Generator, mask: np.ndarray, *coords: np.ndarray) -> None:
    """Push one coordinate of each masked row out of range (like lat 95 or lon -183.2), in place."""
    rows = np.flatnonzero(mask)
    which = rng.integers(0, 4, size=len(rows))  # origin lon, origin lat, dest lon, dest lat
    for k, arr in enumerate(coords):
        sel = rows[which == k]
        limit = 180.0 if k % 2 == 0 else 90.0
        sign = rng.choice([-1.0, 1.0], size=len(sel), p=[0.25, 0.75])
        arr[sel] = sign * (limit + rng.uniform(0.5, 10.0, size=len(sel)))


def _replace(mask: np.ndarray, replacement: pa.Array | pa.Scalar, original: pa.Array) -> pa.Array:
    if not mask.any():
        return original
    return pc.if_else(pa.array(mask), replacement, original)


# --------------------------------------------------------------------------------------------- files


def build_blocks(plan: Plan, rows: int, block_rows: int, workers: int) -> Iterator[Block]:
    """Blocks in file order, at most `workers` + 1 of them alive at once (bounds memory).

    Each block depends only on (seed, block number), so the thread count never changes the bytes.
    """
    sizes = enumerate(_block_sizes(rows, block_rows))
    if workers <= 1:
        yield from (make_block(plan, i, n) for i, n in sizes)
        return
    with ThreadPoolExecutor(workers) as pool:
        queue: deque[Future[Block]] = deque()
        for i, n in sizes:
            queue.append(pool.submit(make_block, plan, i, n))
            if len(queue) >= workers:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()


def _block_sizes(rows: int, block_rows: int) -> Iterable[int]:
    full, rest = divmod(rows, block_rows)
    yield from itertools.repeat(block_rows, full)
    if rest:
        yield rest


class _Sink:
    """A binary file, gzipped or not, that can hold back the final line terminator."""

    def __init__(self, path: str | os.PathLike[str], fmt: CsvFormat) -> None:
        self.raw: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.out: BinaryIO = self.raw
        if fmt.gzip:
            # filename="" and mtime=0 keep the gzip header free of names and times: identical bytes.
            self.out = gziplib.GzipFile(filename="", mode="wb", fileobj=self.raw, mtime=0,
                                        compresslevel=fmt.gzip_level)  # type: ignore[assignment]

    def write(self, data: bytes | memoryview) -> None:
        self.out.write(data)

    def close(self) -> None:
        if self.out is not self.raw:
            self.out.close()
        self.raw.close()


def write_file(path: str | os.PathLike[str], fmt: CsvFormat, blocks: Iterable[Block]) -> dict[str, object]:
    """Write preamble and blocks; drop the last terminator when `final_newline` is False."""
    sink = _Sink(path, fmt)
    rows = bad = 0
    counts: np.ndarray | None = None
    pending: memoryview | None = None
    try:
        preamble = fmt.preamble()
        if not fmt.final_newline and not fmt.no_header:
            pending = memoryview(preamble)
        else:
            sink.write(preamble)
        for block in blocks:
            if pending is not None:
                sink.write(pending)
            pending = lines_bytes(block.lines)
            rows += len(block.lines)
            bad += block.bad
            counts = block.region_counts if counts is None else counts + block.region_counts
        if pending is not None:
            term = len(fmt.terminator)
            sink.write(pending if fmt.final_newline or len(pending) < term else pending[:-term])
    finally:
        sink.close()
    return {"path": os.fspath(path), "rows": rows, "bad_rows": bad, "bytes": os.path.getsize(path),
            "region_counts": counts}


def _as_date(value: dt.date | str) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def generate(path: str | os.PathLike[str], rows: int, seed: int = 0, *,
             start: dt.date | str = "2018-05-01", end: dt.date | str = "2018-05-31",
             regions: Sequence[str] | dict[str, tuple[float, float]] = DEFAULT_REGIONS,
             bad_rows: float = 0.0, block_rows: int = BLOCK_ROWS, workers: int = WORKERS,
             **format_options: object) -> dict[str, object]:
    """Write `rows` synthetic trips to `path` and return a summary.

    `format_options` are the CsvFormat fields: datetime_header ("datetime" | "date_time"), crlf, bom,
    final_newline, gzip (None: from a `.gz` suffix), no_header, gzip_level. `regions` takes names from
    REGIONS or a {name: (lon, lat)} mapping. The summary holds rows, bad_rows, bytes (on disk) and
    region_counts: good (not deliberately broken) rows per region name.
    """
    if rows < 0 or block_rows <= 0:
        raise ValueError("rows must be >= 0 and block_rows > 0")
    fmt = make_format(path, **format_options)
    plan = make_plan(seed, _as_date(start), _as_date(end), regions, bad_rows, fmt)
    summary = write_file(path, fmt, build_blocks(plan, rows, block_rows, workers))
    counts = summary["region_counts"]
    summary["region_counts"] = {r: int(counts[i]) if counts is not None else 0 for i, r in enumerate(plan.regions)}
    return summary


# ---------------------------------------------------------------------------------- canonical sample

CANONICAL_WEEK_STARTS = ("2018-04-30", "2018-05-07", "2018-05-14", "2018-05-21", "2018-05-28")
#: Trips per ISO week 18..22; the sums 38/34/28 over 5 weeks give the averages 7.6/6.8/5.6.
CANONICAL_WEEKLY: dict[str, tuple[int, ...]] = {
    "Turin": (8, 8, 8, 7, 7),
    "Prague": (10, 6, 7, 6, 5),
    "Hamburg": (5, 6, 6, 6, 5),
}
#: The two Turin trips quoted in the challenge (ids 1 and 3).
CANONICAL_FIXED = (
    ("Turin", (7.67283791328688, 44.995710924205), (7.72036863753512, 45.0678238539384),
     "2018-05-21 02:54:04", "baba_car"),
    ("Turin", (7.54150918911443, 45.0916050382774), (7.7452865344197, 45.026285983415),
     "2018-05-06 09:49:16", "bad_diesel_vehicles"),
)


def _canonical_rows() -> list[tuple[str, float, float, float, float, str, str]]:
    """The 100 rows: the two fixed Turin trips at positions 1 and 3, the rest seeded and shuffled."""
    rng = np.random.default_rng(2018)
    plan = make_plan(2018, dt.date(2018, 5, 1), dt.date(2018, 5, 31), DEFAULT_REGIONS, 0.0, CsvFormat())
    times = _times_of_day()
    fixed_weeks = {(r, _iso_week(w)) for r, _, _, w, _ in CANONICAL_FIXED}
    rows = []
    for region_no, region in enumerate(DEFAULT_REGIONS):
        for week_no, count in enumerate(CANONICAL_WEEKLY[region]):
            monday = dt.date.fromisoformat(CANONICAL_WEEK_STARTS[week_no])
            may_days = [d for d in (monday + dt.timedelta(days=i) for i in range(7)) if d.month == 5]
            count -= sum(1 for r, w in fixed_weeks if r == region and w == 18 + week_no)
            idx = np.full(count, region_no)
            o_lon, o_lat = sample_points(rng, idx, plan.centres, plan.hotspots)
            d_lon, d_lat = sample_points(rng, idx, plan.centres, plan.hotspots)
            for i in range(count):  # 98 rows in all: a plain loop is clearer than vectorising
                day = may_days[int(rng.integers(0, len(may_days)))]
                when = f"{day.isoformat()} {times[int(sample_seconds(rng, 1)[0])].as_py()}"
                source = DATASOURCES[int(rng.choice(len(DATASOURCES), p=DATASOURCE_WEIGHTS))]
                rows.append((region, o_lon[i], o_lat[i], d_lon[i], d_lat[i], when, source))
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    (r1, o1, d1, w1, s1), (r3, o3, d3, w3, s3) = CANONICAL_FIXED
    rows.insert(0, (r1, *o1, *d1, w1, s1))
    rows.insert(2, (r3, *o3, *d3, w3, s3))
    return rows


def _iso_week(when: str) -> int:
    return dt.date.fromisoformat(when[:10]).isocalendar()[1]


def canonical_sample(path: str | os.PathLike[str], **format_options: object) -> dict[str, object]:
    """The challenge's 100-row sample shape: Turin 38, Prague 34, Hamburg 28 trips in May 2018.

    Weekly averages over ISO weeks 18..22 are exactly 7.6, 6.8 and 5.6 (see CANONICAL_WEEKLY).
    Deterministic; accepts the same format options as `generate`.
    """
    fmt = make_format(path, **format_options)
    rows = _canonical_rows()
    cols = list(zip(*rows, strict=True))
    lines = join_lines(
        pa.array(cols[0]),
        wkt_points(np.array(cols[1]), np.array(cols[2])),
        wkt_points(np.array(cols[3]), np.array(cols[4])),
        pa.array(cols[5]),
        pa.array([s + fmt.terminator for s in cols[6]]),
    )
    counts = np.array([sum(1 for r in cols[0] if r == name) for name in DEFAULT_REGIONS])
    summary = write_file(path, fmt, [Block(lines, counts, 0)])
    summary["region_counts"] = dict(zip(DEFAULT_REGIONS, (int(c) for c in counts), strict=True))
    return summary


# ----------------------------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.generate_trips", description=__doc__.splitlines()[0])
    p.add_argument("out", help="output file; a .gz suffix means gzip")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", default="2018-05-01", help="first day (YYYY-MM-DD)")
    p.add_argument("--end", default="2018-05-31", help="last day, inclusive (YYYY-MM-DD)")
    p.add_argument("--regions", default=",".join(DEFAULT_REGIONS),
                   help=f"comma-separated names among {', '.join(REGIONS)}")
    p.add_argument("--datetime-header", choices=("datetime", "date_time"), default="datetime")
    p.add_argument("--crlf", action="store_true", help="CRLF line endings")
    p.add_argument("--bom", action="store_true", help="start with a UTF-8 BOM")
    p.add_argument("--no-final-newline", action="store_true")
    p.add_argument("--gzip", action=argparse.BooleanOptionalAction, default=None,
                   help="gzip the output (default: when OUT ends in .gz)")
    p.add_argument("--gzip-level", type=int, default=6)
    p.add_argument("--bad-rows", type=float, default=0.0, help="fraction of deliberately broken rows")
    p.add_argument("--no-header", action="store_true")
    p.add_argument("--block-rows", type=int, default=BLOCK_ROWS, help="rows per block (part of the seed)")
    p.add_argument("--workers", type=int, default=WORKERS, help="threads building blocks (no effect on output)")
    p.add_argument("--canonical", action="store_true", help="write the 100-row canonical sample instead")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    fmt_opts = {"datetime_header": args.datetime_header, "crlf": args.crlf, "bom": args.bom,
                "final_newline": not args.no_final_newline, "gzip": args.gzip, "no_header": args.no_header,
                "gzip_level": args.gzip_level}
    started = time.perf_counter()
    if args.canonical:
        summary = canonical_sample(args.out, **fmt_opts)
    else:
        summary = generate(args.out, args.rows, args.seed, start=args.start, end=args.end,
                           regions=[r.strip() for r in args.regions.split(",") if r.strip()],
                           bad_rows=args.bad_rows, block_rows=args.block_rows, workers=args.workers,
                           **fmt_opts)
    elapsed = time.perf_counter() - started
    rate = summary["rows"] / elapsed if elapsed > 0 else 0.0  # type: ignore[operator]
    print(f"{summary['path']}: {summary['rows']} rows ({summary['bad_rows']} bad), {summary['bytes']} bytes, "
          f"{elapsed:.2f} s, {rate:,.0f} rows/s, per region {summary['region_counts']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
