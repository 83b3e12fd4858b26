"""Synthetic `pr-reviews/` CSV files shaped like the real ones (DESIGN.md, "The four CSV datasets", 3).

    python -m tools.generate_pr_reviews OUT --rows N --seed S [--teams Application,Platform]
        [--start 2023-01-01 --end 2023-03-31] [--no-review 0.4] [--no-ci 0.35] [--missing 0.01]
        [--excel-dates 0.2] [--bad-rows 0.01] [--extra-column] [--order review_time,team,date,merge_time]
        [--crlf] [--bom] [--no-final-newline] [--gzip] [--seed-sample]

Each team gets its own skewed (log-normal) review and merge times; a share of PRs has review_time 0
(merged without review) or merge_time 0 (no CI), and a share of cells is left empty (missing values).
`--excel-dates` writes that share of dates as Excel serial day numbers (44940 is 2023-01-14), as a
spreadsheet re-saving the file would. `--bad-rows` breaks that share of rows (a non-numeric or
negative time, an unreadable date), one way each.

Rows are made in fixed-size blocks, each fully vectorised (numpy, pyarrow string kernels) and
written straight from the Arrow buffer, so memory stays bounded whatever the row count. Every block
draws from its own generator seeded by (seed, block number): the same seed and options give a
byte-identical file.

`--seed-sample` writes instead the 96 rows whose report equals, figure for figure, the one the seed
Ath's README shows (see `seed_rows`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip as gziplib
import itertools
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tools.generate_trips import BOM, lines_bytes

BLOCK_ROWS = 50_000
COLUMNS = ("review_time", "team", "date", "merge_time")
DEFAULT_TEAMS = ("Application", "Data Service", "Platform", "Mobile", "Infrastructure", "Security")
#: Median review and merge times (seconds) of the teams, in turn; real ones differ by team.
REVIEW_MEDIANS = (3_600, 1_200, 7_200, 2_400, 14_400, 900)
MERGE_MEDIANS = (600, 900, 300, 1_800, 450, 1_200)
SIGMA = 1.6  # log-normal spread: most PRs are quick, a few wait for days
EXCEL_EPOCH = dt.date(1899, 12, 30)
BAD_VALUES = {
    "review_time": ("abc", "-5", "12.5", "1e3", "one hour"),
    "merge_time": ("-1", "n/a", "\"3,600\"", "-0.5"),
    "date": ("2023-02-30", "14/01/2023", "yesterday", "2023-13-01", "1969-12-31"),
}


@dataclass(frozen=True)
class Options:
    """Everything fixed for a whole file."""

    seed: int = 0
    teams: tuple[str, ...] = DEFAULT_TEAMS
    start: dt.date = dt.date(2023, 1, 1)
    end: dt.date = dt.date(2023, 3, 31)
    no_review: float = 0.4
    no_ci: float = 0.35
    missing: float = 0.0
    excel_dates: float = 0.0
    bad_rows: float = 0.0
    extra_column: bool = False
    order: tuple[str, ...] = COLUMNS
    crlf: bool = False
    bom: bool = False
    final_newline: bool = True
    gzip: bool = False

    @property
    def terminator(self) -> str:
        return "\r\n" if self.crlf else "\n"

    def header(self) -> bytes:
        names = [*self.order, "comment"] if self.extra_column else list(self.order)
        return (BOM if self.bom else b"") + (",".join(names) + self.terminator).encode()

    def check(self) -> None:
        if sorted(self.order) != sorted(COLUMNS):
            raise ValueError(f"order must name each of {', '.join(COLUMNS)} once")
        if self.end < self.start:
            raise ValueError("end date is before start date")
        for name in ("no_review", "no_ci", "missing", "excel_dates", "bad_rows"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a fraction between 0 and 1")
        if not self.teams or any(not t or any(ch in t for ch in ',"\r\n') for t in self.teams):
            raise ValueError("teams must be non-empty names without commas, quotes or line breaks")


@dataclass
class Tally:
    """What a file holds: rows, deliberately broken rows, rows per team, empty cells per column."""

    rows: int = 0
    bad_rows: int = 0
    teams: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)


def _text(values: np.ndarray) -> pa.Array:
    return pa.array(values, pa.int64()).cast(pa.string())


def make_block(o: Options, block_no: int, n: int) -> tuple[pa.Array, Tally]:
    """`n` CSV lines (each ending in the terminator), deterministic in (seed, block_no)."""
    rng = np.random.default_rng([o.seed, 1, block_no])
    weights = 1.0 / np.arange(1, len(o.teams) + 1)  # a few large teams, a long tail
    team_idx = rng.choice(len(o.teams), size=n, p=weights / weights.sum())
    review_median = np.array(REVIEW_MEDIANS * len(o.teams))[team_idx]
    merge_median = np.array(MERGE_MEDIANS * len(o.teams))[team_idx]
    review = np.rint(review_median * rng.lognormal(0.0, SIGMA, n)).astype(np.int64)
    merge = np.rint(merge_median * rng.lognormal(0.0, SIGMA, n)).astype(np.int64)
    review[rng.random(n) < o.no_review] = 0
    merge[rng.random(n) < o.no_ci] = 0
    days = (o.end - o.start).days + 1
    day = rng.integers(0, days, size=n)
    iso = pa.array([(o.start + dt.timedelta(days=i)).isoformat() for i in range(days)]).take(day)
    serial = _text(day + (o.start - EXCEL_EPOCH).days)
    cells = {
        "review_time": _text(review),
        "team": pa.array(o.teams).take(team_idx),
        "date": pc.if_else(pa.array(rng.random(n) < o.excel_dates), serial, iso),
        "merge_time": _text(merge),
    }
    tally = Tally(rows=n)
    empty = rng.random((n, len(COLUMNS))) < o.missing
    for k, name in enumerate(COLUMNS):
        cells[name] = pc.if_else(pa.array(empty[:, k]), "", cells[name])
        tally.missing[name] = int(empty[:, k].sum())
    bad = _break(o, block_no, n, cells)
    good = ~bad
    tally.bad_rows = int(bad.sum())
    counts = np.bincount(team_idx[good & ~empty[:, 1]], minlength=len(o.teams))
    tally.teams = {t: int(c) for t, c in zip(o.teams, counts, strict=True)}
    tally.missing = {name: int((empty[:, k] & good).sum()) for k, name in enumerate(COLUMNS)}
    fields = [cells[name] for name in o.order]
    if o.extra_column:
        fields.append(pa.array(np.full(n, "ok")))
    last = pc.binary_join_element_wise(fields[-1], o.terminator, "")
    return pc.binary_join_element_wise(*fields[:-1], last, ","), tally


def _break(o: Options, block_no: int, n: int, cells: dict[str, pa.Array]) -> np.ndarray:
    """Replace one cell of a `bad_rows` share of rows with a value that must be rejected; the mask."""
    if o.bad_rows <= 0:
        return np.zeros(n, dtype=bool)
    rng = np.random.default_rng([o.seed, 2, block_no])
    bad = rng.random(n) < o.bad_rows
    which = rng.integers(0, len(BAD_VALUES), size=n)
    for k, (name, values) in enumerate(BAD_VALUES.items()):
        mask = bad & (which == k)
        replacement = pa.array(values).take(rng.integers(0, len(values), size=n))
        cells[name] = pc.if_else(pa.array(mask), replacement, cells[name])
    return bad


def _blocks(o: Options, rows: int, block_rows: int) -> Iterator[tuple[pa.Array, Tally]]:
    full, rest = divmod(rows, block_rows)
    sizes = itertools.chain(itertools.repeat(block_rows, full), [rest] if rest else [])
    for block_no, n in enumerate(sizes):
        yield make_block(o, block_no, n)


def _open(path: str | os.PathLike[str], gz: bool) -> tuple[BinaryIO, BinaryIO]:
    raw: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by write()
    if not gz:
        return raw, raw
    # filename="" and mtime=0 keep the gzip header free of names and times: identical bytes.
    return raw, gziplib.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)  # type: ignore[return-value]


def write(path: str | os.PathLike[str], o: Options, blocks: Iterator[tuple[pa.Array, Tally]]) -> dict[str, object]:
    """Write the header and the blocks; without a final newline the last terminator is dropped."""
    raw, out = _open(path, o.gzip)
    total = Tally(teams=dict.fromkeys(o.teams, 0), missing=dict.fromkeys(COLUMNS, 0))
    pending: memoryview | bytes = o.header()
    try:
        for lines, tally in blocks:
            out.write(pending)
            pending = lines_bytes(lines)
            total.rows += tally.rows
            total.bad_rows += tally.bad_rows
            for team, count in tally.teams.items():
                total.teams[team] = total.teams.get(team, 0) + count
            for name, count in tally.missing.items():
                total.missing[name] += count
        term = len(o.terminator)
        out.write(pending if o.final_newline or len(pending) < term else pending[:-term])
    finally:
        if out is not raw:
            out.close()
        raw.close()
    return {"path": os.fspath(path), "rows": total.rows, "bad_rows": total.bad_rows, "bytes": os.path.getsize(path),
            "team_counts": total.teams, "missing": total.missing}


def generate(path: str | os.PathLike[str], rows: int, seed: int = 0, *, block_rows: int = BLOCK_ROWS,
             **options: object) -> dict[str, object]:
    """Write `rows` synthetic PRs to `path` and return a summary (rows, bad_rows, bytes, team_counts:
    good rows per team with a team, missing: empty cells per column among the good rows).

    `options` are the Options fields (teams, start, end, no_review, no_ci, missing, excel_dates,
    bad_rows, extra_column, order, crlf, bom, final_newline, gzip: None means "if path ends in .gz").
    """
    if rows < 0 or block_rows <= 0:
        raise ValueError("rows must be >= 0 and block_rows > 0")
    if options.get("gzip") is None:
        options["gzip"] = os.fspath(path).endswith(".gz")
    for name in ("start", "end"):
        if isinstance(options.get(name), str):
            options[name] = dt.date.fromisoformat(options[name])  # type: ignore[arg-type]
    for name in ("teams", "order"):
        if name in options:
            options[name] = tuple(options[name])  # type: ignore[arg-type]
    o = Options(seed=seed, **options)  # type: ignore[arg-type]
    o.check()
    return write(path, o, _blocks(o, rows, block_rows))


# ------------------------------------------------------------------------------------ the seed sample

SEED_TEAMS = ("Application", "Data Service", "Platform")
SEED_START = dt.date(2023, 1, 14)
SEED_DAYS = 32  # 2023-01-14 .. 2023-02-14
#: The figures the seed Ath's README shows for its sample (means to one decimal).
SEED_MEANS = {
    "Application": (30116.6, 493.9, 30610.6),
    "Data Service": (2560.8, 860.8, 3421.6),
    "Platform": (13780.8, 951.9, 14732.7),
    None: (15486.1, 768.9, 16254.9),
}

#: Per team: the fixed rows (review_time, merge_time) that set the zeros and the medians, and the
#: lower bounds of the 14 / 11 / 11 "filler" rows whose sums set the means. Per team the medians are
#: the 16th and 17th of 32 sorted values; overall, the 48th and 49th of 96. The fixed rows put those
#: exactly where the seed's medians need them (e.g. Application's reviews: ten zeros, then 100, 120,
#: 130, 138, 140, 960 | 982, so the median is (960 + 982) / 2 = 971; all teams' reviews: 44 zeros, then
#: 100, 120, 130, 138 | 140, so the median is 139); the fillers lie above every median.
SEED_LAYOUT: dict[str, tuple[list[tuple[int, int]], int, int, int]] = {
    "Application": (
        [(0, 0)] * 3 + [(0, m) for m in (11, 22, 33, 44, 55, 66, 380)]
        + [(r, 0) for r in (100, 120, 130, 138, 140, 960)] + [(982, 1450), (2100, 404)],
        14, 2200, 450,
    ),
    "Data Service": (
        [(0, 0)] * 3 + [(0, m) for m in (77, 88, 99, 110, 220, 242, 700, 747, 800, 2200, 2300)]
        + [(r, 0) for r in (200, 440, 462, 2400, 2500, 2600)] + [(500, 1747)],
        11, 1500, 800,
    ),
    "Platform": ([(0, 0)] * 18 + [(0, 1000), (0, 1200), (955, 0)], 11, 1000, 300),
}


def _round1(total: int, n: int) -> float:
    """total / n to one decimal, as pandas rounds (chalicelib.stats.rounded)."""
    return round(total / n * 10) / 10


def _seed_sums() -> dict[str, tuple[int, int]]:
    """The (review, merge) sums per team whose means, and whose totals' means, team by team and over
    all 96 rows, round to the seed's figures: a search over the few sums each rounded mean allows."""
    def window(mean: float, n: int) -> range:
        return range(int((mean - 0.05) * n), int((mean + 0.05) * n) + 2)

    options = {}
    for team in SEED_TEAMS:
        review, merge, total = SEED_MEANS[team]
        options[team] = [(r, m) for r in window(review, 32) for m in window(merge, 32)
                         if _round1(r, 32) == review and _round1(m, 32) == merge and _round1(r + m, 32) == total]
    review, merge, total = SEED_MEANS[None]
    for choice in itertools.product(*(options[t] for t in SEED_TEAMS)):
        r, m = sum(c[0] for c in choice), sum(c[1] for c in choice)
        if _round1(r, 96) == review and _round1(m, 96) == merge and _round1(r + m, 96) == total:
            return dict(zip(SEED_TEAMS, choice, strict=True))
    raise AssertionError("no sums give the seed's means")  # pragma: no cover - the layout above has some


def _fill(total: int, count: int, low: int, step: int) -> list[int]:
    """`count` distinct values from `low` up (steps of `step`) whose sum is `total`; the last one is
    what is left, an outlier."""
    values = [low + step * i for i in range(count - 1)]
    last = total - sum(values)
    if last <= values[-1]:
        raise AssertionError(f"sum {total} too small for {count} values from {low}")
    return [*values, last]


def seed_rows() -> list[tuple[int, str, str, int]]:
    """The seed sample's 96 rows (review_time, team, date, merge_time), 32 per team, in file order."""
    out = []
    sums = _seed_sums()
    for team in SEED_TEAMS:
        fixed, fillers, review_low, merge_low = SEED_LAYOUT[team]
        review_total, merge_total = sums[team]
        reviews = _fill(review_total - sum(r for r, _ in fixed), fillers, review_low, 150)
        merges = _fill(merge_total - sum(m for _, m in fixed), fillers, merge_low, 20)
        out += [(team, r, m) for r, m in fixed + list(zip(reviews, merges, strict=True))]
    order = np.random.default_rng(12).permutation(len(out))
    rows = []
    for position, i in enumerate(order):
        team, review, merge = out[i]
        day = SEED_START + dt.timedelta(days=position % SEED_DAYS)
        rows.append((review, team, day.isoformat(), merge))
    return rows


def seed_sample(path: str | os.PathLike[str]) -> dict[str, object]:
    """Write the seed sample (header `review_time,team,date,merge_time`, LF, final newline)."""
    lines = ["review_time,team,date,merge_time"] + [f"{r},{t},{d},{m}" for r, t, d, m in seed_rows()]
    with open(path, "w", newline="") as f:
        f.write("\n".join(lines) + "\n")
    return {"path": os.fspath(path), "rows": len(lines) - 1, "bad_rows": 0, "bytes": os.path.getsize(path)}


# ----------------------------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.generate_pr_reviews", description=__doc__.splitlines()[0])
    p.add_argument("out", help="output file; a .gz suffix means gzip")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--teams", default=",".join(DEFAULT_TEAMS), help="comma-separated team names")
    p.add_argument("--start", default="2023-01-01", help="first day (YYYY-MM-DD)")
    p.add_argument("--end", default="2023-03-31", help="last day, inclusive (YYYY-MM-DD)")
    p.add_argument("--no-review", type=float, default=0.4, help="share of PRs with review_time 0")
    p.add_argument("--no-ci", type=float, default=0.35, help="share of PRs with merge_time 0")
    p.add_argument("--missing", type=float, default=0.0, help="share of empty cells (missing values)")
    p.add_argument("--excel-dates", type=float, default=0.0, help="share of dates written as Excel serial days")
    p.add_argument("--bad-rows", type=float, default=0.0, help="share of deliberately broken rows")
    p.add_argument("--extra-column", action="store_true", help="add a column sluice must ignore")
    p.add_argument("--order", default=",".join(COLUMNS), help="the columns' order in the file")
    p.add_argument("--crlf", action="store_true", help="CRLF line endings")
    p.add_argument("--bom", action="store_true", help="start with a UTF-8 BOM")
    p.add_argument("--no-final-newline", action="store_true")
    p.add_argument("--gzip", action=argparse.BooleanOptionalAction, default=None,
                   help="gzip the output (default: when OUT ends in .gz)")
    p.add_argument("--block-rows", type=int, default=BLOCK_ROWS, help="rows per block (part of the seed)")
    p.add_argument("--seed-sample", action="store_true", help="write the seed Ath's 96-row sample instead")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.seed_sample:
        summary = seed_sample(args.out)
    else:
        summary = generate(
            args.out, args.rows, args.seed, block_rows=args.block_rows,
            teams=[t.strip() for t in args.teams.split(",") if t.strip()], start=args.start, end=args.end,
            no_review=args.no_review, no_ci=args.no_ci, missing=args.missing, excel_dates=args.excel_dates,
            bad_rows=args.bad_rows, extra_column=args.extra_column,
            order=[c.strip() for c in args.order.split(",")], crlf=args.crlf, bom=args.bom,
            final_newline=not args.no_final_newline, gzip=args.gzip,
        )
    elapsed = time.perf_counter() - started
    rate = summary["rows"] / elapsed if elapsed > 0 else 0.0  # type: ignore[operator]
    print(f"{summary['path']}: {summary['rows']} rows ({summary['bad_rows']} bad), {summary['bytes']} bytes, "
          f"{elapsed:.2f} s, {rate:,.0f} rows/s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
