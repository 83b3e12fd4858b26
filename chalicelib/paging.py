"""Keyset pages, the one shape of every list: `{"items": [...], "next": cursor-or-null}`.

A query fetches up to `limit + 1` rows; the extra row only proves that a next page exists, so `next`
is non-null exactly when more items follow, and passing it back as `after` continues after the last
item shown, without gaps or repeats.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def page(items: list[dict[str, Any]], limit: int, cursor: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """`{"items", "next"}`: `items` holds up to limit + 1 rows; the extra one only proves a next page."""
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next": str(cursor(items[-1])) if more and items else None}
