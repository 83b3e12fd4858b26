"""A plays file beyond one clean load: deleted, replaced by a new version of its key, failed in its
finishing and retried. Each time the rollup must equal plain Python summing of the files that still
count, and the result files of a file taken out must be gone."""

from __future__ import annotations

import json
import time

from tests.plays_support import assert_results, keys_under, python_totals, rollup, s3_outage, table_rows  # noqa: F401
from tests.support.ingest import get, ingest, ingestion_for, invoke, upload
from tools.generate_plays import generate


def _file(tmp_path, seed: int, rows: int = 1200) -> bytes:
    path = tmp_path / f"f{seed}.csv"
    generate(path, rows, seed, songs=120)
    return path.read_bytes()


def _expected(*raws: bytes) -> dict[tuple[str, str], tuple[int, int]]:
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for raw in raws:
        for key, plays in python_totals(raw).items():
            total, files = out.get(key, (0, 0))
            out[key] = (total + plays, files + 1)
    return out


def test_delete_takes_a_done_file_out_of_the_totals_and_s3(client, aws, app_env, tmp_path):
    a, b = _file(tmp_path, 1), _file(tmp_path, 2)
    first, second = ingest(client, aws, "plays/a.csv", a), ingest(client, aws, "plays/b.csv", b)
    assert rollup(app_env) == _expected(a, b)
    response = client.http.delete(f"/ingestions/{first['id']}")
    assert response.status_code == 200 and json.loads(response.body)["status"] == "deleted"
    assert rollup(app_env) == _expected(b)
    assert set(table_rows(app_env, first["id"]).values()) - {table_rows(app_env, first["id"])["play_totals"]} == {0}
    assert keys_under(aws, first["id"]) == [] and keys_under(aws, second["id"])
    gone = client.http.get(f"/plays/results/{first['id']}")
    assert gone.status_code == 404 and b"deleted" in gone.body
    client.http.delete(f"/ingestions/{first['id']}")  # idempotent
    assert rollup(app_env) == _expected(b)


def test_a_new_version_of_a_key_replaces_the_old_totals(client, aws, app_env, tmp_path):
    old, new = _file(tmp_path, 3), _file(tmp_path, 4, rows=900)
    first = ingest(client, aws, "plays/2021-03.csv", old)
    second = ingest(client, aws, "plays/2021-03.csv", new)
    assert second["id"] != first["id"] and second["status"] == "done"
    assert rollup(app_env) == _expected(new)
    replaced = get(client, f"/ingestions/{first['id']}")
    assert replaced["superseded_by"] == second["id"]
    response = client.http.get(f"/plays/results/{first['id']}")
    assert response.status_code == 404 and f"ingestion {second['id']}".encode() in response.body
    assert keys_under(aws, first["id"]) == []
    assert_results(client, aws, second["id"], new)


def test_a_file_whose_finishing_keeps_failing_fails_and_retry_loads_it(client, aws, app_env, tmp_path,
                                                                       monkeypatch, s3_outage):  # noqa: F811
    raw = _file(tmp_path, 5, rows=2000)
    monkeypatch.setenv("PLAYS_PART_BYTES", "4096")
    monkeypatch.setenv("MAX_ATTEMPTS", "2")
    upload(aws, "plays/flaky.csv", raw)
    outage = s3_outage(2)
    for _ in range(3):  # S3 keeps refusing the part files: each rerun is a counted attempt
        try:
            invoke(client, "plays/flaky.csv")
        except ConnectionError:
            pass
    failed = ingestion_for(client, "plays/flaky.csv")
    assert failed["status"] == "failed" and "Finishing the file failed" in failed["error"], failed
    assert keys_under(aws, failed["id"]) == [] and rollup(app_env) == {}
    assert set(table_rows(app_env).values()) == {0}

    outage.allowed = 10**9
    response = client.http.post(f"/ingestions/{failed['id']}/retry")
    assert response.status_code == 200, response.body
    assert get(client, f"/ingestions/{failed['id']}")["status"] == "done"
    assert_results(client, aws, failed["id"], raw)
    assert rollup(app_env) == _expected(raw)


def test_the_same_bytes_again_after_a_delete_load_again(client, aws, app_env, tmp_path):
    raw = _file(tmp_path, 6)
    first = ingest(client, aws, "plays/again.csv", raw)
    client.http.delete(f"/ingestions/{first['id']}")
    invoke(client, "plays/again.csv")  # a replayed event of the deleted object: nothing happens
    assert rollup(app_env) == {}
    time.sleep(1.1)  # S3's LastModified has one-second resolution
    upload(aws, "plays/again.csv", raw)
    invoke(client, "plays/again.csv")
    again = ingestion_for(client, "plays/again.csv")
    assert again["status"] == "done" and again["duplicate_of"] is None
    assert rollup(app_env) == _expected(raw)


def test_a_file_failed_while_a_chunk_writes_its_staging_neither_waits_nor_leaves_rows(
        client, aws, app_env, db_url, tmp_path):
    """A chunk still writing to the staging table holds a lock on it: failing the file must not wait
    for it (that chunk waits for the failing transaction: a deadlock). The rows go, the empty table
    stays, and a later file's finishing step sweeps it."""
    import pyarrow as pa
    import sqlalchemy as sa

    from chalicelib import ingestions, pipeline
    from chalicelib.datasets import plays
    from chalicelib.db import get_engine
    from chalicelib.settings import Settings
    from tests.plays_support import stage_tables

    engine = get_engine(app_env)
    with engine.begin() as conn:
        loading = ingestions.create(conn, "plays", "sluice-test-uploads", "plays/slow.csv", "etag-slow", 100)
        ingestions.start(conn, loading, {}, 2)
        rows = pa.table({"song": ["A", "B", "C"], "date": pa.array([19000] * 3, pa.date32()),
                         "plays": pa.array([1, 2, 3], pa.int64())})
        plays.load(conn, rows, loading)  # a committed chunk
    assert sum(stage_tables(app_env).values()) == 3
    writer = engine.connect()  # a chunk in flight: it wrote to the staging and has not committed
    writer.execute(plays.stage_table(loading, 0).insert().values(song="D", date=rows.column("date")[0].as_py(), plays=4))
    started = time.perf_counter()
    try:
        if db_url.startswith("sqlite"):  # one writer: the chunk would hold the database; nothing to race
            writer.rollback()
        pipeline.fail(engine, Settings.from_env(), loading, plays, "Deleted while it was loading.")
        assert time.perf_counter() - started < 5
    finally:
        writer.rollback()
        writer.close()
    left = stage_tables(app_env)
    assert sum(left.values()) == 0
    if not db_url.startswith("sqlite"):  # the locked table could not be dropped: emptied, then swept
        assert plays.stage_table(loading, 0).name in left
    with engine.connect() as conn:
        assert conn.execute(sa.select(ingestions.ingestions.c.status).where(ingestions.ingestions.c.id == loading)).scalar() == "failed"

    ingest(client, aws, "plays/next.csv", _file(tmp_path, 7))  # its finishing steps sweep the leftovers
    assert stage_tables(app_env) == {}
