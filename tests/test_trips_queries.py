"""Trips queries equal a brute-force count over the raw rows, and bad parameters get clear 400s."""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.ingest import get, ingest

GRID = 0.01
CENTRE = (7.68, 45.07)


def _random_trips(seed: int, n: int) -> list[dict]:
    """Trips around Turin on a coarse lattice, so many points fall exactly on cell and box edges."""
    rng = random.Random(seed)
    start = dt.datetime(2018, 4, 2)

    def coord(centre: float) -> float:
        return round(centre + rng.randint(-40, 40) * 0.0025, 4)

    return [
        {
            "region": rng.choice(["Turin", "Prague"]),
            "datasource": rng.choice(["funny_car", "cheap_mobile"]),
            "o": (coord(CENTRE[0]), coord(CENTRE[1])),
            "d": (coord(CENTRE[0]), coord(CENTRE[1])),
            "t": start + dt.timedelta(seconds=rng.randint(0, 86400 * 70)),
        }
        for _ in range(n)
    ]


def _csv(rows: list[dict]) -> bytes:
    lines = ["region,origin_coord,destination_coord,datetime,datasource"]
    for r in rows:
        lines.append(
            f"{r['region']},POINT ({r['o'][0]} {r['o'][1]}),POINT ({r['d'][0]} {r['d'][1]}),"
            f"{r['t']:%Y-%m-%d %H:%M:%S},{r['datasource']}"
        )
    return ("\n".join(lines) + "\n").encode()


def _monday(t: dt.datetime) -> dt.date:
    return t.date() - dt.timedelta(days=t.weekday())


def _inside(p: tuple[float, float], box: tuple[float, float, float, float]) -> bool:
    return box[0] <= p[0] <= box[2] and box[1] <= p[1] <= box[3]


def _brute_weekly(rows: list[dict], box, point: str) -> Counter:
    def selected(r: dict) -> bool:
        if point == "both":
            return _inside(r["o"], box) and _inside(r["d"], box)
        return _inside(r["o" if point == "origin" else "d"], box)

    return Counter(_monday(r["t"]) for r in rows if selected(r))


def _similar_trips(seed: int, n: int, templates: int = 25) -> list[dict]:
    """Trips that repeat a few (region, origin, destination, hour) templates on other days and minutes,
    so that similarity groups of several trips exist next to the random trips' single-trip groups."""
    rng = random.Random(seed)
    shapes = [(rng.choice(["Turin", "Prague"]), t["o"], t["d"], rng.randint(0, 23)) for t in _random_trips(seed, templates)]
    start = dt.datetime(2018, 4, 2)
    rows = []
    for _ in range(n):
        region, o, d, hour = rng.choice(shapes)
        t = start + dt.timedelta(days=rng.randint(0, 69), hours=hour, seconds=rng.randint(0, 3599))
        rows.append({"region": region, "datasource": "funny_car", "o": o, "d": d, "t": t})
    return rows


TRIPS = _random_trips(11, 600) + _similar_trips(12, 150)


@pytest.fixture
def loaded(client, aws, app_env, monkeypatch):
    monkeypatch.setenv("GRID_DEG", str(GRID))
    monkeypatch.setenv("CHUNK_BYTES", "4096")
    ingestion = ingest(client, aws, "trips/random.csv", _csv(TRIPS))
    assert ingestion["status"] == "done" and ingestion["rows_loaded"] == len(TRIPS)
    return client


edges = st.integers(-44, 44).map(lambda k: round(k * 0.0025, 4))
boxes = st.tuples(edges, edges, edges, edges).map(
    lambda e: (
        round(CENTRE[0] + min(e[0], e[1]), 4),
        round(CENTRE[1] + min(e[2], e[3]), 4),
        round(CENTRE[0] + max(e[0], e[1]), 4),
        round(CENTRE[1] + max(e[2], e[3]), 4),
    )
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(box=boxes, point=st.sampled_from(["origin", "destination", "both"]))
def test_bbox_weekly_equals_brute_force(loaded, box, point):
    bbox = ",".join(str(v) for v in box)
    series = get(loaded, f"/trips/weekly?bbox={bbox}&point={point}")["items"]
    expected = _brute_weekly(TRIPS, box, point)
    assert {dt.date.fromisoformat(i["week"]): i["trips"] for i in series if i["trips"]} == dict(expected)
    weeks = sorted({_monday(r["t"]) for r in TRIPS})
    assert series[0]["week"] == weeks[0].isoformat() and series[-1]["week"] == weeks[-1].isoformat()
    average = get(loaded, f"/trips/weekly-average?bbox={bbox}&point={point}")
    assert average["trips"] == sum(expected.values())
    assert average["weeks"] == len(series)
    assert average["weekly_average"] == round(sum(expected.values()) / len(series), 4)
    first, last = weeks[1], weeks[-2]  # with from/to the average is summed from the weekly counts
    ranged = get(loaded, f"/trips/weekly-average?bbox={bbox}&point={point}&from={first}&to={last}")
    assert ranged["trips"] == sum(n for w, n in expected.items() if first <= w <= last)
    assert (ranged["from"], ranged["to"]) == (first.isoformat(), last.isoformat())


def test_region_weekly_with_from_to_and_empty_weeks(loaded):
    expected = Counter(_monday(r["t"]) for r in TRIPS if r["region"] == "Prague")
    series = get(loaded, "/trips/weekly?region=Prague&from=2018-04-20&to=2018-07-01")["items"]
    assert series[0]["week"] == "2018-04-16" and series[-1]["week"] == "2018-06-25"
    assert all(dt.date.fromisoformat(i["week"]).weekday() == 0 for i in series)
    assert {dt.date.fromisoformat(i["week"]): i["trips"] for i in series if i["trips"]} == {
        w: c for w, c in expected.items() if dt.date(2018, 4, 16) <= w <= dt.date(2018, 6, 25)
    }
    unknown = get(loaded, "/trips/weekly?region=Atlantis", 404)["error"]
    assert "'Atlantis'" in unknown and "Prague, Turin" in unknown  # says which regions exist
    assert get(loaded, "/trips/weekly?region=prague") == get(loaded, "/trips/weekly?region=Prague")  # case folded


def _group_of(r: dict) -> tuple:
    """A trip's similarity group: (region, origin cell, destination cell, hour)."""
    return (r["region"], *(math.floor(v / GRID) for v in (*r["o"], *r["d"])), r["t"].hour)


def _group_in(g: dict) -> tuple:
    """The same key, read back from a /trips/groups item (cells from their centres)."""
    cells = (round(g[p][c] / GRID - 0.5) for p in ("origin", "destination") for c in ("lon", "lat"))
    return (g["region"], *cells, int(g["time_of_day"][:2]))


def test_groups_equal_brute_force(loaded):
    expected = Counter(_group_of(r) for r in TRIPS if r["region"] == "Turin")
    assert sum(1 for n in expected.values() if n >= 2) >= 5
    body = get(loaded, "/trips/groups?region=Turin&min_trips=2&limit=1000")
    got = Counter({_group_in(g): g["trips"] for g in body["items"]})
    assert got == Counter({k: v for k, v in expected.items() if v >= 2})
    counts = [g["trips"] for g in body["items"]]
    assert counts == sorted(counts, reverse=True)
    assert body["rule"] == {"cell_degrees": GRID, "time_bucket_hours": 1}


def test_groups_of_one_trip_follow_the_larger_ones_in_order(loaded):
    """min_trips=1 reaches past the groups indexed by size into single-trip groups, in one order."""
    expected = Counter(_group_of(r) for r in TRIPS if r["region"] == "Turin")
    ranked = sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))
    larger = sum(1 for n in expected.values() if n >= 2)
    assert larger > 0 and len(ranked) >= larger + 5
    body = get(loaded, f"/trips/groups?region=Turin&min_trips=1&limit={larger + 5}")
    assert [(_group_in(g), g["trips"]) for g in body["items"]] == ranked[: larger + 5]


def _walk(client, path: str, limit: int) -> list[dict]:
    """Every item of a list route, page by page; `next` must be null exactly on the last page."""
    items, after, sep = [], None, "&" if "?" in path else "?"
    while True:
        page = get(client, f"{path}{sep}limit={limit}" + (f"&after={after}" if after else ""))
        assert page["items"] or after is None  # a non-null `next` promised more items
        assert len(page["items"]) <= limit
        items += page["items"]
        after = page["next"]
        if after is None:
            return items  # the caller compares with the whole set: nothing may be left


@pytest.mark.parametrize("limit", [1, 3, 7])
def test_groups_walk_page_by_page_to_the_whole_set(loaded, limit):
    whole = get(loaded, "/trips/groups?min_trips=1&limit=1000")
    assert whole["next"] is None and len(whole["items"]) > 20
    walked = _walk(loaded, "/trips/groups?min_trips=1", limit)
    assert walked == whole["items"]  # no gap, no repeat, same order (across sizes 2+ and 1)
    three = get(loaded, "/trips/groups?min_trips=1&limit=3")
    assert len(three["items"]) == 3 and three["next"] is not None


def test_groups_in_a_bbox_are_those_whose_origin_cell_centre_lies_in_it(loaded):
    box = (7.6525, 45.0425, 7.7075, 45.0975)  # edges between cell centres and on cell edges
    def centre_in(key: tuple) -> bool:
        lon, lat = ((key[1] + 0.5) * GRID, (key[2] + 0.5) * GRID)
        return box[0] <= lon <= box[2] and box[1] <= lat <= box[3]
    expected = Counter(_group_of(r) for r in TRIPS)
    want = {k: v for k, v in expected.items() if centre_in(k)}
    assert 0 < len(want) < len(expected)
    body = get(loaded, "/trips/groups?bbox=" + ",".join(map(str, box)) + "&min_trips=1&limit=1000")
    assert {_group_in(g): g["trips"] for g in body["items"]} == want


def test_ingestions_and_trips_walk_to_the_whole_set(loaded):
    every_trip = _walk(loaded, "/trips", 250)
    assert len(every_trip) == len(TRIPS) and len({t["id"] for t in every_trip}) == len(TRIPS)
    assert _walk(loaded, "/ingestions", 1) == get(loaded, "/ingestions?limit=1000")["items"]


def test_list_filters_and_keyset_pages(loaded):
    seen, after = [], None
    while True:
        page = get(loaded, "/trips?region=Turin&limit=97" + (f"&after={after}" if after else ""))
        seen += page["items"]
        after = page["next"]
        if after is None:
            break
    assert len(seen) == sum(r["region"] == "Turin" for r in TRIPS)
    assert [t["id"] for t in seen] == sorted({t["id"] for t in seen})
    day = TRIPS[0]["t"].date()
    on_day = get(loaded, f"/trips?date={day}&limit=1000")["items"]
    assert len(on_day) == sum(r["t"].date() == day for r in TRIPS)
    box = (7.65, 45.05, 7.70, 45.09)
    in_box = get(loaded, "/trips?bbox=7.65,45.05,7.70,45.09&limit=1000")["items"]
    assert len(in_box) == sum(_inside(r["o"], box) for r in TRIPS)
    one = get(loaded, f"/trips/{seen[0]['id']}")
    assert one == seen[0]
    assert set(one) == {"id", "region", "datasource", "origin", "destination", "datetime", "ingestion_id"}


def test_counts(loaded):
    by_source = get(loaded, "/trips/counts?by=datasource")["items"]
    assert by_source == [
        {"datasource": s, "trips": c} for s, c in sorted(Counter(r["datasource"] for r in TRIPS).items())
    ]


@pytest.mark.parametrize(
    ("path", "phrase"),
    [
        ("/trips/weekly-average", "Give 'region'"),
        ("/trips/weekly-average?region=Turin&bbox=1,2,3,4", "not both"),
        ("/trips/weekly-average?bbox=1,2,3", "four numbers"),
        ("/trips/weekly-average?bbox=a,b,c,d", "four numbers"),
        ("/trips/weekly-average?bbox=10,2,3,4", "min_lon <= max_lon"),
        ("/trips/weekly-average?bbox=1,2,3,95", "max_lat <= 90"),
        ("/trips/weekly-average?bbox=1,2,3,4&point=middle", "'point' must be one of"),
        ("/trips/weekly?region=Turin&from=2018-06-01&to=2018-05-01", "must not be after"),
        ("/trips/weekly?region=Turin&from=yesterday", "'from' must be a date"),
        ("/trips?limit=1001", "'limit' must be between 1 and 1000"),
        ("/trips?after=x", "'after' must be a whole number"),
        ("/trips/counts?by=colour", "'by' must be one of region, datasource"),
        ("/trips/groups?min_trips=0", "'min_trips' must be between"),
        ("/trips/abc", "'trip_id' must be a whole number"),
    ],
)
def test_bad_parameters_get_400_with_a_sentence(client, path, phrase):
    body = get(client, path, 400)
    assert phrase in body["error"], body


def test_missing_trip_is_404(client):
    assert get(client, "/trips/424242", 404) == {"error": "Trip 424242 not found."}


def test_empty_dataset_answers_cleanly(client):
    assert get(client, "/trips/weekly-average?region=Turin") == {
        "weekly_average": 0, "weeks": 0, "trips": 0, "from": None, "to": None,
    }
    assert get(client, "/trips/weekly?bbox=7,45,8,46")["items"] == []
    assert get(client, "/trips/groups")["items"] == []
