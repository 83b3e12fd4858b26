"""Request parameters: one strict parser per kind, declared once per route, which also documents it.

A route declares its parameters as a `Query` of `Param`s; `Query.parse` turns the raw strings into
values or raises BadRequest with a sentence naming the parameter, what it expects and what it got.
The same declaration is the route's OpenAPI description (`chalicelib/openapi.py`), so the parser
and the documentation cannot drift apart.

Every kind is strict: ASCII digits only (`²` is not a number), the whole value must match (no
`2018-05-21junk`), bounds are the column's own (an id beyond int4 is a 400, not a database error),
and text never holds a control character (PostgreSQL refuses NUL).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.datasets.checks import DATE_MAX, DATE_MIN
from chalicelib.errors import BadRequest

INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100

_INT = re.compile(r"[+-]?[0-9]{1,19}", re.ASCII)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?", re.ASCII)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_INSTANT = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"(?:[T ](?P<time>[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?))?"
    r"(?P<zone>Z|[+-][0-9]{2}(?::?[0-9]{2})?)?",
    re.ASCII,
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 60 else raw[:57] + "...")


@dataclass(frozen=True)
class Param:
    """One parameter: its name, whether it is required, its default and a line of description."""

    name: str
    description: str = ""
    required: bool = False
    default: Any = None

    def parse(self, raw: str) -> Any:  # pragma: no cover - every kind overrides it
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def value(self, raw: str | None) -> Any:
        if raw is None or raw == "":
            if self.required:
                raise BadRequest(f"'{self.name}' is required: {self.description or 'give a value'}.")
            return self.default
        return self.parse(raw)

    def fail(self, expected: str, raw: str) -> BadRequest:
        return BadRequest(f"'{self.name}' must be {expected}; got {_shown(raw)}.")


@dataclass(frozen=True)
class Int(Param):
    low: int | None = None
    high: int | None = INT8_MAX

    def parse(self, raw: str) -> int:
        if not _INT.fullmatch(raw):
            raise self.fail("a whole number", raw)
        value = int(raw)
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise BadRequest(f"'{self.name}' must be {self.bounds()}; got {value}.")
        return value

    def bounds(self) -> str:
        if self.low is not None and self.high is not None:
            return f"between {self.low} and {self.high}"
        return f"at least {self.low}" if self.low is not None else f"at most {self.high}"

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer"}
        if self.low is not None:
            out["minimum"] = self.low
        if self.high is not None:
            out["maximum"] = self.high
        if self.default is not None:
            out["default"] = self.default
        return out


def Id(name: str, description: str = "", high: int = INT4_MAX, **kwargs: Any) -> Int:  # noqa: N802 - a kind
    """A row id (or an id cursor): a whole number from 1 to the id column's largest value."""
    return Int(name, description, low=1, high=high, **kwargs)


def Limit(default: int = DEFAULT_LIMIT) -> Int:  # noqa: N802 - a kind
    return Int("limit", f"how many items per page (1 to {MAX_LIMIT})", default=default, low=1, high=MAX_LIMIT)


@dataclass(frozen=True)
class Number(Param):
    low: float | None = None
    high: float | None = None

    def parse(self, raw: str) -> float:
        if not _NUMBER.fullmatch(raw):
            raise self.fail("a number like 7.5", raw)
        value = float(raw)
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise BadRequest(f"'{self.name}' must be between {self.low:g} and {self.high:g}; got {value:g}.")
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "number"}
        if self.low is not None:
            out["minimum"] = self.low
        if self.high is not None:
            out["maximum"] = self.high
        return out


@dataclass(frozen=True)
class Text(Param):
    max_len: int = 200

    def parse(self, raw: str) -> str:
        if len(raw) > self.max_len:
            raise BadRequest(f"'{self.name}' must be at most {self.max_len} characters; got {len(raw)}.")
        if _CONTROL.search(raw) or any(0xD800 <= ord(c) <= 0xDFFF for c in raw):
            raise BadRequest(f"'{self.name}' must not hold control characters; got {_shown(raw)}.")
        return raw

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "maxLength": self.max_len}


@dataclass(frozen=True)
class Choice(Param):
    choices: tuple[str, ...] = ()

    def parse(self, raw: str) -> str:
        if raw not in self.choices:
            raise self.fail(f"one of {', '.join(self.choices)}", raw)
        return raw

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string", "enum": list(self.choices)}
        if self.default is not None:
            out["default"] = self.default
        return out


def _in_window(name: str, day: dt.date, raw: str) -> None:
    if not DATE_MIN <= day < DATE_MAX:
        last = DATE_MAX - dt.timedelta(days=1)
        raise BadRequest(f"'{name}' must be between {DATE_MIN} and {last}; got {_shown(raw)}.")


@dataclass(frozen=True)
class Date(Param):
    def parse(self, raw: str) -> dt.date:
        if not _DATE.fullmatch(raw):
            raise self.fail("a date like 2018-05-21", raw)
        try:
            day = dt.date.fromisoformat(raw)
        except ValueError:
            raise self.fail("a real date like 2018-05-21", raw) from None
        _in_window(self.name, day, raw)
        return day

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "date"}


@dataclass(frozen=True)
class Instant(Param):
    """ISO 8601 (`2021-03-01T00:00:00Z`, an offset, or none meaning UTC) or `2021-03-01 00:00:00`;
    returned as a naive UTC datetime."""

    def parse(self, raw: str) -> dt.datetime:
        match = _INSTANT.fullmatch(raw.strip())
        if not match:
            raise self.fail("an instant like 2021-03-01T00:00:00Z or 2021-03-01 00:00:00", raw)
        zone = match["zone"] or ""
        if zone and zone != "Z" and len(zone) == 3:
            zone += ":00"
        text = f"{match['date']}T{match['time'] or '00:00'}{'+00:00' if zone == 'Z' else zone}"
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            raise self.fail("a real date and time", raw) from None
        if value.tzinfo is not None:
            try:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
            except OverflowError:
                raise self.fail("an instant between 1970 and 2099", raw) from None
        _in_window(self.name, value.date(), raw)
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "date-time"}


@dataclass(frozen=True)
class Cursor(Param):
    """An opaque keyset cursor (the `next` of a previous page): a list of typed values.

    `parts` names the type of each value ("int", "str", "date"); a cursor that does not decode to
    exactly those is a 400, never a database error.
    """

    parts: tuple[str, ...] = ("int",)

    def parse(self, raw: str) -> list[Any]:
        bad = self.fail("the 'next' value of a previous page", raw)
        if len(raw) > 1000:
            raise bad
        try:
            values = json.loads(base64.urlsafe_b64decode(raw.encode("ascii") + b"=" * (-len(raw) % 4)))
        except (ValueError, UnicodeError):
            raise bad from None
        if not isinstance(values, list) or len(values) != len(self.parts):
            raise bad
        out = []
        for kind, value in zip(self.parts, values, strict=True):
            if kind == "int" and isinstance(value, int) and not isinstance(value, bool) and abs(value) <= INT8_MAX:
                out.append(value)
            elif kind == "str" and isinstance(value, str) and not _CONTROL.search(value) and len(value) <= 1000:
                out.append(value)
            elif kind == "float" and isinstance(value, int | float) and math.isfinite(value):
                out.append(float(value))
            else:
                raise bad
        return out

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "maxLength": 1000}


def encode_cursor(values: list[Any]) -> str:
    """The `next` token for a keyset page ending at `values` (see Cursor)."""
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


@dataclass(frozen=True)
class BBox(Param):
    """`min_lon,min_lat,max_lon,max_lat`, four numbers within the world's bounds."""

    def parse(self, raw: str) -> tuple[float, float, float, float]:
        parts = raw.split(",")
        expected = "four numbers min_lon,min_lat,max_lon,max_lat like 7.6,45.0,7.7,45.1"
        if len(parts) != 4 or not all(_NUMBER.fullmatch(p.strip()) for p in parts):
            raise self.fail(expected, raw)
        a, b, c, d = (float(p) for p in parts)
        if not (-180 <= a <= c <= 180 and -90 <= b <= d <= 90):
            raise BadRequest(
                f"'{self.name}' must satisfy -180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90; "
                f"got {_shown(raw)}."
            )
        return a, b, c, d

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": r"^-?[0-9.]+,-?[0-9.]+,-?[0-9.]+,-?[0-9.]+$"}


@dataclass(frozen=True)
class Query:
    """The query parameters a route takes; unknown names are a 400 (a typo should not pass silently)."""

    params: tuple[Param, ...] = field(default_factory=tuple)

    def __init__(self, *params: Param) -> None:
        object.__setattr__(self, "params", tuple(params))

    def parse(self, raw: Mapping[str, str] | None) -> dict[str, Any]:
        raw = dict(raw or {})
        known = {p.name for p in self.params}
        unknown = sorted(set(raw) - known)
        if unknown:
            takes = ", ".join(sorted(known)) or "no parameters"
            raise BadRequest(f"Unknown parameter {_shown(unknown[0])}; this route takes {takes}.")
        return {p.name: p.value(raw.get(p.name)) for p in self.params}


def path_value(param: Param, raw: str) -> Any:
    """A path parameter (always present): parsed by its kind like a query parameter."""
    return param.parse(raw)
