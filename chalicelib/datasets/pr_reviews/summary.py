"""The report's statistics, computed inside the database so that they hold for millions of rows.

Every figure is taken over a *source*: a subquery of pr-reviews rows (`source(where, group)`) with a
grouping column `g` (the team, or a plot label). Figures come overall (key None) and per value of
`g` (rows whose `g` is NULL count overall only).

Definitions (the same as chalicelib.stats.summary, which the tests hold them to):
- `total_time` is review_time + merge_time, NULL when either is missing;
- missing values (NULL) are left out of every statistic of their column;
- mean: sum / count, rounded to one decimal as pandas rounds (chalicelib.stats.rounded);
- median (and the quartiles): linear interpolation between the two values around the position,
  as PostgreSQL's percentile_cont and pandas' median; an even count's median is the mean of its two
  middle values;
- mode: the most frequent value, the smallest of them on a tie.

How (`centres`): the database first counts each distinct value per group and column (a hash
aggregate, one scan per column; `value_counts`), then ranks those counts with window functions: a
running total over the values in order says which value sits at each position, and the counts
the largest count gives the mode (the smallest value holding it). Only the few values around each
quantile's position, and each mode, come back. This sorts the distinct values, not every row: PostgreSQL's ordered-set aggregates
(percentile_cont, mode) sort all the values of every group once per aggregate, which took 48 s
against about 3 s here for the team report over 5 million rows (bench.pr_reviews). The same
statements run on SQLite.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql import FromClause, Subquery

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

    def add(self, other: Figures) -> None:
        """Fold another group's counts, sums, extremes and dates into this one (not its centres)."""
        self.rows += other.rows
        self.without_review += other.without_review
        self.without_ci += other.without_ci
        self.teams_present += other.teams_present
        self.dates_present += other.dates_present
        for name, count in other.counts.items():
            self.counts[name] = self.counts.get(name, 0) + count
            self.sums[name] = self.sums.get(name, 0) + other.sums[name]
            self.minimum[name] = _extreme(min, self.minimum.get(name), other.minimum[name])
            self.maximum[name] = _extreme(max, self.maximum.get(name), other.maximum[name])
            self.quartiles.setdefault(name, None)
            self.modes.setdefault(name, None)
        self.first_date = _extreme(min, self.first_date, other.first_date)
        self.last_date = _extreme(max, self.last_date, other.last_date)


def _extreme(pick: Any, a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else pick(a, b)


def figures(conn: Connection, s: Subquery, names: Sequence[str] = TIMES,
            values: FromClause | None = None) -> dict[str | None, Figures]:
    """Overall (None) and per-group figures of the source: counts, sums, quartiles, modes.

    `values` is the source's `value_counts` when the caller already has them (e.g. stored in a
    temporary table); otherwise they are counted here.
    """
    out = basics(conn, s, names)
    found = centres(conn, values if values is not None else value_counts(s, names).cte("vc"), names)
    for key, figs in out.items():
        for name in names:
            figs.quartiles[name], figs.modes[name] = found.get(key, {}).get(name, (None, None))
    return out


# --- counts and sums ------------------------------------------------------------------------------


def basics(conn: Connection, s: Subquery, names: Sequence[str] = TIMES) -> dict[str | None, Figures]:
    """Counts, sums, extremes, zeros and dates per group (one hash aggregate); overall (None) is
    their total, rows without a group included."""
    count = sa.func.count
    columns = [count().label("rows")]
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
    overall = Figures(quartiles=dict.fromkeys(names), modes=dict.fromkeys(names),
                      counts=dict.fromkeys(names, 0), sums=dict.fromkeys(names, 0),
                      minimum=dict.fromkeys(names), maximum=dict.fromkeys(names))
    out: dict[str | None, Figures] = {None: overall}
    for row in conn.execute(sa.select(s.c.g, *columns).group_by(s.c.g)).mappings():
        group = _figures(row, names)
        overall.add(group)
        if row["g"] is not None:
            out[row["g"]] = group
    return out


def uploads(conn: Connection, s: Subquery) -> int:
    """How many uploads the source's rows come from."""
    distinct = sa.select(s.c.ingestion_id).distinct().subquery("uploads")
    return int(conn.execute(sa.select(sa.func.count()).select_from(distinct)).scalar())


def _figures(row: Any, names: Sequence[str]) -> Figures:
    f = Figures(
        rows=int(row["rows"]), without_review=int(row["without_review"] or 0),
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


# --- quantiles and modes, from value counts --------------------------------------------------------

Centres = dict[str | None, dict[str, tuple[list[float] | None, int | None]]]


def value_counts(s: Subquery, names: Sequence[str] = TIMES) -> sa.CompoundSelect:
    """(c, g, x, n): n rows of group g hold the value x in column number c (missing values left out)."""
    parts = []
    for i, name in enumerate(names):
        x = s.c[name]
        parts.append(
            sa.select(sa.literal_column(str(i), sa.Integer).label("c"), s.c.g.label("g"), x.label("x"),
                      sa.func.count().label("n"))
            .where(x.is_not(None)).group_by(s.c.g, x)
        )
    return sa.union_all(*parts)


def centres(conn: Connection, vc: FromClause, names: Sequence[str] = TIMES, qs: Sequence[float] = QUARTILES,
            ranges: dict[str, tuple[float, float] | None] | None = None) -> Centres:
    """{group (None: overall): {name: (quantiles at qs, mode)}} from value counts (c, g, x, n).

    `ranges` keeps only the values of a column within (low, high): the figures without outliers.
    A group with no value in a column has no entry for it.
    """
    r = _ranked(_levels(vc, names, ranges)).c
    around = []
    for q in qs:
        fraction = Fraction(q).limit_denominator(1000)
        k = (r.total - 1) * fraction.numerator // fraction.denominator
        around.append(sa.and_(r.upto > k, r.upto - r.n <= k + 1))
    quantile_rows = sa.select(sa.literal_column("0", sa.Integer).label("kind"), r.c, r.level, r.g, r.x, r.n,
                              r.upto, r.total).where(sa.or_(*around))
    mode_rows = sa.select(sa.literal_column("1", sa.Integer), r.c, r.level, r.g, sa.func.min(r.x), sa.null(),
                          sa.null(), sa.null()).where(r.n == r.top).group_by(r.c, r.level, r.g)
    if is_postgres(conn):
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")  # the value counts' sorts and hashes in memory
    found: dict[tuple[int, int, Any], list[Any]] = {}
    modes: dict[tuple[int, int, Any], int] = {}
    for row in conn.execute(sa.union_all(quantile_rows, mode_rows)):
        if row.kind == 1:
            modes[(row.c, row.level, row.g)] = int(row.x)
        else:
            found.setdefault((row.c, row.level, row.g), []).append(row)
    out: Centres = {}
    for (c, level, g), picked in found.items():
        key = g if level == 1 else None
        out.setdefault(key, {})[names[c]] = ([_quantile(picked, q) for q in qs], modes[(c, level, g)])
    return out


def _levels(vc: FromClause, names: Sequence[str], ranges: dict[str, tuple[float, float] | None] | None) -> Subquery:
    """The value counts per group (level 1) and, summed over the groups, overall (level 0)."""
    keep = [vc.c.c.in_(list(range(len(names))))]
    if ranges:
        keep = [sa.or_(*[
            sa.and_(vc.c.c == i, *([vc.c.x.between(*ranges[n])] if ranges.get(n) else []))
            for i, n in enumerate(names)
        ])]
    grouped = sa.select(vc.c.c, sa.literal_column("1", sa.Integer).label("level"), vc.c.g, vc.c.x, vc.c.n)
    overall = sa.select(vc.c.c, sa.literal_column("0", sa.Integer).label("level"), sa.cast(sa.null(), sa.String),
                        vc.c.x, sa.func.sum(vc.c.n))
    return sa.union_all(
        grouped.where(*keep, vc.c.g.is_not(None)),
        overall.where(*keep).group_by(vc.c.c, vc.c.x),
    ).subquery("levels")


def _ranked(both: Subquery) -> Any:
    """Each value with its running total (rows up to and including it), its group's total and the
    group's highest count: one sort of the distinct values by group and value."""
    part = [both.c.c, both.c.level, both.c.g]
    n = sa.cast(both.c.n, sa.BigInteger)
    return sa.select(
        both.c.c, both.c.level, both.c.g, both.c.x, n.label("n"),
        sa.cast(sa.func.sum(n).over(partition_by=part, order_by=both.c.x), sa.BigInteger).label("upto"),
        sa.cast(sa.func.sum(n).over(partition_by=part), sa.BigInteger).label("total"),
        sa.cast(sa.func.max(n).over(partition_by=part), sa.BigInteger).label("top"),
    ).cte("ranked")


def _quantile(picked: list[Any], q: float) -> float:
    """The q-quantile by linear interpolation, from the values around its position."""
    total = int(picked[0].total)
    fraction = Fraction(q).limit_denominator(1000)
    k, rest = divmod((total - 1) * fraction.numerator, fraction.denominator)

    def at(position: int) -> int:
        return next(int(row.x) for row in picked if int(row.upto) - int(row.n) <= position < int(row.upto))

    low = at(k)
    if rest == 0:
        return float(low)
    return float(low + Fraction(rest, fraction.denominator) * (at(k + 1) - low))


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
