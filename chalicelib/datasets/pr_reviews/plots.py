"""The eight PNG plots of an upload, drawn with matplotlib (Agg, no display) from `plot_inputs` alone.

`render(inputs) -> {file name: PNG bytes}` is a pure function: it reads no database, no S3 and no
environment, so it can run in the Lambda that finishes the file or anywhere else. matplotlib is
imported only when it is called.

The plots (the seed Ath's names), each with and without outliers (see plotdata.OUTLIER_RULE):
- review_time_distribution_*_violin_plot.png, merge_time_distribution_*_violin_plot.png: one violin
  per team (and all teams first), its median and mean marked;
- num_prs_by_team_*_pie_chart_plot.png: PRs per team;
- mean_time_*_stacked_bar_plot.png: mean review time and mean merge time per team, stacked.
Times are shown in the unit that suits their size (seconds, minutes, hours or days), named on the axis.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

VARIANT_WORDS = {"with_outliers": "outliers included", "no_outliers": "outliers left out"}
FILE_VARIANT = {"with_outliers": "with_outliers", "no_outliers": "no_outliers"}
TIME_WORDS = {"review_time": "Review time", "merge_time": "Merge time"}
UNITS = (("seconds", 1), ("minutes", 60), ("hours", 3600), ("days", 86400))
COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#17BECF",
           "#CCB974", "#64B5CD", "#2F4B7C", "#A05195", "#F95D6A", "#FFA600")
ALL_COLOUR = "#9A9A9A"
POINTS = 200
DPI = 100


def names() -> list[str]:
    """The file names `render` returns, in a fixed order."""
    out = []
    for variant in FILE_VARIANT.values():
        out += [f"review_time_distribution_{variant}_violin_plot.png",
                f"merge_time_distribution_{variant}_violin_plot.png",
                f"num_prs_by_team_{variant}_pie_chart_plot.png",
                f"mean_time_{variant}_stacked_bar_plot.png"]
    return out


def render(inputs: dict[str, Any]) -> dict[str, bytes]:
    """{file name: PNG bytes} for the eight plots of one upload's `plot_inputs`."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    out: dict[str, bytes] = {}
    for variant, suffix in FILE_VARIANT.items():
        data = inputs["variants"][variant]
        for name in ("review_time", "merge_time"):
            fig = Figure(figsize=(10, 5.6), dpi=DPI, layout="constrained")
            _violins(fig, inputs, data["distributions"][name], name, variant)
            out[f"{name}_distribution_{suffix}_violin_plot.png"] = _png(fig)
        fig = Figure(figsize=(8, 6), dpi=DPI, layout="constrained")
        _pie(fig, inputs, data["prs"], variant)
        out[f"num_prs_by_team_{suffix}_pie_chart_plot.png"] = _png(fig)
        fig = Figure(figsize=(10, 5.6), dpi=DPI, layout="constrained")
        _stacked_bars(fig, inputs, data["means"], variant)
        out[f"mean_time_{suffix}_stacked_bar_plot.png"] = _png(fig)
    return out


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def unit_for(largest: float) -> tuple[str, int]:
    """The largest unit in which `largest` seconds is still at least 2 (seconds below 2 minutes)."""
    chosen = UNITS[0]
    for unit in UNITS:
        if largest >= 2 * unit[1]:
            chosen = unit
    return chosen


def _subtitle(inputs: dict[str, Any], variant: str, left_out: int | None = None) -> str:
    text = f"{inputs['title']}: {inputs['prs']:,} PRs, {VARIANT_WORDS[variant]}"
    if left_out:
        text += f" ({left_out:,} left out, 1.5 x IQR rule)"
    return text


def _violins(fig: Any, inputs: dict[str, Any], violins: list[dict[str, Any]], name: str, variant: str) -> None:
    ax = fig.add_subplot()
    word = TIME_WORDS[name]
    fig.suptitle(f"{word} distribution by team", fontsize=14)
    if not violins:
        ax.set_title(_subtitle(inputs, variant), fontsize=10)
        ax.text(0.5, 0.5, f"No {word.lower()} values in this file", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    left_out = None
    if variant == "no_outliers":
        everything = inputs["variants"]["with_outliers"]["distributions"][name]
        left_out = (everything[0]["count"] if everything else 0) - violins[0]["count"]
    ax.set_title(_subtitle(inputs, variant, left_out), fontsize=10)
    unit, scale = unit_for(max(v["max"] for v in violins))
    stats = [_violin_stats(v, scale) for v in violins]
    positions = list(range(1, len(stats) + 1))
    parts = ax.violin(stats, positions=positions, widths=0.8, showmeans=True, showmedians=True, showextrema=True)
    for violin, body in zip(violins, parts["bodies"], strict=True):
        body.set_facecolor(_colour(inputs["labels"], violin["label"]))
        body.set_edgecolor("#333333")
        body.set_alpha(0.75)
    for lines in ("cbars", "cmins", "cmaxes"):
        parts[lines].set_color("#555555")
    parts["cmedians"].set_color("black")
    parts["cmeans"].set_color("#C44E52")
    parts["cmeans"].set_linestyle("--")
    ax.set_xticks(positions, [f"{v['label']}\n(n={v['count']:,})" for v in violins],
                  rotation=30 if len(violins) > 6 else 0, ha="right" if len(violins) > 6 else "center")
    ax.set_xlabel("team")
    ax.set_ylabel(f"{word.lower()} ({unit})")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    from matplotlib.lines import Line2D

    ax.legend(handles=[Line2D([], [], color="black", label="median"),
                       Line2D([], [], color="#C44E52", linestyle="--", label="mean")], loc="upper right")


def _violin_stats(v: dict[str, Any], scale: int) -> dict[str, Any]:
    """matplotlib's violin statistics from a histogram: a Gaussian kernel density over the bin centres,
    weighted by their counts, with Scott's bandwidth (as matplotlib's own violinplot uses)."""
    lo, hi = v["range"]
    counts = np.asarray(v["counts"], dtype=float)
    low, high = v["min"], v["max"]
    if high == low or counts.sum() == 0:
        coords = np.array([low, high], dtype=float)
        vals = np.array([1.0, 1.0])
    else:
        width = (hi - lo) / len(counts)
        centres = lo + width * (np.arange(len(counts)) + 0.5)
        coords = np.linspace(low, high, POINTS)
        vals = kde(centres, counts, coords, width)
    return {"coords": coords / scale, "vals": vals, "mean": v["mean"] / scale, "median": v["median"] / scale,
            "min": low / scale, "max": high / scale}


def kde(centres: np.ndarray, weights: np.ndarray, coords: np.ndarray, bin_width: float) -> np.ndarray:
    """Weighted Gaussian kernel density at `coords` (Scott's rule; the bin width as a floor)."""
    n = weights.sum()
    mean = (weights * centres).sum() / n
    std = np.sqrt((weights * (centres - mean) ** 2).sum() / n + bin_width**2 / 12)
    bandwidth = max(std * n ** (-1 / 5), bin_width)
    z = (coords[:, None] - centres[None, :]) / bandwidth
    return (np.exp(-0.5 * z**2) * weights[None, :]).sum(axis=1) / (n * bandwidth * np.sqrt(2 * np.pi))


def _colour(labels: Sequence[str], label: str) -> str:
    """A team's colour, the same in every plot of the upload (grey for all teams together)."""
    if label not in labels:
        return ALL_COLOUR
    return COLOURS[labels.index(label) % len(COLOURS)]


def _ordered(labels: Sequence[str], values: dict[str, Any]) -> list[str]:
    return [label for label in labels if label in values]


def _pie(fig: Any, inputs: dict[str, Any], prs: dict[str, int], variant: str) -> None:
    ax = fig.add_subplot()
    labels = _ordered(inputs["labels"], prs)
    total = sum(prs.values())
    left_out = inputs["prs"] - total if variant == "no_outliers" else None
    fig.suptitle("Pull requests per team", fontsize=14)
    ax.set_title(_subtitle(inputs, variant, left_out), fontsize=10)
    if not total:
        ax.text(0.5, 0.5, "No pull requests", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    sizes = [prs[label] for label in labels]
    ax.pie(sizes, labels=[f"{label}\n{prs[label]:,} PRs" for label in labels],
           colors=[_colour(inputs["labels"], label) for label in labels],
           autopct=lambda pct: f"{pct:.1f}%" if pct >= 3 else "", startangle=90, counterclock=False,
           wedgeprops={"edgecolor": "white"})
    ax.axis("equal")


def _stacked_bars(fig: Any, inputs: dict[str, Any], means: dict[str, dict[str, float | None]], variant: str) -> None:
    ax = fig.add_subplot()
    labels = _ordered(inputs["labels"], means)
    fig.suptitle("Mean time per team: review, then merge", fontsize=14)
    left_out = inputs["prs"] - sum(inputs["variants"][variant]["prs"].values()) if variant == "no_outliers" else None
    ax.set_title(_subtitle(inputs, variant, left_out), fontsize=10)
    if not labels:
        ax.text(0.5, 0.5, "No pull requests", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    review = np.array([means[label]["review_time"] or 0.0 for label in labels])
    merge = np.array([means[label]["merge_time"] or 0.0 for label in labels])
    unit, scale = unit_for(float((review + merge).max()))
    x = np.arange(len(labels))
    ax.bar(x, review / scale, 0.6, label="mean review time", color=COLOURS[0])
    bars = ax.bar(x, merge / scale, 0.6, bottom=review / scale, label="mean merge time", color=COLOURS[1])
    ax.bar_label(bars, labels=[f"{v / scale:,.1f}" for v in review + merge], padding=3, fontsize=9)
    ax.set_xticks(x, labels, rotation=30 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center")
    ax.set_xlabel("team")
    ax.set_ylabel(f"mean time ({unit})")
    ax.margins(y=0.12)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper right")
