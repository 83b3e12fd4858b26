"""The trips routes: list, get, counts, weekly series, weekly average, similar-trip groups."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib.datasets import trips
from chalicelib.errors import BadRequest
from chalicelib.routes import params as p
from chalicelib.routes.common import engine, settings
from chalicelib.routes.http import AUTH, endpoint, page, query_params

trip_routes = Blueprint(__name__)

REGION = p.Text("region", "a region name, e.g. Turin (see /trips/counts)", max_len=trips.TEXT_CHARS)
BBOX = p.BBox("bbox", "min_lon,min_lat,max_lon,max_lat")
POINT = p.Choice("point", "which end of a trip must lie in the box", default="origin",
                 choices=("origin", "destination", "both"))
SPAN = (p.Date("from", "first week (any day of it); default: the first week holding a trip"),
        p.Date("to", "last week (any day of it); default: the last week holding a trip"))

LIST = p.Query(
    p.Limit(), p.Id("after", "the 'next' of the previous page", high=p.INT8_MAX), REGION,
    p.Text("datasource", "a datasource, e.g. cheap_mobile", max_len=trips.TEXT_CHARS),
    p.Date("date", "trips starting on this day (UTC)"), BBOX,
)
COUNTS = p.Query(p.Choice("by", "count by region or by datasource", default="region", choices=("region", "datasource")))
WEEKLY = p.Query(REGION, BBOX, POINT, *SPAN)
GROUPS = p.Query(
    REGION, BBOX, p.Limit(50), p.Int("min_trips", "smallest group size listed", default=2, low=1, high=p.INT8_MAX),
    p.Cursor("after", "the 'next' of the previous page", parts=("int", "str", "int", "int", "int", "int", "int")),
)
TRIP_ID = p.Id("trip_id", "a trip id", high=p.INT8_MAX)


def _query(spec: p.Query) -> dict[str, Any]:
    return spec.parse(query_params(trip_routes.current_request))


def _area(q: dict[str, Any], required: bool = True) -> tuple[str | None, trips.BBox | None]:
    if q["region"] and q["bbox"]:
        raise BadRequest("Give either 'region' or 'bbox', not both.")
    if required and not q["region"] and not q["bbox"]:
        raise BadRequest("Give 'region' (e.g. region=Turin) or 'bbox' (min_lon,min_lat,max_lon,max_lat).")
    return q["region"], trips.BBox(*q["bbox"]) if q["bbox"] else None


@trip_routes.route("/trips", methods=["GET"], **AUTH)
@endpoint("List trips, oldest id first, with optional filters", LIST)
def list_trips() -> dict:
    q = _query(LIST)
    region, box = _area(q, required=False)
    with engine().connect() as conn:
        grid = trips.read_grid(conn, settings())
        items = trips.list_trips(
            conn, grid, q["limit"], q["after"], region=region, datasource=q["datasource"], day=q["date"], box=box,
        )
    return page(items, q["limit"], lambda item: item["id"])


@trip_routes.route("/trips/counts", methods=["GET"], **AUTH)
@endpoint("Trips per region or per datasource", COUNTS)
def trip_counts() -> dict:
    by = _query(COUNTS)["by"]
    with engine().connect() as conn:
        return {"by": by, "items": trips.counts_by(conn, by), "next": None}


@trip_routes.route("/trips/weekly", methods=["GET"], **AUTH)
@endpoint("Trips per ISO week (named by its Monday) for a region or a bounding box, empty weeks included",
          WEEKLY, errors=(400, 404))
def weekly() -> dict:
    result = _weekly(_query(WEEKLY))
    if result is None:
        return {"items": []}
    counts, start, end = result
    return {"items": trips.weekly_series(counts, start, end)}


@trip_routes.route("/trips/weekly-average", methods=["GET"], **AUTH)
@endpoint("The weekly average number of trips for a region or a bounding box", WEEKLY, errors=(400, 404))
def weekly_average() -> dict:
    q = _query(WEEKLY)
    region, box = _area(q)
    whole_span = q["from"] is None and q["to"] is None
    with engine().connect() as conn:
        span = trips.week_range(conn, q["from"], q["to"])
        if span is None:
            return {"weekly_average": 0, "weeks": 0, "trips": 0, "from": None, "to": None}
        region = trips.known_region(conn, region)
        grid = trips.read_grid(conn, settings())
        if box is not None and whole_span:  # every trip lies in the span: one total, no weekly grouping
            total = trips.box_total(conn, grid, box, q["point"])
        else:
            counts = trips.weekly_counts(conn, grid, span[0], span[1], region=region, box=box, point=q["point"])
            total = sum(counts.values())
    return trips.average_of(total, *span)


def _weekly(q: dict[str, Any]) -> tuple[dict, Any, Any] | None:
    region, box = _area(q)
    with engine().connect() as conn:
        span = trips.week_range(conn, q["from"], q["to"])
        if span is None:
            return None
        region = trips.known_region(conn, region)
        grid = trips.read_grid(conn, settings())
        counts = trips.weekly_counts(conn, grid, span[0], span[1], region=region, box=box, point=q["point"])
    return counts, span[0], span[1]


@trip_routes.route("/trips/groups", methods=["GET"], **AUTH)
@endpoint("Similar-trip groups, largest first (see the README for the similarity rule)", GROUPS, errors=(400, 404))
def trip_groups() -> dict:
    q = _query(GROUPS)
    region, box = _area(q, required=False)
    with engine().connect() as conn:
        region = trips.known_region(conn, region)
        grid = trips.read_grid(conn, settings())
        items = trips.top_groups(conn, grid, region, box, q["min_trips"], q["limit"] + 1, q["after"])
    result = page(items, q["limit"], lambda item: p.encode_cursor(item.pop("_key")))
    for item in result["items"]:
        item.pop("_key", None)
    result["rule"] = {"cell_degrees": grid.deg, "time_bucket_hours": grid.hours}
    return result


@trip_routes.route("/trips/{trip_id}", methods=["GET"], **AUTH)
@endpoint("One trip by id", path=(TRIP_ID,), errors=(400, 404))
def get_trip(trip_id: str) -> dict:
    _query(p.Query())
    with engine().connect() as conn:
        return trips.get_trip(conn, p.path_value(TRIP_ID, trip_id))
