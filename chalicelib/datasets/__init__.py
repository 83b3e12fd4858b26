"""The datasets sluice ingests, chosen by the first path segment of the uploaded key."""

from __future__ import annotations

from types import ModuleType

from chalicelib.datasets import plays, pr_reviews, trips

DATASETS: dict[str, ModuleType] = {module.PREFIX: module for module in (trips, pr_reviews, plays)}


def for_key(key: str) -> ModuleType | None:
    """The dataset module for an object key like 'trips/2018-05.csv', or None."""
    prefix = key.split("/", 1)[0] if "/" in key else ""
    return DATASETS.get(prefix)


def names() -> list[str]:
    return sorted(DATASETS)
