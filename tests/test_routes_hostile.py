"""Every route, fed hostile parameter values, answers with a status below 500 and, for errors, a sentence.

The routes come from the app's own OpenAPI description (so a new route is covered the day it is added);
the values mix what a probe found breaking routes (NUL bytes, `²`, ids past int4, dates at the ends
of the calendar, loose formats, huge strings) with anything hypothesis makes up.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import app
from chalicelib import openapi
from tests.support.ingest import ingest

HOSTILE = [
    "", " ", "\x00", "%00", "²", "٣", "-1", "0", "1", "2147483647", "2147483648", "9223372036854775808",
    "99999999999999999999999", "1e309", "nan", "inf", "-0", "0x10", "1_0", "1.5",
    "9999-12-31", "0001-01-01", "2018-05-21junk", "2018-W21-1", "2018-02-30", "2018-05-21T25:00:00Z",
    "2021-03-01T00:00:00+99:00", "1_0,45,8,46", "7,45,8", "-181,-91,181,91", "8,46,7,45",
    "acme/api:x", "acme/api:²", "a" * 5000, "\ud800", "'; DROP TABLE trips; --", "{}", "[]", "*",
    "origin", "both", "all", "true",
]
PATHS = [(path, method.upper(), op) for path, methods in openapi.spec(app)["paths"].items()
         for method, op in methods.items()]

values = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40))


def _call(client, method: str, path: str, query: dict[str, str]):
    url = path + ("?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='', errors='surrogatepass')}"
                                 for k, v in query.items()) if query else "")
    return getattr(client.http, method.lower())(url)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_route_answers_500_to_hostile_values(loaded_client, data):
    path, method, op = data.draw(st.sampled_from(PATHS))
    concrete = path
    for param in op["parameters"]:
        if param["in"] == "path":
            value = data.draw(values.filter(lambda v: v and "/" not in v and v not in (".", "..")))
            concrete = concrete.replace("{" + param["name"] + "}", quote(value, safe="", errors="surrogatepass"))
    names = [p["name"] for p in op["parameters"] if p["in"] == "query"] + ["unknown"]
    chosen = data.draw(st.lists(st.sampled_from(names), max_size=4, unique=True))
    query = {name: data.draw(values) for name in chosen}
    response = _call(loaded_client, method, concrete, query)
    assert response.status_code < 500, (method, concrete, query, response.body[:300])
    if response.status_code >= 400:
        body = json.loads(response.body)
        assert set(body) == {"error"} and body["error"].endswith(".") and len(body["error"]) > 10, body


def test_every_kind_of_parameter_refuses_what_the_probe_sent(loaded_client):
    """The exact requests that answered 500 or a loose 200 before (issue 10, item 8)."""
    for url in [
        "/trips?region=%00", "/ingestions?dataset=%00", "/github/pulls?repo=%00", "/github/members?after=%00",
        "/ingestions/2147483648", "/ingestions?after=2147483648", "/trips/%C2%B2", "/ingestions/%C2%B2",
        "/trips?date=9999-12-31", "/github/metrics?to=9999-12-31", "/trips?date=2018-05-21junk",
        "/trips?date=2018-W21-1", "/trips/weekly?bbox=1_0,45,8,46", "/github/pulls?after=acme/api:x",
        "/trips/groups?min_trips=0",
    ]:
        response = loaded_client.http.get(url)
        assert response.status_code == 400, (url, response.status_code, response.body)
        assert set(json.loads(response.body)) == {"error"}
    bounds = json.loads(loaded_client.http.get("/trips/groups?min_trips=0").body)["error"]
    assert "None" not in bounds and "at least 1" in bounds or "between 1 and" in bounds


def test_a_world_sized_box_is_answered_from_the_rollups(loaded_client):
    every = json.loads(loaded_client.http.get("/trips/counts").body)["items"]
    total = sum(c["trips"] for c in every)
    for point in ("origin", "destination", "both"):
        answer = json.loads(loaded_client.http.get(f"/trips/weekly-average?bbox=-180,-90,180,90&point={point}").body)
        assert answer["trips"] == total
        weekly = json.loads(loaded_client.http.get(f"/trips/weekly?bbox=-180,-90,180,90&point={point}").body)
        assert sum(w["trips"] for w in weekly["items"]) == total


@pytest.fixture
def loaded_client(client, aws):
    header = b"region,origin_coord,destination_coord,datetime,datasource\n"
    rows = b"".join(b"%s,POINT (7.6%d 45.0%d),POINT (14.4%d 50.0%d),2018-05-%02d 0%d:00:00,src%d\n"
                    % (r, i % 10, i % 7, i % 9, i % 5, 1 + i % 27, i % 10, i % 3)
                    for i in range(60) for r in (b"Turin", b"Prague"))
    ingest(client, aws, "trips/hostile.csv", header + rows)
    return client
