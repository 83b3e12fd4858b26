"""Plays through `on_csv_upload` and the routes, on SQLite and PostgreSQL: totals equal plain Python
summing of the same file, the part files respect the cap and hold every (song, date) once, names
round-trip, finishing survives a crash, and nothing is loaded twice or left behind."""

from __future__ import annotations

import gzip

import pytest
import sqlalchemy as sa

from chalicelib import ingestions, pipeline
from chalicelib.datasets import plays
from chalicelib.db import get_engine
from chalicelib.settings import Settings
from tests.plays_support import (
    assert_results,
    csv_file,
    keys_under,
    parse_part,
    python_totals,
    read_part,
    result_rows,
    rollup,
    s3_outage,  # noqa: F401 - a fixture
    sorted_rows,
    stage_tables,
    table_rows,
)
from tests.support.ingest import get, ingest, ingestion_for, invoke, upload
from tools.generate_plays import generate

#: Names that need care: commas and quotes (CSV quoting), spaces kept at either end, case, scripts.
TRICKY = [
    "Plain", "Comma, inside", 'Quote "inside"', '"Fully quoted"', 'Both, "kinds"', " leading space",
    "trailing space ", "plain", "PLAIN", "Ça plane pour moi", "Любовь", "東京", "사랑", "🎵 emoji",
    "Tab\there", "x" * plays.SONG_CHARS,
]


def _tricky_file(crlf: bool = False, bom: bool = False, final_newline: bool = True) -> bytes:
    rows = []
    for i, name in enumerate(TRICKY * 3):  # each name three times, on two dates, scattered
        rows.append((name, f"2021-03-0{1 + i % 2}", str(i)))
    return csv_file(rows, crlf=crlf, bom=bom, final_newline=final_newline)


def _generated(tmp_path, rows: int = 3000, seed: int = 3, **options) -> bytes:
    path = tmp_path / ("p.csv.gz" if options.get("gzip") else "p.csv")
    generate(path, rows, seed, songs=150, **options)
    return path.read_bytes()


@pytest.mark.parametrize("options", [
    {}, {"crlf": True, "bom": True, "final_newline": False}, {"gzip": True}, {"bad_rows": 0.03},
], ids=["plain", "crlf-bom-no-final-newline", "gzip", "bad-rows"])
def test_totals_equal_plain_python_summing(client, aws, app_env, tmp_path, monkeypatch, options):
    monkeypatch.setenv("CHUNK_BYTES", "8192")  # many chunks: a song's rows land in several
    raw = _generated(tmp_path, **options)
    ingestion = ingest(client, aws, "plays/2021-03.csv" + (".gz" if options.get("gzip") else ""), raw)
    assert ingestion["status"] == "done", ingestion
    assert ingestion["rows_loaded"] + ingestion["rows_rejected"] == 3000
    assert (ingestion["rows_rejected"] > 0) == bool(options.get("bad_rows"))
    assert_results(client, aws, ingestion["id"], raw)
    assert {k: v[0] for k, v in rollup(app_env).items()} == python_totals(raw)
    assert stage_tables(app_env) == {}  # staging is dropped once the file is summed


def test_tricky_names_round_trip_through_the_result_csv(client, aws, app_env):
    raw = _tricky_file(crlf=True, bom=True, final_newline=False)
    ingestion = ingest(client, aws, "plays/tricky.csv", raw)
    assert ingestion["status"] == "done" and ingestion["rows_rejected"] == 0
    _, rows = result_rows(client, aws, ingestion["id"])
    assert {song for song, _, _ in rows} == set(TRICKY)
    assert [(s.encode(), d) for s, d, _ in rows] == sorted((s.encode(), d) for s, d, _ in rows)
    assert rows == sorted_rows(python_totals(raw))


def test_a_small_cap_makes_many_parts_each_valid_and_under_it(client, aws, app_env, tmp_path, monkeypatch):
    cap = 4096
    monkeypatch.setenv("PLAYS_PART_BYTES", str(cap))
    raw = _tricky_file() + _generated(tmp_path, rows=4000).split(b"\n", 1)[1]
    ingestion = ingest(client, aws, "plays/many.csv", raw)
    answer = assert_results(client, aws, ingestion["id"], raw)
    assert len(answer["files"]) > 10 and answer["part_bytes"] == cap
    seen: list[tuple[str, str]] = []
    for number, part in enumerate(answer["files"], 1):
        body = read_part(aws, part["key"])
        assert part["key"] == f"results/plays/{ingestion['id']}/part-{number:05d}.csv"
        assert len(body) == part["bytes"] <= cap and body.endswith(b"\n")
        rows = parse_part(body)  # each part is a CSV file on its own, with the header
        assert len(rows) == part["rows"] >= 1
        seen += [(song, day) for song, day, _ in rows]
        if number < len(answer["files"]):  # a part closes only when the next row would not fit
            next_row = parse_part(read_part(aws, answer["files"][number]["key"]))[0]
            assert len(body) + len(plays.csv_lines(_one(next_row))[0].as_py().encode()) > cap
    assert len(seen) == len(set(seen))  # every (song, date) exactly once
    assert keys_under(aws, ingestion["id"]) == sorted(p["key"] for p in answer["files"])


def _one(row: tuple[str, str, int]):
    import datetime as dt

    import pyarrow as pa

    return pa.table({"song": [row[0]], "date": pa.array([dt.date.fromisoformat(row[1])], pa.date32()),
                     "plays": pa.array([row[2]], pa.int64())})


def test_large_parts_go_up_in_multipart_uploads(client, aws, app_env, tmp_path, monkeypatch):
    monkeypatch.setenv("PLAYS_PART_BYTES", str(6 * 1024 * 1024))
    generate(tmp_path / "big.csv", 300_000, 5, songs=200_000, zipf=0.3, end="2021-05-31")  # few repeats
    raw = (tmp_path / "big.csv").read_bytes()
    ingestion = ingest(client, aws, "plays/big.csv", raw)
    answer = assert_results(client, aws, ingestion["id"], raw)
    assert len(answer["files"]) >= 2 and max(f["bytes"] for f in answer["files"]) > 5 * 1024 * 1024


def test_the_result_urls_open_locally(client, aws, app_env):
    ingestion = ingest(client, aws, "plays/u.csv", _tricky_file())
    answer = get(client, f"/plays/results/{ingestion['id']}")
    url = answer["files"][0]["url"]
    assert url.startswith("http") and url.endswith(answer["files"][0]["key"])
    response = client.http.get(url[url.index("/results/"):])
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
    assert response.body == read_part(aws, answer["files"][0]["key"])  # the bytes S3 holds


@pytest.mark.parametrize("chunk_bytes", [1024, 7 * 1024, 16 * 1024 * 1024])
def test_chunk_size_does_not_change_the_result(client, aws, app_env, tmp_path, monkeypatch, chunk_bytes):
    monkeypatch.setenv("CHUNK_BYTES", str(chunk_bytes))
    raw = _generated(tmp_path, rows=2500, seed=11, bad_rows=0.01)
    ingestion = ingest(client, aws, "plays/c.csv", raw)
    assert_results(client, aws, ingestion["id"], raw)


def test_replays_and_resends_load_nothing_twice(client, aws, app_env, tmp_path):
    raw = _generated(tmp_path, rows=800)
    first = ingest(client, aws, "plays/a.csv", raw)
    invoke(client, "plays/a.csv")  # the same event again
    upload(aws, "plays/a.csv", raw)  # the same object sent again
    invoke(client, "plays/a.csv")
    items = [i for i in get(client, "/ingestions?dataset=plays")["items"] if i["key"] == "plays/a.csv"]
    assert [i["id"] for i in items] == [first["id"]]
    assert {k: v for k, v in rollup(app_env).items()} == {k: (v, 1) for k, v in python_totals(raw).items()}
    assert_results(client, aws, first["id"], raw)


def test_a_duplicate_upload_answers_with_the_first(client, aws, app_env, tmp_path):
    raw = _generated(tmp_path, rows=600)
    first = ingest(client, aws, "plays/one.csv", raw)
    second = ingest(client, aws, "plays/again/one-copy.csv", raw)
    assert second["status"] == "done" and second["duplicate_of"] == first["id"] and second["rows_loaded"] == 0
    answer = get(client, f"/plays/results/{second['id']}")
    original = get(client, f"/plays/results/{first['id']}")
    assert answer["ingestion_id"] == second["id"] and answer["duplicate_of"] == first["id"]
    assert answer["files"] == original["files"] and answer["total_plays"] == original["total_plays"]
    assert keys_under(aws, second["id"]) == []  # nothing written twice
    assert {k: v[1] for k, v in rollup(app_env).items()} == dict.fromkeys(python_totals(raw), 1)


def test_status_codes_of_the_results_route(client, aws, app_env, tmp_path, monkeypatch):
    assert client.http.get("/plays/results/999").status_code == 404
    trips = ingest(client, aws, "trips/t.csv", b"region,origin_coord,destination_coord,datetime,datasource\n"
                   b"Turin,POINT (7.67 44.99),POINT (7.72 45.06),2018-05-21 02:54:04,baba_car\n")
    response = client.http.get(f"/plays/results/{trips['id']}")
    assert response.status_code == 404 and b"not a plays file" in response.body
    assert client.http.get("/plays/results/abc").status_code == 400
    assert client.http.get("/plays/results/1?x=1").status_code == 400

    bad = ingest(client, aws, "plays/bad.csv", csv_file([("A", "2021-02-30", "1"), ("B", "2021-03-01", "x")]))
    response = client.http.get(f"/plays/results/{bad['id']}")
    assert bad["status"] == "failed" and response.status_code == 422 and b"rejected" in response.body

    missing = ingest(client, aws, "plays/missing.csv", b"Song,Plays Count\nA,1\n")
    response = client.http.get(f"/plays/results/{missing['id']}")
    assert missing["status"] == "failed" and response.status_code == 422
    assert missing["error"].startswith("The header has no date, number of plays columns.")
    assert "song, date, number of plays" in missing["error"]

    with get_engine(app_env).begin() as conn:  # an upload still loading
        running = ingestions.create(conn, "plays", "sluice-test-uploads", "plays/slow.csv", "etag-slow", 100)
        ingestions.start(conn, running, {}, 3)
    response = client.http.get(f"/plays/results/{running}")
    assert response.status_code == 425 and b"still running" in response.body


def test_header_found_by_name_in_any_case_and_order(client, aws, app_env):
    raw = b"number of PLAYS,extra,SONG,date\n3,x,A,2021-03-01\n4,y,A,2021-03-01\n"
    ingestion = ingest(client, aws, "plays/order.csv", raw)
    _, rows = result_rows(client, aws, ingestion["id"])
    assert rows == [("A", "2021-03-01", 7)]


def test_bad_rows_are_rejected_with_their_line_numbers(client, aws, app_env, monkeypatch):
    monkeypatch.setenv("MAX_REJECT_SHARE", "0.5")
    rows = [("A", "2021-03-01", "1")] * 3 + [("", "2021-03-01", "1"), ("B", "2021-02-30", "1"),
                                              ("C", "2021-03-01", "-2"), ("D", "2021-03-01", "1.5")]
    raw = csv_file(rows + [("A", "2021-03-02", "5")])
    ingestion = ingest(client, aws, "plays/rejects.csv", raw)
    assert ingestion["status"] == "done" and ingestion["rows_loaded"] == 4 and ingestion["rows_rejected"] == 4
    assert [(e["line"], e["message"].split(" ")[0]) for e in ingestion["errors"]] == [
        (5, "Song"), (6, "Date"), (7, "Number"), (8, "Number")]
    assert "'-2' is negative" in ingestion["errors"][2]["message"]
    _, got = result_rows(client, aws, ingestion["id"])
    assert got == [("A", "2021-03-01", 3), ("A", "2021-03-02", 5)]


def test_a_file_failed_by_its_rejects_leaves_nothing(client, aws, app_env, tmp_path):
    raw = _generated(tmp_path, rows=500, bad_rows=0.5)
    ingestion = ingest(client, aws, "plays/junk.csv", raw)
    assert ingestion["status"] == "failed"
    assert set(table_rows(app_env).values()) == {0} and keys_under(aws, ingestion["id"]) == []


# --- finishing: a crash, a rerun, taking a file back out -------------------------------------------


def test_a_crash_while_writing_parts_then_a_rerun(client, aws, app_env, tmp_path, monkeypatch, s3_outage):  # noqa: F811
    raw = _generated(tmp_path, rows=3000)
    monkeypatch.setenv("PLAYS_PART_BYTES", "4096")
    upload(aws, "plays/crash.csv", raw)
    outage = s3_outage(5)
    with pytest.raises(ConnectionError):
        invoke(client, "plays/crash.csv")
    ingestion = ingestion_for(client, "plays/crash.csv")
    assert ingestion["status"] == "running"
    written = keys_under(aws, ingestion["id"])
    assert len(written) == 5  # whole parts only: the sixth was never completed
    assert client.http.get(f"/plays/results/{ingestion['id']}").status_code == 425
    assert rollup(app_env) == {}  # the done transaction rolled back: nothing counted yet

    outage.allowed = 10**9
    monkeypatch.setenv("PLAYS_PART_BYTES", "16384")  # the rerun writes fewer, larger parts
    invoke(client, "plays/crash.csv")
    answer = assert_results(client, aws, ingestion["id"], raw)
    assert keys_under(aws, ingestion["id"]) == sorted(p["key"] for p in answer["files"])  # no stray part
    assert len(answer["files"]) < len(written)
    assert rollup(app_env) == {k: (v, 1) for k, v in python_totals(raw).items()}


def test_a_failed_ingestion_keeps_no_part_files(client, aws, app_env, tmp_path, monkeypatch, s3_outage):  # noqa: F811
    raw = _generated(tmp_path, rows=3000)
    monkeypatch.setenv("PLAYS_PART_BYTES", "4096")
    upload(aws, "plays/doomed.csv", raw)
    s3_outage(3)
    with pytest.raises(ConnectionError):
        invoke(client, "plays/doomed.csv")
    ingestion = ingestion_for(client, "plays/doomed.csv")
    assert len(keys_under(aws, ingestion["id"])) == 3
    pipeline.fail(get_engine(app_env), Settings.from_env(), ingestion["id"], plays, "Stopped by an operator.")
    assert keys_under(aws, ingestion["id"]) == []
    assert set(table_rows(app_env).values()) == {0}
    response = client.http.get(f"/plays/results/{ingestion['id']}")
    assert response.status_code == 422 and b"Stopped by an operator." in response.body


def test_discard_takes_a_done_file_out_of_every_table_exactly(client, aws, app_env, tmp_path):
    raws = [_generated(tmp_path, rows=1500, seed=s) for s in (1, 2, 3)]
    ids = [ingest(client, aws, f"plays/d{i}.csv", raw)["id"] for i, raw in enumerate(raws)]
    with get_engine(app_env).begin() as conn:
        plays.discard(conn, ids[1], {0})
    assert set(table_rows(app_env, ids[1]).values()) - {table_rows(app_env, ids[1])["play_totals"]} == {0}
    expected: dict[tuple[str, str], tuple[int, int]] = {}
    for raw in (raws[0], raws[2]):
        for key, value in python_totals(raw).items():
            plays_, files_ = expected.get(key, (0, 0))
            expected[key] = (plays_ + value, files_ + 1)
    assert rollup(app_env) == expected  # pairs only the discarded file held are gone, 0-play pairs kept
    with get_engine(app_env).connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(plays.file_totals)).scalar()
    assert left == len(python_totals(raws[0])) + len(python_totals(raws[2]))


def test_gzip_is_read_as_a_stream(client, aws, app_env, tmp_path, monkeypatch):
    monkeypatch.setenv("CHUNK_BYTES", "4096")
    raw = gzip.compress(_tricky_file() + _generated(tmp_path, rows=2000).split(b"\n", 1)[1])
    ingestion = ingest(client, aws, "plays/z.csv.gz", raw)
    assert ingestion["status"] == "done"
    assert_results(client, aws, ingestion["id"], raw)
