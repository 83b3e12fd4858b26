"""What every route shares: the `endpoint` declaration, JSON errors, parameter helpers, list pages.

A route body wrapped in `@json_errors` turns a SluiceError into `{"error": "..."}` with its status,
and any other exception into a 500 with a generic sentence (the details go to the log, never out).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import Any

from chalice import Response

from chalicelib.errors import SluiceError
from chalicelib.openapi import Operation
from chalicelib.paging import page  # noqa: F401 - re-exported for the route modules
from chalicelib.routes.params import DEFAULT_LIMIT, INT8_MAX, Choice, Date, Int, Limit, Param, Query, Text

log = logging.getLogger("sluice")

# Every route requires an API key in deployed stages (API Gateway checks `x-api-key`);
# Chalice's local server and test client do not check keys, so local runs stay open.
AUTH = {"api_key_required": True}

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


def endpoint(
    summary: str,
    query: Query | None = None,
    path: tuple[Param, ...] = (),
    errors: tuple[int, ...] = (400,),
    ok_type: str = "application/json",
    ok_status: int = 200,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a view: its errors become `{"error": sentence}` responses (`json_errors`), and its
    summary and parameters its OpenAPI description (`chalicelib/openapi.py`)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        wrapped = json_errors(func)
        wrapped.__openapi__ = Operation(summary, query or Query(), path, errors, ok_status, ok_type)  # type: ignore[attr-defined]
        return wrapped

    return decorate


def base_url(request: Any) -> str:
    """The scheme and host the client called, for links in answers (result files, docs)."""
    headers = {k.lower(): v for k, v in (request.headers or {}).items()}
    host = headers.get("host") or "localhost"
    scheme = headers.get("x-forwarded-proto") or "http"
    stage = (request.context or {}).get("stage") if headers.get("x-forwarded-proto") else None
    return f"{scheme}://{host}" + (f"/{stage}" if stage else "")


# The helpers below parse one parameter each with the strict kinds of chalicelib/routes/params.py.


def int_param(params: dict[str, str], name: str, default: int | None = None, low: int | None = None,
              high: int | None = INT8_MAX) -> int | None:
    return Int(name, default=default, low=low, high=high).value(params.get(name))


def limit_param(params: dict[str, str], default: int = DEFAULT_LIMIT) -> int:
    return Limit(default).value(params.get("limit"))


def choice_param(params: dict[str, str], name: str, choices: tuple[str, ...], default: str | None = None) -> str | None:
    return Choice(name, default=default, choices=choices).value(params.get(name))


def text_param(params: dict[str, str], name: str, max_len: int = 200) -> str | None:
    return Text(name, max_len=max_len).value(params.get(name))


def date_param(params: dict[str, str], name: str) -> dt.date | None:
    return Date(name).value(params.get(name))
