"""The summary statistics sluice reports: count, mean, median and mode of a series of numbers.

One pure function shared by the GitHub metrics (time to first review, time to merge) and the pr-reviews
reports, so that the two compute their figures the same way and can be compared. Missing values
(None, NaN) are left out; the mode is the smallest of the most frequent values (a stable answer when
several values tie); an empty series gives count 0 and None for the rest.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable
from typing import Any


def summary(values: Iterable[Any]) -> dict[str, float | int | None]:
    """{"count", "mean", "median", "mode"} of `values` (a list, a tuple, a numpy array, a Series)."""
    clean = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not clean:
        return {"count": 0, "mean": None, "median": None, "mode": None}
    counts = Counter(clean)
    top = max(counts.values())
    return {
        "count": len(clean),
        "mean": _tidy(statistics.fmean(clean)),
        "median": _tidy(statistics.median(clean)),
        "mode": _tidy(min(v for v, n in counts.items() if n == top)),
    }


def _tidy(value: float) -> float | int:
    """Whole numbers as ints (seconds stay seconds), others rounded to 2 decimals."""
    return int(value) if float(value).is_integer() else round(value, 2)
