"""The report's statistics, computed inside the database so that they hold for millions of rows.

Every figure is taken over a *source*: a subquery of pr-reviews rows (`source(where, group)`) with a
grouping column `g` (the team, or a plot label). Figures come overall (key None) and per value of
`g` (rows whose `g` is NULL count overall only).

Definitions (the same as chalicelib.stats.summary, which the tests hold them to):
- `total_time` is review_time + merge_time, NULL when either is missing;
- missing values (NULL) are left out of every statistic of their column;
- mean: sum / count, rounded to one decimal as pandas rounds (chalicelib.stats.rounded);
- median: the middle value, or the mean of the two middle values of an even count (PostgreSQL's
  percentile_cont(0.5); on SQLite the same from row numbers);
- mode: the most frequent value, the smallest of them on a tie (PostgreSQL's mode() over the values
  in ascending order keeps the first of equally frequent values; SQLite orders the value counts).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Subquery

from chalicelib.datasets.pr_reviews.tables import rows
from chalicelib.db import is_postgres
from chalicelib.stats import rounded

TIMES = ("review_time", "merge_time", "total_time")
QUARTILES = (0.25, 0.5, 0.75)
DECIMALS = 1


def source(where: Sequence[Any], group: Any = None, name: str = "s") -> Subquery:
    """The rows matching `where`, with `g` (default: the team) and total_time."""
    c = rows.c
    return sa.select(
        (c.team if group is None else group).label("g"), c.ingestion_id, c.review_time, c.merge_time,
        (c.review_time + c.merge_time).label("total_time"), c.team, c.date,
    ).where(*where).subquery(name)


@dataclass
class Figures:
    """What the report says about one group of rows (or all of them)."""

    rows: int = 0
    uploads: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    sums: dict[str, int] = field(default_factory=dict)
    minimum: dict[str, int | None] = field(default_factory=dict)
    maximum: dict[str, int | None] = field(default_factory=dict)
    quartiles: dict[str, list[float] | None] = field(default_factory=dict)
    modes: dict[str, int | None] = field(default_factory=dict)
    without_review: int = 0
    without_ci: int = 0
    teams_present: int = 0
    dates_present: int = 0
    first_date: dt.date | None = None
    last_date: dt.date | None = None

    def mean(self, name: str) -> float | None:
        return self.sums[name] / self.counts[name] if self.counts.get(name) else None

    def median(self, name: str) -> float | None:
        q = self.quartiles.get(name)
        return q[1] if q else None


def figures(conn: Connection, s: Subquery, names: Sequence[str] = TIMES) -> dict[str | None, Figures]:
    """Overall (None) and per-group figures of the source: counts, sums, quartiles, modes."""
    out = basics(conn, s, names)
    for key, centres in centre_values(conn, s, names).items():
        if key in out:
            for name, (quartiles, mode) in centres.items():
                out[key].quartiles[name], out[key].modes[name] = quartiles, mode
    return out


# --- counts and sums ------------------------------------------------------------------------------


def basics(conn: Connection, s: Subquery, names: Sequence[str] = TIMES) -> dict[str | None, Figures]:
    """Counts, sums, extremes, zeros and dates, overall and per group (two hash aggregates)."""
    count = sa.func.count
    columns = [count().label("rows"), count(sa.distinct(s.c.ingestion_id)).label("uploads")]
    for name in names:
        x = s.c[name]
        columns += [count(x).label(f"n_{name}"), sa.func.sum(x).label(f"sum_{name}"),
                    sa.func.min(x).label(f"min_{name}"), sa.func.max(x).label(f"max_{name}")]
    columns += [
        count().filter(s.c.review_time == 0).label("without_review"),
        count().filter(s.c.merge_time == 0).label("without_ci"),
        count(s.c.team).label("teams_present"), count(s.c.date).label("dates_present"),
        sa.func.min(s.c.date).label("first_date"), sa.func.max(s.c.date).label("last_date"),
    ]
    overall = conn.execute(sa.select(*columns)).mappings().one()
    grouped = conn.execute(sa.select(s.c.g, *columns).where(s.c.g.is_not(None)).group_by(s.c.g)).mappings().all()
    out: dict[str | None, Figures] = {None: _figures(overall, names)}
    for row in grouped:
        out[row["g"]] = _figures(row, names)
    return out


def _figures(row: Any, names: Sequence[str]) -> Figures:
    f = Figures(
        rows=int(row["rows"]), uploads=int(row["uploads"]), without_review=int(row["without_review"] or 0),
        without_ci=int(row["without_ci"] or 0), teams_present=int(row["teams_present"]),
        dates_present=int(row["dates_present"]), first_date=_date(row["first_date"]),
        last_date=_date(row["last_date"]),
    )
    for name in names:
        f.counts[name] = int(row[f"n_{name}"])
        f.sums[name] = int(row[f"sum_{name}"] or 0)
        f.minimum[name] = _int(row[f"min_{name}"])
        f.maximum[name] = _int(row[f"max_{name}"])
        f.quartiles[name] = None
        f.modes[name] = None
    return f


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _date(value: Any) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


# --- quartiles and modes --------------------------------------------------------------------------

Centres = dict[str | None, dict[str, tuple[list[float] | None, int | None]]]


def centre_values(conn: Connection, s: Subquery, names: Sequence[str] = TIMES,
                  qs: Sequence[float] = QUARTILES) -> Centres:
    """{group (None: overall): {name: (quantiles at qs, mode)}}; absent when a column has no values."""
    if is_postgres(conn):
        return _pg_centres(conn, s, names, qs)
    out: Centres = {}
    for name in names:
        quantiles = sqlite_quantiles(conn, s, name, qs)
        modes = sqlite_modes(conn, s, name)
        for key, values in quantiles.items():
            out.setdefault(key, {})[name] = (values, modes.get(key))
    return out


def _pg_centres(conn: Connection, s: Subquery, names: Sequence[str], qs: Sequence[float]) -> Centres:
    """PostgreSQL's ordered-set aggregates: one sort per column and group, in two statements."""
    from sqlalchemy.dialects import postgresql

    fractions = sa.literal(list(qs), postgresql.ARRAY(sa.Float))
    columns = []
    for name in names:
        x = s.c[name]
        columns += [
            sa.func.percentile_cont(fractions).within_group(x).label(f"q_{name}"),
            sa.func.mode().within_group(x).label(f"mode_{name}"),
        ]
    _work_mem(conn)
    overall = [(None, conn.execute(sa.select(*columns)).mappings().one())]
    grouped = conn.execute(sa.select(s.c.g, *columns).where(s.c.g.is_not(None)).group_by(s.c.g)).mappings().all()
    out: Centres = {}
    for key, row in overall + [(r["g"], r) for r in grouped]:
        for name in names:
            if row[f"q_{name}"] is not None:
                out.setdefault(key, {})[name] = ([float(v) for v in row[f"q_{name}"]], int(row[f"mode_{name}"]))
    return out


def _work_mem(conn: Connection) -> None:
    """Sorts of a few million integers fit in memory instead of spilling to disk (this transaction)."""
    conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")


def sqlite_quantiles(conn: Connection, s: Subquery, name: str,
                     qs: Sequence[float] = QUARTILES) -> dict[str | None, list[float]]:
    """Quantiles by linear interpolation (as percentile_cont), overall and per group, from row numbers.

    Only the two rows around each quantile's position come back from the database.
    """
    out: dict[str | None, list[float]] = {}
    for grouped in (False, True):
        x = s.c[name]
        part = [s.c.g] if grouped else None
        ranked = sa.select(
            s.c.g.label("g"), x.label("x"),
            (sa.func.row_number().over(partition_by=part, order_by=x) - 1).label("i"),
            sa.func.count().over(partition_by=part).label("n"),
        ).where(x.is_not(None), *([s.c.g.is_not(None)] if grouped else [])).subquery("ranked")
        floors = [sa.cast(q * (ranked.c.n - 1), sa.Integer) for q in qs]
        wanted = sa.or_(*[ranked.c.i.in_([f, f + 1]) for f in floors])
        picked: dict[Any, tuple[int, dict[int, int]]] = {}
        for g, i, n, value in conn.execute(sa.select(ranked.c.g, ranked.c.i, ranked.c.n, ranked.c.x).where(wanted)):
            key = g if grouped else None
            picked.setdefault(key, (int(n), {}))[1][int(i)] = int(value)
        for key, (n, values) in picked.items():
            out[key] = [_interpolate(values, q * (n - 1)) for q in qs]
    return out


def _interpolate(values: dict[int, int], position: float) -> float:
    low = math.floor(position)
    frac = position - low
    if frac == 0:
        return float(values[low])
    return values[low] + frac * (values[low + 1] - values[low])


def sqlite_modes(conn: Connection, s: Subquery, name: str) -> dict[str | None, int]:
    """The most frequent value (the smallest on a tie), overall and per group."""
    out: dict[str | None, int] = {}
    x = s.c[name]
    for grouped in (False, True):
        keys = [s.c.g, x] if grouped else [x]
        ranked = sa.select(
            s.c.g.label("g") if grouped else sa.literal(None).label("g"), x.label("x"),
            sa.func.row_number().over(
                partition_by=[s.c.g] if grouped else None, order_by=[sa.func.count().desc(), x]
            ).label("r"),
        ).where(x.is_not(None), *([s.c.g.is_not(None)] if grouped else [])).group_by(*keys).subquery("ranked")
        for g, value in conn.execute(sa.select(ranked.c.g, ranked.c.x).where(ranked.c.r == 1)):
            out[g if grouped else None] = int(value)
    return out


# --- the report's JSON ----------------------------------------------------------------------------


def stat_block(f: Figures) -> dict[str, Any]:
    """The seed's {"mean", "mode", "median", "count"} of one group, with "counts" of values present."""
    return {
        "mean": {name: rounded(f.mean(name), DECIMALS) for name in TIMES},
        "mode": {name: f.modes.get(name) for name in TIMES},
        "median": {name: rounded(f.median(name), DECIMALS) for name in TIMES},
        "count": f.rows,
        "counts": {name: f.counts.get(name, 0) for name in TIMES},
    }


def report_json(figs: dict[str | None, Figures]) -> dict[str, Any]:
    """The seed Ath's report shape, from `figures` over a team-grouped source."""
    overall = figs[None]
    teams = sorted(k for k in figs if k is not None)
    return {
        "total_num_observations": overall.rows,
        "teams": teams,
        "date_interval": {
            "begin": overall.first_date.isoformat() if overall.first_date else None,
            "end": overall.last_date.isoformat() if overall.last_date else None,
        },
        "stats": stat_block(overall),
        "per_team": {
            team: {**stat_block(figs[team]), "num_prs_without_review": figs[team].without_review,
                   "num_prs_without_ci": figs[team].without_ci}
            for team in teams
        },
        "num_prs_without_review": overall.without_review,
        "num_prs_without_ci": overall.without_ci,
        "num_missing_values": {
            "review_time": overall.rows - overall.counts["review_time"],
            "merge_time": overall.rows - overall.counts["merge_time"],
            "date": overall.rows - overall.dates_present,
            "team": overall.rows - overall.teams_present,
        },
    }
