"""GET /plays/totals: totals across every done upload, in keyset pages, against plain Python summing."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.plays_support import csv_file, python_totals, sorted_rows
from tests.support.ingest import get, ingest
from tools.generate_plays import generate


def _walk(client, query: str, limit: int) -> list[dict]:
    """Every item of a listing, page by page."""
    items, after = [], None
    while True:
        page = get(client, f"/plays/totals?limit={limit}{query}" + (f"&after={after}" if after else ""))
        assert len(page["items"]) <= limit
        items += page["items"]
        after = page["next"]
        if after is None:
            return items


def _sum_files(*raws: bytes) -> dict[tuple[str, str], tuple[int, int]]:
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for raw in raws:
        for key, plays in python_totals(raw).items():
            total, files = out.get(key, (0, 0))
            out[key] = (total + plays, files + 1)
    return out


@pytest.fixture
def loaded(client, aws, app_env, tmp_path):
    """Three uploads whose songs and dates overlap, one of them with quoted and non-ASCII names."""
    raws = []
    for seed, (start, end) in enumerate([("2021-03-01", "2021-03-10"), ("2021-03-05", "2021-03-20"),
                                          ("2021-03-01", "2021-03-31")]):
        path = tmp_path / f"p{seed}.csv"
        generate(path, 1500, seed, songs=80, start=start, end=end)
        raws.append(path.read_bytes())
    raws.append(csv_file([("Comma, song", "2021-03-02", "5"), ('Say "hi"', "2021-03-02", "0"),
                          ("Ça plane", "2021-03-03", "7"), ("Comma, song", "2021-03-02", "6")]))
    for i, raw in enumerate(raws):
        assert ingest(client, aws, f"plays/u{i}.csv", raw)["status"] == "done"
    return _sum_files(*raws)


def test_every_pair_in_order_across_pages(client, loaded):
    items = _walk(client, "", limit=37)
    expected = sorted_rows({k: v[0] for k, v in loaded.items()})
    assert [(i["song"], i["date"], i["plays"]) for i in items] == expected
    assert {(i["song"], i["date"]): i["files"] for i in items} == {k: v[1] for k, v in loaded.items()}
    assert max(i["files"] for i in items) >= 2  # the uploads did overlap


def test_one_song_with_a_date_range(client, loaded):
    song = "Comma, song"
    page = get(client, f"/plays/totals?song={quote(song)}&from=2021-03-01&to=2021-03-31")
    assert page["items"] == [{"song": song, "date": "2021-03-02", "plays": 11, "files": 1}]
    assert page["song"] == song and page["total_plays"] == 11
    busiest = max({s for s, _ in loaded}, key=lambda s: sum(v[0] for (x, _), v in loaded.items() if x == s))
    items = _walk(client, f"&song={quote(busiest)}&from=2021-03-05&to=2021-03-09", limit=2)
    expected = sorted((d, v[0]) for (s, d), v in loaded.items() if s == busiest and "2021-03-05" <= d <= "2021-03-09")
    assert [(i["date"], i["plays"]) for i in items] == expected
    whole = get(client, f"/plays/totals?song={quote(busiest)}&from=2021-03-05&to=2021-03-09&limit=1")
    assert whole["total_plays"] == sum(p for _, p in expected) and whole["next"] is not None


def test_a_date_range_over_every_song(client, loaded):
    items = _walk(client, "&from=2021-03-20&to=2021-03-21", limit=50)
    expected = sorted_rows({k: v[0] for k, v in loaded.items() if "2021-03-20" <= k[1] <= "2021-03-21"})
    assert [(i["song"], i["date"], i["plays"]) for i in items] == expected and expected
    assert "total_plays" not in get(client, "/plays/totals?limit=1")


def test_names_match_exactly(client, loaded):
    assert get(client, f"/plays/totals?song={quote('Ça plane')}")["total_plays"] == 7
    for near in ("ça plane", "Ca plane", "Ça plane ", "Comma song"):
        response = client.http.get(f"/plays/totals?song={quote(near)}")
        assert response.status_code == 404 and b"byte for byte" in response.body


@pytest.mark.parametrize("query", [
    "from=2021-03-10&to=2021-03-01", "from=2021-02-30", "limit=0", "limit=1001", "after=nonsense",
    "song=" + quote("a\x00b"), "unknown=1", "after=" + "WyJhIiwibm90IGEgZGF0ZSJd",
])
def test_bad_parameters_are_400(client, app_env, query):
    response = client.http.get(f"/plays/totals?{query}")
    assert response.status_code == 400 and b"error" in response.body


def test_empty_before_any_upload(client, app_env):
    assert get(client, "/plays/totals") == {"items": [], "next": None}
