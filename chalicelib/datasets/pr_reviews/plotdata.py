"""What the eight plots of an upload show, read from the database in a few grouped queries.

The result (`plot_inputs`) is plain JSON of bounded size, whatever the number of rows: per plotted
label and time column a histogram of BINS bins and its count, mean, median and extremes; PRs and mean
times per label. `plots.render` draws from it alone, so the drawing can run anywhere.

The outlier rule (OUTLIER_RULE): Tukey's fences. Over the whole upload, a review_time (merge_time) is
an outlier when it lies below Q1 - 1.5 x IQR or above Q3 + 1.5 x IQR of its own column (IQR = Q3 - Q1,
quartiles by linear interpolation). The distribution plots "without outliers" leave out the outlying
values of their column; the PRs-per-team pie and the mean-time bars leave out every PR with an
outlying review_time or merge_time. A missing value is never an outlier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from chalicelib.datasets.pr_reviews.summary import Figures, basics, centre_values, source
from chalicelib.datasets.pr_reviews.tables import rows

OUTLIER_RULE = (
    "Tukey's fences over the whole upload: a review_time (merge_time) below Q1 - 1.5 x IQR or above "
    "Q3 + 1.5 x IQR of its column is an outlier (IQR = Q3 - Q1). Distributions without outliers leave "
    "out the outlying values of their column; PRs per team and mean times leave out every PR with an "
    "outlying review_time or merge_time."
)
PLOTTED = ("review_time", "merge_time")
VARIANTS = ("with_outliers", "no_outliers")
#: More teams than this are plotted as the largest ones plus "Other teams".
MAX_LABELS = 12
BINS = 100
ALL_TEAMS = "All teams"
OTHER_TEAMS = "Other teams"
NO_TEAM = "(no team)"


def fences(overall: Figures) -> dict[str, tuple[float, float] | None]:
    """{column: (low, high)} from the overall quartiles; None for a column with no values."""
    out: dict[str, tuple[float, float] | None] = {}
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


def inlier_rows(bounds: dict[str, tuple[float, float] | None]) -> Any:
    """Condition on `rows`: the PR has no outlying time."""
    return sa.and_(*[_within(rows.c[name], bounds[name]) for name in PLOTTED])


def outliers(conn: Connection, where: Sequence[Any], overall: Figures) -> dict[str, Any]:
    """The report's "outliers" section: the rule, each column's quartiles and fences, and the counts."""
    bounds = fences(overall)
    c = rows.c
    counts = [sa.func.count().filter(sa.not_(_within(c[name], bounds[name]))) for name in PLOTTED]
    counts.append(sa.func.count().filter(sa.not_(inlier_rows(bounds))))
    found = conn.execute(sa.select(*counts).where(*where)).one()
    section: dict[str, Any] = {"rule": OUTLIER_RULE}
    for i, name in enumerate(PLOTTED):
        q, fence = overall.quartiles.get(name), bounds[name]
        section[name] = None if fence is None or not q else {
            "q1": q[0], "q3": q[2], "low": fence[0], "high": fence[1], "count": int(found[i]),
        }
    section["prs"] = int(found[len(PLOTTED)])
    return section


def labels(team_figures: dict[str | None, Figures], missing_teams: bool) -> tuple[list[str], Any]:
    """(plot labels in order, SQL expression giving each row its label)."""
    teams = [k for k in team_figures if k is not None]
    top = sorted(sorted(teams), key=lambda t: -team_figures[t].rows)[:MAX_LABELS]
    order = sorted(top)
    team = rows.c.team
    if len(teams) <= MAX_LABELS:
        expression = sa.func.coalesce(team, NO_TEAM)
    else:
        order.append(OTHER_TEAMS)
        expression = sa.case((team.in_(top), team), (team.is_(None), NO_TEAM), else_=OTHER_TEAMS)
    if missing_teams:
        order.append(NO_TEAM)
    return order, expression


def plot_inputs(conn: Connection, where: Sequence[Any], title: str, team_figures: dict[str | None, Figures]
                ) -> dict[str, Any]:
    """Everything `plots.render` needs, for the rows matching `where` (one upload)."""
    overall = team_figures[None]
    bounds = fences(overall)
    order, label = labels(team_figures, overall.teams_present < overall.rows)
    variants: dict[str, Any] = {}
    for variant in VARIANTS:
        keep = [] if variant == "with_outliers" else [inlier_rows(bounds)]
        per_label = basics(conn, source([*where, *keep], label), PLOTTED)
        variants[variant] = {
            "prs": {k: f.rows for k, f in per_label.items() if k is not None},
            "means": {
                k: {name: f.mean(name) for name in PLOTTED} for k, f in per_label.items() if k is not None
            },
            "distributions": {
                name: distribution(conn, [*where, *_fenced(name, bounds, variant)], label, name)
                for name in PLOTTED
            },
        }
    return {"title": title, "prs": overall.rows, "labels": order, "fences": bounds, "rule": OUTLIER_RULE,
            "variants": variants}


def _fenced(name: str, bounds: dict[str, tuple[float, float] | None], variant: str) -> list[Any]:
    x = rows.c[name]
    fence = bounds[name]
    if variant == "with_outliers" or fence is None:
        return [x.is_not(None)]
    return [x.between(fence[0], fence[1])]


def distribution(conn: Connection, where: Sequence[Any], label: Any, name: str) -> list[dict[str, Any]]:
    """Per label (and "All teams" first): count, mean, median, min, max and a histogram of `name`."""
    s = source(where, label)
    figs = basics(conn, s, [name])
    if not figs[None].counts[name]:
        return []
    medians = centre_values(conn, s, [name], qs=(0.5,))
    lo, hi = figs[None].minimum[name], figs[None].maximum[name]
    bins = histogram(conn, s, name, lo, hi)
    total = [0] * len(next(iter(bins.values())))
    for counts in bins.values():
        total = [a + b for a, b in zip(total, counts, strict=True)]
    out = [_violin(ALL_TEAMS, figs[None], medians[None][name][0][0], name, lo, hi, total)]
    for key in sorted(k for k in figs if k is not None):
        out.append(_violin(key, figs[key], medians[key][name][0][0], name, lo, hi, bins[key]))
    return out


def _violin(label: str, f: Figures, median: float, name: str, lo: int, hi: int, counts: list[int]) -> dict[str, Any]:
    return {"label": label, "count": f.counts[name], "mean": f.mean(name), "median": median,
            "min": f.minimum[name], "max": f.maximum[name], "range": [lo, hi], "counts": counts}


def histogram(conn: Connection, s: Any, name: str, lo: int, hi: int) -> dict[str, list[int]]:
    """{label: counts in BINS equal bins over [lo, hi]} (one bin when lo == hi), by integer division."""
    x = s.c[name]
    nbins = 1 if hi == lo else BINS
    if nbins == 1:
        position = sa.literal(0, sa.Integer)
    else:
        offset = sa.cast(x - sa.cast(sa.literal(lo), sa.BigInteger), sa.BigInteger) * nbins
        position = offset // sa.cast(sa.literal(hi - lo), sa.BigInteger)
    binned = sa.select(s.c.g.label("g"), position.label("bin")).where(x.is_not(None)).subquery("binned")
    query = sa.select(binned.c.g, binned.c.bin, sa.func.count()).group_by(binned.c.g, binned.c.bin)
    out: dict[str, list[int]] = {}
    for g, position_value, count in conn.execute(query):
        counts = out.setdefault(g, [0] * nbins)
        counts[min(int(position_value), nbins - 1)] += int(count)
    return out
