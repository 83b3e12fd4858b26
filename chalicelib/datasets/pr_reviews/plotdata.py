"""What the eight plots of an upload show, read from the database in a few grouped queries.

The result (`plot_inputs`) is plain JSON of bounded size, whatever the number of rows: per plotted
label and time column a histogram of BINS bins and its count, mean, median and extremes; PRs and mean
times per label. `plots.render` draws from it alone, so the drawing can run anywhere.

The distributions come from the upload's value counts (`summary.value_counts`, stored for the
finishing step in a temporary table), so only one more pass over the rows is made here: PRs and
mean times per label, and the outlier counts.

The outlier rule (OUTLIER_RULE): Tukey's fences. Over the whole upload, a review_time (merge_time) is
an outlier when it lies below Q1 - 1.5 x IQR or above Q3 + 1.5 x IQR of its own column (IQR = Q3 - Q1,
quartiles by linear interpolation). The distribution plots "without outliers" leave out the outlying
values of their column; the PRs-per-team pie and the mean-time bars leave out every PR with an
outlying review_time or merge_time. A missing value is never an outlier.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql import FromClause

from chalicelib.datasets.pr_reviews.summary import Figures, centres, source
from chalicelib.datasets.pr_reviews.tables import rows

OUTLIER_RULE = (
    "Tukey's fences over the whole upload: a review_time (merge_time) below Q1 - 1.5 x IQR or above "
    "Q3 + 1.5 x IQR of its column is an outlier (IQR = Q3 - Q1). Distributions without outliers leave "
    "out the outlying values of their column; PRs per team and mean times leave out every PR with an "
    "outlying review_time or merge_time."
)
PLOTTED = ("review_time", "merge_time")  # value counts number them 0 and 1 (summary.TIMES order)
VARIANTS = ("with_outliers", "no_outliers")
#: More teams than this are plotted as the largest ones plus "Other teams".
MAX_LABELS = 12
BINS = 100
ALL_TEAMS = "All teams"
OTHER_TEAMS = "Other teams"
NO_TEAM = "(no team)"

Fences = dict[str, tuple[float, float] | None]


def fences(overall: Figures) -> Fences:
    """{column: (low, high)} from the overall quartiles; None for a column with no values."""
    out: Fences = {}
    for name in PLOTTED:
        q = overall.quartiles.get(name)
        if not q:
            out[name] = None
            continue
        iqr = q[2] - q[0]
        out[name] = (q[0] - 1.5 * iqr, q[2] + 1.5 * iqr)
    return out


def _within(x: Any, fence: tuple[float, float] | None) -> Any:
    return sa.true() if fence is None else sa.or_(x.is_(None), x.between(fence[0], fence[1]))


def labels(team_figures: dict[str | None, Figures]) -> tuple[list[str], Callable[[Any], Any]]:
    """(plot labels in order, a function giving the SQL label of a team column)."""
    overall = team_figures[None]
    teams = [k for k in team_figures if k is not None]
    top = sorted(sorted(teams), key=lambda t: -team_figures[t].rows)[:MAX_LABELS]
    order = sorted(top)

    def label(team: Any) -> Any:
        if len(teams) <= MAX_LABELS:
            return sa.func.coalesce(team, NO_TEAM)
        return sa.case((team.in_(top), team), (team.is_(None), NO_TEAM), else_=OTHER_TEAMS)

    if len(teams) > MAX_LABELS:
        order.append(OTHER_TEAMS)
    if overall.teams_present < overall.rows:
        order.append(NO_TEAM)
    return order, label


def collect(conn: Connection, where: Sequence[Any], title: str, team_figures: dict[str | None, Figures],
            values: FromClause) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the report's "outliers" section, the plot inputs) of the rows matching `where` (one upload),
    whose team-level value counts are `values` (c, g, x, n)."""
    overall = team_figures[None]
    bounds = fences(overall)
    order, label = labels(team_figures)
    per_label, outlying = _prs_per_label(conn, where, label, bounds)
    label_values = _relabel(values, label)
    # With outliers, the teams' (and all teams') medians are the report's own; only merged labels
    # ("Other teams", "(no team)") need theirs counted.
    report_medians = {k: {n: f.median(n) for n in PLOTTED} for k, f in team_figures.items() if k is None or k in order}
    variants: dict[str, Any] = {}
    for variant in VARIANTS:
        ranges = None if variant == "with_outliers" else bounds
        known = report_medians if ranges is None else None
        variants[variant] = {
            "prs": {k: v[variant]["prs"] for k, v in per_label.items()},
            "means": {k: {n: v[variant]["means"][n] for n in PLOTTED} for k, v in per_label.items()},
            "distributions": distributions(conn, label_values, ranges, known),
        }
    inputs = {"title": title, "prs": overall.rows, "labels": order, "fences": bounds, "rule": OUTLIER_RULE,
              "variants": variants}
    section: dict[str, Any] = {"rule": OUTLIER_RULE}
    for name in PLOTTED:
        q, fence = overall.quartiles.get(name), bounds[name]
        section[name] = None if fence is None or not q else {
            "q1": q[0], "q3": q[2], "low": fence[0], "high": fence[1], "count": outlying[name],
        }
    section["prs"] = outlying["prs"]
    return section, inputs


def _prs_per_label(conn: Connection, where: Sequence[Any], label: Callable[[Any], Any], bounds: Fences,
                   ) -> tuple[dict[str, Any], dict[str, int]]:
    """Per label, with and without outliers: PRs and mean times; and the outlier counts (one pass)."""
    s = source(where, label(rows.c.team))
    inlier = sa.and_(*[_within(s.c[name], bounds[name]) for name in PLOTTED])
    columns = [sa.func.count().label("prs"), sa.func.count().filter(inlier).label("prs_in"),
               sa.func.count().filter(sa.not_(inlier)).label("outlying_prs")]
    for name in PLOTTED:
        x = s.c[name]
        columns += [sa.func.count(x).label(f"n_{name}"), sa.func.sum(x).label(f"sum_{name}"),
                    sa.func.count(x).filter(inlier).label(f"n_in_{name}"),
                    sa.func.sum(x).filter(inlier).label(f"sum_in_{name}"),
                    sa.func.count().filter(sa.not_(_within(x, bounds[name]))).label(f"out_{name}")]
    per_label: dict[str, Any] = {}
    outlying = dict.fromkeys([*PLOTTED, "prs"], 0)
    for row in conn.execute(sa.select(s.c.g, *columns).group_by(s.c.g)).mappings():
        per_label[row["g"]] = {
            "with_outliers": {"prs": int(row["prs"]), "means": {n: _mean(row[f"sum_{n}"], row[f"n_{n}"]) for n in PLOTTED}},
            "no_outliers": {"prs": int(row["prs_in"]),
                            "means": {n: _mean(row[f"sum_in_{n}"], row[f"n_in_{n}"]) for n in PLOTTED}},
        }
        outlying["prs"] += int(row["outlying_prs"])
        for name in PLOTTED:
            outlying[name] += int(row[f"out_{name}"])
    return per_label, outlying


def _mean(total: Any, count: Any) -> float | None:
    return int(total) / int(count) if count else None


def _relabel(values: FromClause, label: Callable[[Any], Any]) -> FromClause:
    """The review and merge value counts per plot label (teams beyond the largest merged)."""
    inner = sa.select(values.c.c, label(values.c.g).label("g"), values.c.x, values.c.n).where(
        values.c.c.in_([0, 1])).subquery("labelled")
    return sa.select(inner.c.c, inner.c.g, inner.c.x, sa.func.sum(inner.c.n).label("n")).group_by(
        inner.c.c, inner.c.g, inner.c.x).subquery("label_values")


def distributions(conn: Connection, values: FromClause, ranges: Fences | None,
                  known: dict[str | None, dict[str, float | None]] | None = None) -> dict[str, list[dict[str, Any]]]:
    """{column: [violin, ...]}: "All teams" first, then each label; [] for a column with no values.

    `known` holds medians the caller has ({label or None (all teams): {column: median}}); those of
    the other labels are counted here.
    """
    medians: dict[Any, dict[str, Any]] = {}
    if known is None:
        medians = centres(conn, values, PLOTTED, qs=(0.5,), ranges=ranges)
    else:
        medians = {k: {n: ([m], None) for n, m in v.items() if m is not None} for k, v in known.items()}
        others = sa.select(values).where(values.c.g.not_in([k for k in known if k is not None])).subquery("others")
        counted = centres(conn, others, PLOTTED, qs=(0.5,), ranges=ranges)
        medians.update({k: v for k, v in counted.items() if k is not None})
    out = {}
    for i, name in enumerate(PLOTTED):
        fence = (ranges or {}).get(name)
        keep = [values.c.c == i, *([values.c.x.between(*fence)] if fence else [])]
        stats = _value_stats(conn, values, keep)
        if not stats:
            out[name] = []
            continue
        everything = _total(stats.values())
        lo, hi = everything["min"], everything["max"]
        bins = histogram(conn, values, keep, lo, hi)
        total = [sum(column) for column in zip(*bins.values(), strict=True)]
        out[name] = [_violin(ALL_TEAMS, everything, medians[None][name][0][0], lo, hi, total)] + [
            _violin(g, stats[g], medians[g][name][0][0], lo, hi, bins[g]) for g in sorted(stats)
        ]
    return out


def _value_stats(conn: Connection, values: FromClause, keep: list[Any]) -> dict[str, dict[str, int]]:
    v = values.c
    query = sa.select(v.g, sa.func.sum(v.n), sa.func.sum(v.x * v.n), sa.func.min(v.x), sa.func.max(v.x)).where(
        *keep).group_by(v.g)
    return {g: {"count": int(n), "sum": int(total), "min": int(low), "max": int(high)}
            for g, n, total, low, high in conn.execute(query)}


def _total(stats: Any) -> dict[str, int]:
    stats = list(stats)
    return {"count": sum(s["count"] for s in stats), "sum": sum(s["sum"] for s in stats),
            "min": min(s["min"] for s in stats), "max": max(s["max"] for s in stats)}


def _violin(label: str, stats: dict[str, int], median: float, lo: int, hi: int, counts: list[int]) -> dict[str, Any]:
    return {"label": label, "count": stats["count"], "mean": stats["sum"] / stats["count"], "median": median,
            "min": stats["min"], "max": stats["max"], "range": [lo, hi], "counts": counts}


def histogram(conn: Connection, values: FromClause, keep: list[Any], lo: int, hi: int) -> dict[str, list[int]]:
    """{label: counts in BINS equal bins over [lo, hi]} (one bin when lo == hi), by integer division."""
    v = values.c
    nbins = 1 if hi == lo else BINS
    if nbins == 1:
        position: Any = sa.literal_column("0", sa.Integer)
    else:
        offset = sa.cast(v.x - sa.cast(sa.literal(lo), sa.BigInteger), sa.BigInteger) * nbins
        position = offset // sa.cast(sa.literal(hi - lo), sa.BigInteger)
    binned = sa.select(v.g.label("g"), position.label("bin"), v.n.label("n")).where(*keep).subquery("binned")
    query = sa.select(binned.c.g, binned.c.bin, sa.func.sum(binned.c.n)).group_by(binned.c.g, binned.c.bin)
    out: dict[str, list[int]] = {}
    for g, position_value, count in conn.execute(query):
        counts = out.setdefault(g, [0] * nbins)
        counts[min(int(position_value), nbins - 1)] += int(count)
    return out
