"""The trips routes: list, get, counts, weekly series, weekly average, similar-trip groups."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib.datasets import trips
from chalicelib.errors import BadRequest
from chalicelib.routes.common import engine, settings
from chalicelib.routes.http import (
    AUTH,
    choice_param,
    date_param,
    int_param,
    json_errors,
    limit_param,
    page,
    query_params,
    text_param,
)

trip_routes = Blueprint(__name__)


def _params() -> dict[str, str]:
    return query_params(trip_routes.current_request)


def _area(params: dict[str, str], required: bool = True) -> tuple[str | None, trips.BBox | None]:
    region = text_param(params, "region", 128)
    raw_box = text_param(params, "bbox", 200)
    if region and raw_box:
        raise BadRequest("Give either 'region' or 'bbox', not both.")
    if required and not region and not raw_box:
        raise BadRequest("Give 'region' (e.g. region=Turin) or 'bbox' (min_lon,min_lat,max_lon,max_lat).")
    return region, trips.BBox.parse(raw_box) if raw_box else None


def _point(params: dict[str, str]) -> str:
    return choice_param(params, "point", ("origin", "destination", "both"), "origin")


@trip_routes.route("/trips", methods=["GET"], **AUTH)
@json_errors
def list_trips() -> dict:
    params = _params()
    limit = limit_param(params)
    after = int_param(params, "after", None, 0)
    region, box = _area(params, required=False)
    with engine().connect() as conn:
        grid = trips.read_grid(conn, settings())
        items = trips.list_trips(
            conn, grid, limit, after, region=region, datasource=text_param(params, "datasource", 128),
            day=date_param(params, "date"), box=box,
        )
    return page(items, limit, lambda item: item["id"])


@trip_routes.route("/trips/counts", methods=["GET"], **AUTH)
@json_errors
def trip_counts() -> dict:
    by = choice_param(_params(), "by", ("region", "datasource"), "region")
    with engine().connect() as conn:
        return {"by": by, "items": trips.counts_by(conn, by), "next": None}


@trip_routes.route("/trips/weekly", methods=["GET"], **AUTH)
@json_errors
def weekly() -> dict:
    result = _weekly(_params())
    if result is None:
        return {"items": []}
    counts, start, end = result
    return {"items": trips.weekly_series(counts, start, end)}


@trip_routes.route("/trips/weekly-average", methods=["GET"], **AUTH)
@json_errors
def weekly_average() -> dict:
    params = _params()
    region, box = _area(params)
    point = _point(params)
    whole_span = "from" not in params and "to" not in params
    with engine().connect() as conn:
        span = trips.week_range(conn, date_param(params, "from"), date_param(params, "to"))
        if span is None:
            return {"weekly_average": 0, "weeks": 0, "trips": 0, "from": None, "to": None}
        grid = trips.read_grid(conn, settings())
        if box is not None and whole_span:  # every trip lies in the span: one total, no weekly grouping
            total = trips.box_total(conn, grid, box, point)
        else:
            counts = trips.weekly_counts(conn, grid, span[0], span[1], region=region, box=box, point=point)
            total = sum(counts.values())
    return trips.average_of(total, *span)


def _weekly(params: dict[str, str]) -> tuple[dict, Any, Any] | None:
    region, box = _area(params)
    point = _point(params)
    with engine().connect() as conn:
        span = trips.week_range(conn, date_param(params, "from"), date_param(params, "to"))
        if span is None:
            return None
        grid = trips.read_grid(conn, settings())
        counts = trips.weekly_counts(conn, grid, span[0], span[1], region=region, box=box, point=point)
    return counts, span[0], span[1]


@trip_routes.route("/trips/groups", methods=["GET"], **AUTH)
@json_errors
def trip_groups() -> dict:
    params = _params()
    region, box = _area(params, required=False)
    limit = limit_param(params, 50)
    min_trips = int_param(params, "min_trips", 2, 1)
    with engine().connect() as conn:
        grid = trips.read_grid(conn, settings())
        items = trips.top_groups(conn, grid, region, box, min_trips, limit)
    return {
        "items": items,
        "next": None,
        "rule": {"cell_degrees": grid.deg, "time_bucket_hours": grid.hours},
    }


@trip_routes.route("/trips/{trip_id}", methods=["GET"], **AUTH)
@json_errors
def get_trip(trip_id: str) -> dict:
    if not trip_id.isdigit() or len(trip_id) > 18:
        raise BadRequest(f"A trip id is a whole number, got {trip_id!r}.")
    with engine().connect() as conn:
        return trips.get_trip(conn, int(trip_id))
