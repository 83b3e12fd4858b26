"""Test helpers for pr-reviews: CSV bytes from rows, and the report computed independently by pandas."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
from typing import Any

import numpy as np
import pandas as pd

HEADER = "review_time,team,date,merge_time"
TIMES = ("review_time", "merge_time", "total_time")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOT_NAMES = sorted(
    f"{kind}_{variant}_{suffix}"
    for variant in ("with_outliers", "no_outliers")
    for kind, suffix in (("review_time_distribution", "violin_plot.png"), ("merge_time_distribution", "violin_plot.png"),
                         ("num_prs_by_team", "pie_chart_plot.png"), ("mean_time", "stacked_bar_plot.png"))
)


def csv_bytes(rows: list[tuple[Any, Any, Any, Any]], header: str = HEADER, newline: str = "\n") -> bytes:
    """A file of (review_time, team, date, merge_time) rows; None is an empty cell."""
    def cell(value: Any) -> str:
        return "" if value is None else str(value)

    lines = [header] + [",".join(cell(v) for v in row) for row in rows]
    return (newline.join(lines) + newline).encode()


def frame(rows: list[tuple[Any, Any, Any, Any]]) -> pd.DataFrame:
    """The rows as pandas would hold them after reading the file (NaN for empty cells)."""
    df = pd.DataFrame(rows, columns=["review_time", "team", "date", "merge_time"])
    for name in ("review_time", "merge_time"):
        df[name] = pd.to_numeric(df[name]).astype("float64")
    df["date"] = pd.to_datetime(df["date"])
    return df


def read_file(data: bytes) -> pd.DataFrame:
    """A pr-reviews file read by pandas on its own terms: Excel serial days become dates."""
    df = pd.read_csv(io.BytesIO(data), dtype={"team": "string", "date": "string"}, encoding="utf-8-sig")
    df = df[["review_time", "team", "date", "merge_time"]].copy()
    serial = df["date"].str.fullmatch(r"[0-9]+(\.[0-9]+)?").fillna(False).astype(bool)
    dates = pd.to_datetime(df["date"].where(~serial), format="%Y-%m-%d", errors="raise")
    from_serial = pd.to_datetime(pd.to_numeric(df["date"].where(serial)).apply(np.floor), unit="D", origin="1899-12-30")
    df["date"] = dates.where(~serial, from_serial)
    df["team"] = df["team"].astype(object).where(df["team"].notna(), None)
    for name in ("review_time", "merge_time"):
        df[name] = df[name].astype("float64")
    return df


def _number(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return float(value)


def _mode(series: pd.Series) -> Any:
    modes = series.dropna().mode()
    return None if modes.empty else float(modes.min())


def block(g: pd.DataFrame) -> dict[str, Any]:
    """pandas' own figures for one group: mean rounded by Series.round(1), median, smallest mode."""
    return {
        "mean": {c: _number(g[c].mean().round(1)) if g[c].count() else None for c in TIMES},
        "mode": {c: _mode(g[c]) for c in TIMES},
        "median": {c: _number(g[c].median()) for c in TIMES},
        "count": len(g),
        "counts": {c: int(g[c].count()) for c in TIMES},
    }


def expected_report(df: pd.DataFrame) -> dict[str, Any]:
    """The report, computed by pandas from the rows (outliers section left out)."""
    df = df.copy()
    df["total_time"] = df["review_time"] + df["merge_time"]
    named = df[df["team"].notna()]
    teams = sorted(named["team"].unique())
    dates = df["date"].dropna()
    return {
        "total_num_observations": len(df),
        "teams": teams,
        "date_interval": {
            "begin": dates.min().date().isoformat() if len(dates) else None,
            "end": dates.max().date().isoformat() if len(dates) else None,
        },
        "stats": block(df),
        "per_team": {
            t: {**block(g), "num_prs_without_review": int((g["review_time"] == 0).sum()),
                "num_prs_without_ci": int((g["merge_time"] == 0).sum())}
            for t, g in named.groupby("team") if t in teams
        },
        "num_prs_without_review": int((df["review_time"] == 0).sum()),
        "num_prs_without_ci": int((df["merge_time"] == 0).sum()),
        "num_missing_values": {c: int(df[c].isna().sum()) for c in ("review_time", "merge_time", "date", "team")},
    }


def without_outliers_section(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "outliers"}


def normalised(value: Any) -> Any:
    """Numbers as floats (the API says 139 where pandas says 139.0), for an exact comparison."""
    return json.loads(json.dumps(value), parse_int=float)


def day(offset: int) -> str:
    return (dt.date(2023, 1, 1) + dt.timedelta(days=offset)).isoformat()
