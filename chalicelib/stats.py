"""The summary statistics sluice reports: count, mean, median and mode of a series of numbers.

One definition shared by the GitHub metrics (time to first review, time to merge) and the pr-reviews
reports, so that the two compute their figures the same way and can be compared. The pr-reviews
reports compute the same figures inside the database (chalicelib/datasets/pr_reviews/summary.py) and
round them with `rounded` below; their tests check them against `summary`.

- Missing values (None, NaN) are left out.
- The median of an even count is the mean of the two middle values.
- The mode is the smallest of the most frequent values (a stable answer when several values tie).
- Means are rounded as numpy and pandas round: the value times 10**decimals to the nearest whole
  number, halves to even (so the seed's pandas figures come out identical).
- An empty series gives count 0 and None for the rest.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable
from typing import Any


def summary(values: Iterable[Any], decimals: int = 2) -> dict[str, float | int | None]:
    """{"count", "mean", "median", "mode"} of `values` (a list, a tuple, a numpy array, a Series)."""
    clean = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not clean:
        return {"count": 0, "mean": None, "median": None, "mode": None}
    counts = Counter(clean)
    top = max(counts.values())
    return {
        "count": len(clean),
        "mean": rounded(statistics.fmean(clean), decimals),
        "median": rounded(statistics.median(clean), decimals),
        "mode": rounded(min(v for v, n in counts.items() if n == top), decimals),
    }


def rounded(value: float | None, decimals: int = 2) -> float | int | None:
    """`value` rounded to `decimals` places as numpy's `round` does; whole numbers as ints (seconds
    stay seconds). None stays None."""
    if value is None:
        return None
    scale = 10**decimals
    out = round(float(value) * scale) / scale
    return int(out) if out.is_integer() else out
