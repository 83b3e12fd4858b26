"""Trips through `on_csv_upload`: exact loads, idempotence, formats, bad files and bad rows."""

from __future__ import annotations

import gzip

import pytest
import sqlalchemy as sa

from chalicelib.datasets import trips
from chalicelib.db import get_engine
from tests.support.ingest import get, ingest, ingestion_for, invoke, upload
from tools.generate_trips import canonical_sample, generate

HEADER = b"region,origin_coord,destination_coord,datetime,datasource\n"
GOOD = b"Turin,POINT (7.67 44.99),POINT (7.72 45.06),2018-05-21 02:54:04,baba_car\n"


def _rows(db_url: str) -> list[tuple]:
    columns = [trips.trips.c[c] for c in trips.LOAD_COLUMNS if c != "ingestion_id"]
    with get_engine(db_url).connect() as conn:
        return sorted(tuple(r) for r in conn.execute(sa.select(*columns)).all())


def _rollups(db_url: str) -> dict[str, list[tuple]]:
    tables = (trips.region_weeks, trips.datasource_weeks, trips.cell_weeks, trips.groups)
    with get_engine(db_url).connect() as conn:
        return {t.name: sorted(tuple(r) for r in conn.execute(sa.select(t).where(t.c.trips != 0))) for t in tables}


def test_canonical_sample_weekly_averages(client, aws, tmp_path):
    canonical_sample(tmp_path / "trips.csv")
    ingestion = ingest(client, aws, "trips/2018-05.csv", (tmp_path / "trips.csv").read_bytes())
    assert ingestion["status"] == "done" and ingestion["rows_loaded"] == 100
    assert ingestion["bytes_done"] == ingestion["bytes_total"]
    averages = {r: get(client, f"/trips/weekly-average?region={r}") for r in ("Turin", "Prague", "Hamburg")}
    assert {r: a["weekly_average"] for r, a in averages.items()} == {"Turin": 7.6, "Prague": 6.8, "Hamburg": 5.6}
    assert averages["Turin"] == {"weekly_average": 7.6, "weeks": 5, "trips": 38, "from": "2018-04-30", "to": "2018-05-28"}
    weekly = get(client, "/trips/weekly?region=Turin")["items"]
    assert [w["week"] for w in weekly] == ["2018-04-30", "2018-05-07", "2018-05-14", "2018-05-21", "2018-05-28"]
    assert sum(w["trips"] for w in weekly) == 38
    counts = get(client, "/trips/counts?by=region")["items"]
    assert counts == [{"region": "Hamburg", "trips": 28}, {"region": "Prague", "trips": 34}, {"region": "Turin", "trips": 38}]


@pytest.mark.parametrize("chunk_bytes", [1024, 7 * 1024, 16 * 1024 * 1024])
def test_chunk_size_does_not_change_the_result(client, aws, app_env, tmp_path, monkeypatch, chunk_bytes):
    path = tmp_path / "t.csv"
    generate(path, 2000, seed=7, bad_rows=0.02)
    monkeypatch.setenv("CHUNK_BYTES", str(chunk_bytes))
    ingestion = ingest(client, aws, "trips/t.csv", path.read_bytes())
    assert ingestion["status"] == "done", ingestion
    assert ingestion["rows_loaded"] + ingestion["rows_rejected"] == 2000
    assert ingestion["bytes_done"] == ingestion["bytes_total"] == path.stat().st_size
    reference = tmp_path / "ref.sqlite"
    # The same file in one chunk, loaded into a second database, must give identical tables.
    from chalicelib.migrate import upgrade

    ref_url = f"sqlite:///{reference}"
    upgrade(ref_url)
    monkeypatch.setenv("DATABASE_URL", ref_url)
    monkeypatch.setenv("CHUNK_BYTES", str(64 * 1024 * 1024))
    invoke(client, "trips/t.csv")
    assert _rows(app_env) == _rows(ref_url)
    assert _rollups(app_env) == _rollups(ref_url)


def test_replayed_event_and_resent_object_load_nothing_twice(client, aws, app_env, tmp_path):
    path = tmp_path / "t.csv"
    generate(path, 500, seed=1)
    first = ingest(client, aws, "trips/a.csv", path.read_bytes())
    invoke(client, "trips/a.csv")  # the same event again
    upload(aws, "trips/a.csv", path.read_bytes())  # the same object sent again
    invoke(client, "trips/a.csv")
    items = [i for i in get(client, "/ingestions")["items"] if i["key"] == "trips/a.csv"]
    assert items == [first]  # the very same record: nothing about it changed
    assert len(_rows(app_env)) == 500
    with get_engine(app_env).connect() as conn:  # and the replays did not even try a chunk again
        tries = conn.execute(sa.text("SELECT kind, seq, attempts FROM ingestion_attempts")).all()
    assert tries and all(attempts == 1 for _, _, attempts in tries), tries


def test_same_bytes_under_another_key_is_a_duplicate(client, aws, app_env, tmp_path):
    path = tmp_path / "t.csv"
    generate(path, 300, seed=2)
    first = ingest(client, aws, "trips/a.csv", path.read_bytes())
    second = ingest(client, aws, "trips/copy-of-a.csv", path.read_bytes())
    assert second["duplicate_of"] == first["id"]
    assert second["status"] == "done" and second["rows_loaded"] == 0
    assert len(_rows(app_env)) == 300
    assert get(client, f"/ingestions/{second['id']}")["duplicate_of"] == first["id"]


def test_formats_crlf_bom_no_final_newline_quotes_alias_gzip(client, aws, app_env):
    body = (
        "\ufeffregion,origin_coord,destination_coord,date_time,datasource\r\n"
        '"Turin","POINT (7.67 44.99)","POINT (7.72 45.06)","2018-05-21 02:54:04","baba_car"\r\n'
        '"Prague, CZ",POINT (14.43 50.04),POINT (14.49 50.00),2018-05-28 09:03:40,"cheap ""mobile"""'
    ).encode()
    plain = ingest(client, aws, "trips/crlf.csv", body)
    assert plain["status"] == "done" and plain["rows_loaded"] == 2, plain
    zipped = ingest(client, aws, "trips/crlf.csv.gz", gzip.compress(body.replace(b"Turin", b"Turin2")))
    assert zipped["status"] == "done" and zipped["rows_loaded"] == 2, zipped
    assert zipped["bytes_done"] == zipped["bytes_total"]
    regions = {t["region"]: t for t in get(client, "/trips")["items"]}
    assert set(regions) == {"Turin", "Turin2", "Prague, CZ"}
    assert regions["Prague, CZ"]["datasource"] == 'cheap "mobile"'
    assert regions["Turin"]["origin"] == {"lon": 7.67, "lat": 44.99}
    assert regions["Turin"]["datetime"] == "2018-05-21T02:54:04Z"


def test_large_gzip_in_many_blocks(client, aws, app_env, tmp_path, monkeypatch):
    path = tmp_path / "t.csv.gz"
    generate(path, 3000, seed=3, gzip=True)
    monkeypatch.setenv("CHUNK_BYTES", "4096")
    ingestion = ingest(client, aws, "trips/big.csv.gz", path.read_bytes())
    assert ingestion["status"] == "done" and ingestion["rows_loaded"] == 3000
    assert ingestion["bytes_done"] == ingestion["bytes_total"]


@pytest.mark.parametrize(
    ("key", "body", "phrase"),
    [
        ("trips/empty.csv", b"", "The file is empty."),
        ("trips/header-only.csv", HEADER, "no data rows"),
        ("trips/wrong-header.csv", b"a,b,c\n1,2,3\n", "The header has no region, origin_coord"),
        ("trips/missing.csv", b"region,origin_coord,destination_coord,datasource\nTurin,,,x\n", "no datetime column"),
        ("trips/binary.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data"),
        ("trips/latin1.csv", "région,x\n".encode("latin-1"), "not UTF-8"),
        ("trips/latin1-rows.csv", HEADER + "Torino é,POINT (1 2),POINT (1 2),2018-05-21 02:54:04,x\n".encode("latin-1"), "not UTF-8"),
        ("trips/notes.json", b'{"a": 1}', "is not a CSV file"),
        ("unknown/file.csv", HEADER + GOOD, "No dataset matches the key"),
        ("toplevel.csv", HEADER + GOOD, "No dataset matches the key"),
        ("trips/broken.csv.gz", b"this is not gzip", "not valid gzip"),
    ],
)
def test_unreadable_files_fail_with_a_sentence(client, aws, app_env, key, body, phrase):
    ingestion = ingest(client, aws, key, body)
    assert ingestion["status"] == "failed"
    assert phrase in ingestion["error"], ingestion["error"]
    assert ingestion["finished_at"] is not None
    assert _rows(app_env) == []


def test_bad_rows_are_rejected_with_line_numbers_and_good_rows_load(client, aws, app_env, monkeypatch):
    monkeypatch.setenv("MAX_REJECT_SHARE", "0.6")
    body = HEADER + GOOD * 3 + (
        b"Turin,POINT (7.67 abc),POINT (7.72 45.06),2018-05-21 02:54:04,baba_car\n"  # line 5
        b"Turin,POINT (7.67 44.99),POINT (7.72 45.06),2018-13-21 02:54:04,baba_car\n"  # line 6
        b"\n"  # line 7, blank: skipped, not rejected
        b"Turin,POINT (7.67 95),POINT (7.72 45.06),2018-05-21 02:54:04,baba_car\n"  # line 8
        b",POINT (7.67 44.99),POINT (7.72 45.06),2018-05-21 02:54:04,baba_car\n"  # line 9
        b"Turin,POINT (7.67 44.99),2018-05-21 02:54:04\n"  # line 10
        b"Turin,POINT (7.67 44.99),POINT (7.72 45.06),2018-02-30 10:00:00,baba_car\n"  # line 11
        b"Turin,POINT (7.67 44.99),POINT (7.72 45.06),2018-05-21 10:00:61,baba_car\n"  # line 12
        b"Turin,POINT (7.67 44.99),POINT (7.72 45.06),2018-05-21T10:00:00,baba_car\n"  # line 13: ISO, fine
    ) + GOOD * 2
    ingestion = ingest(client, aws, "trips/some-bad.csv", body)
    assert ingestion["status"] == "done", ingestion
    assert (ingestion["rows_loaded"], ingestion["rows_rejected"]) == (6, 7)
    lines = {e["line"]: e["message"] for e in ingestion["errors"]}
    assert sorted(lines) == [5, 6, 8, 9, 10, 11, 12]
    assert "'2018-02-30 10:00:00' is not a date and time" in lines[11]
    assert "'2018-05-21 10:00:61' is not a date and time" in lines[12]
    assert "not a WKT point" in lines[5]
    assert "not a date and time" in lines[6]
    assert "outside the valid range" in lines[8]
    assert "region is empty" in lines[9]
    assert "expected 5 fields, found 3" in lines[10]


def test_line_numbers_are_file_wide_across_chunks(client, aws, app_env, monkeypatch):
    monkeypatch.setenv("CHUNK_BYTES", "1024")
    body = HEADER + GOOD * 60 + b"Turin,POINT (x y),POINT (7.72 45.06),2018-05-21 02:54:04,baba_car\n" + GOOD * 5
    ingestion = ingest(client, aws, "trips/late-bad.csv", body)
    assert ingestion["rows_rejected"] == 1
    assert ingestion["errors"] == [{"line": 62, "message": "origin_coord 'POINT (x y)' is not a WKT point like "
                                                          "'POINT (7.68 45.07)' (longitude first)"}]


@pytest.mark.parametrize(("bad", "status"), [(5, "done"), (6, "failed")])
def test_a_reject_share_equal_to_the_limit_passes_and_one_more_fails(client, aws, app_env, monkeypatch, bad, status):
    monkeypatch.setenv("MAX_REJECT_SHARE", "0.1")
    body = HEADER + GOOD * (50 - bad) + b"Turin,nope,nope,never,x\n" * bad
    ingestion = ingest(client, aws, "trips/edge.csv", body)
    assert ingestion["status"] == status, ingestion  # 5 of 50 is 10%: allowed; 6 of 50 is not


def test_too_many_rejects_fail_the_file_and_keep_nothing(client, aws, app_env, tmp_path, monkeypatch):
    monkeypatch.setenv("CHUNK_BYTES", "1024")
    good = tmp_path / "good.csv"
    generate(good, 200, seed=4)
    kept = ingest(client, aws, "trips/good.csv", good.read_bytes())
    before = (_rows(app_env), _rollups(app_env))
    body = HEADER + GOOD * 40 + b"Turin,nope,nope,never,x\n" * 10
    ingestion = ingest(client, aws, "trips/mostly-bad.csv", body)
    assert ingestion["status"] == "failed"
    assert "10 of 50 rows (20%) were rejected" in ingestion["error"]
    assert (_rows(app_env), _rollups(app_env)) == before
    assert kept["status"] == "done"


def test_event_for_a_deleted_object_is_ignored(client, aws, app_env):
    invoke(client, "trips/never-uploaded.csv")
    assert get(client, "/ingestions")["items"] == []


def test_ingestion_routes(client, aws, app_env):
    ids = [ingest(client, aws, f"trips/{n}.csv", HEADER + GOOD * (n + 1))["id"] for n in range(3)]
    page1 = get(client, "/ingestions?limit=2")
    assert [i["id"] for i in page1["items"]] == ids[::-1][:2]
    page2 = get(client, f"/ingestions?limit=2&after={page1['next']}")
    assert [i["id"] for i in page2["items"]] == [ids[0]] and page2["next"] is None
    assert get(client, "/ingestions?status=failed")["items"] == []
    one = get(client, f"/ingestions/{ids[0]}")
    assert set(one) >= {"id", "dataset", "bucket", "key", "status", "rows_loaded", "rows_rejected", "bytes_total",
                        "bytes_done", "errors", "error", "duplicate_of", "created_at", "started_at", "finished_at"}
    assert one["created_at"].endswith("Z")
    assert get(client, "/ingestions/99999", 404) == {"error": "Ingestion 99999 not found."}
    assert "whole number" in get(client, "/ingestions/abc", 400)["error"]
    assert "limit" in get(client, "/ingestions?limit=0", 400)["error"]
    assert "status" in get(client, "/ingestions?status=bogus", 400)["error"]
    assert ingestion_for(client, "trips/1.csv")["rows_loaded"] == 2
