"""What every route shares: parameter parsing with clear 400s, JSON errors, list pages.

A route body wrapped in `@json_errors` turns a SluiceError into `{"error": "..."}` with its status,
and any other exception into a 500 with a generic sentence (the details go to the log, never out).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from collections.abc import Callable
from typing import Any

from chalice import Response

from chalicelib.errors import BadRequest, SluiceError

log = logging.getLogger("sluice")

# Every route requires an API key in deployed stages (API Gateway checks `x-api-key`);
# Chalice's local server and test client do not check keys, so local runs stay open.
AUTH = {"api_key_required": True}

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


def error_response(status: int, message: str) -> Response:
    return Response(body={"error": message}, status_code=status, headers={"Content-Type": "application/json"})


def json_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SluiceError as exc:
            return error_response(exc.status, str(exc))
        except Exception:
            log.exception("unhandled error in %s", func.__name__)
            return error_response(500, "Something went wrong on our side; the error has been logged.")

    return wrapper


def query_params(request: Any) -> dict[str, str]:
    return dict(request.query_params or {})


def int_param(params: dict[str, str], name: str, default: int | None = None, low: int | None = None,
              high: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?\d{1,18}", raw.strip()):
        raise BadRequest(f"'{name}' must be a whole number, got {raw!r}.")
    value = int(raw)
    if low is not None and value < low or high is not None and value > high:
        raise BadRequest(f"'{name}' must be between {low} and {high}, got {value}.")
    return value


def limit_param(params: dict[str, str], default: int = DEFAULT_LIMIT) -> int:
    return int_param(params, "limit", default, 1, MAX_LIMIT)


def choice_param(params: dict[str, str], name: str, choices: tuple[str, ...], default: str | None = None) -> str | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise BadRequest(f"'{name}' must be one of {', '.join(choices)}; got {raw!r}.")
    return raw


def text_param(params: dict[str, str], name: str, max_len: int = 200) -> str | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > max_len:
        raise BadRequest(f"'{name}' is longer than {max_len} characters.")
    return raw


def date_param(params: dict[str, str], name: str) -> dt.date | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return dt.date.fromisoformat(raw.strip()[:10]) if len(raw.strip()) >= 10 else dt.date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"'{name}' must be a date like 2018-05-21, got {raw!r}.") from None


def page(items: list[dict[str, Any]], limit: int, cursor: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """`{"items", "next"}`: `items` holds up to limit + 1 rows; the extra one only proves a next page."""
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next": str(cursor(items[-1])) if more and items else None}
