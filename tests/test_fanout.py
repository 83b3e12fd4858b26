"""With INGEST_QUEUE_URL, chunks fan out over SQS; any order and redelivery give exact counts."""

from __future__ import annotations

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

from chalicelib import chunks, ingestions, notify, pipeline, s3objects
from chalicelib.datasets import trips
from chalicelib.datasets.trips import loading as trips_load
from chalicelib.db import get_engine
from chalicelib.settings import Settings
from tests.support.ingest import get, ingestion_for, invoke, upload
from tools.generate_trips import generate


@pytest.fixture
def queue(aws, monkeypatch):
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="sluice-chunks")["QueueUrl"]
    monkeypatch.setenv("INGEST_QUEUE_URL", url)
    monkeypatch.setenv("CHUNK_BYTES", "1024")
    return sqs, url


def _drain(sqs, url) -> list[str]:
    bodies = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for m in messages:
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def _deliver(client, bodies: list[str]) -> None:
    for body in bodies:
        event = client.events.generate_sqs_event(message_bodies=[body], queue_name="sluice-chunks")
        client.lambda_.invoke("on_chunk_message", event)


def _totals(db_url: str) -> tuple[int, int, int]:
    with get_engine(db_url).connect() as conn:
        return (
            conn.execute(sa.text("select count(*) from trips")).scalar(),
            conn.execute(sa.text("select coalesce(sum(trips), 0) from trip_region_weeks")).scalar(),
            conn.execute(sa.text("select coalesce(sum(trips), 0) from trip_groups")).scalar(),
        )


def test_chunks_fan_out_in_any_order_with_redelivery(client, aws, app_env, queue, tmp_path):
    sqs, url = queue
    path = tmp_path / "t.csv"
    summary = generate(path, 400, seed=9)
    upload(aws, "trips/fan.csv", path.read_bytes())
    invoke(client, "trips/fan.csv")
    planned = ingestion_for(client, "trips/fan.csv")
    assert planned["status"] == "running" and planned["rows_loaded"] == 0  # the handler only planned
    bodies = _drain(sqs, url)
    assert len(bodies) == len(chunks.plan(path.stat().st_size, 1024))
    assert sorted(json.loads(b)["seq"] for b in bodies) == list(range(len(bodies)))
    random.Random(1).shuffle(bodies)
    _deliver(client, bodies + bodies[:5])  # SQS delivers at least once
    done = ingestion_for(client, "trips/fan.csv")
    assert done["status"] == "done" and done["rows_loaded"] == summary["rows"]
    assert done["bytes_done"] == done["bytes_total"]
    assert _totals(app_env) == (summary["rows"],) * 3
    assert get(client, f"/ingestions/{done['id']}")["finished_at"] is not None


def test_gzip_stream_continues_through_the_queue(client, aws, app_env, queue, tmp_path):
    sqs, url = queue
    path = tmp_path / "t.csv.gz"
    summary = generate(path, 400, seed=10, gzip=True)
    upload(aws, "trips/fan.csv.gz", path.read_bytes())
    invoke(client, "trips/fan.csv.gz")
    rounds = 0
    while bodies := _drain(sqs, url):
        assert all(json.loads(b) == {"ingestion_id": 1, "gzip": True} for b in bodies)
        _deliver(client, bodies * 2)  # a duplicated continuation must not double anything
        rounds += 1
        assert rounds < 500
    done = ingestion_for(client, "trips/fan.csv.gz")
    assert done["status"] == "done" and done["rows_loaded"] == summary["rows"]
    assert _totals(app_env) == (summary["rows"],) * 3


def test_message_for_a_finished_ingestion_is_a_no_op(client, aws, app_env, queue, tmp_path):
    sqs, url = queue
    upload(aws, "trips/x.csv", b"region,origin_coord,destination_coord,datetime,datasource\n")
    invoke(client, "trips/x.csv")
    _deliver(client, _drain(sqs, url))
    failed = ingestion_for(client, "trips/x.csv")
    assert failed["status"] == "failed" and "no data rows" in failed["error"]
    sent: list[dict] = []
    notify.add_listener(sent.append)
    try:
        _deliver(client, [json.dumps({"ingestion_id": failed["id"], "seq": 0})])
    finally:
        notify.remove_listener(sent.append)
    assert ingestion_for(client, "trips/x.csv") == failed  # the very same record, to the second
    assert sent == []  # and nobody was told anything
    with get_engine(app_env).connect() as conn:  # nor was the chunk tried again
        assert conn.execute(sa.text("SELECT max(attempts) FROM ingestion_attempts")).scalar() == 1


def test_file_failing_midway_keeps_nothing_and_later_chunks_are_no_ops(client, aws, app_env, queue, tmp_path):
    sqs, url = queue
    path = tmp_path / "t.csv"
    generate(path, 300, seed=12)
    body = path.read_bytes()
    middle = body.index(b"\n", len(body) // 2) + 1
    body = body[:middle] + "Torino é,POINT (7.6 45.0),POINT (7.7 45.1),2018-05-01 08:00:00,x\n".encode("latin-1") + body[middle:]
    upload(aws, "trips/midway.csv", body)
    invoke(client, "trips/midway.csv")
    bodies = sorted(_drain(sqs, url), key=lambda b: json.loads(b)["seq"])
    _deliver(client, bodies + bodies)
    failed = ingestion_for(client, "trips/midway.csv")
    assert failed["status"] == "failed" and "not UTF-8" in failed["error"]
    assert _totals(app_env) == (0, 0, 0)


def _groups_match_trips(db_url: str) -> bool:
    """trip_groups equals a brute-force GROUP BY over the raw trips."""
    stored_keys = [trips.groups.c[k] for k in trips.GROUP_KEYS]
    trip_keys = [trips.trips.c[k] for k in trips.GROUP_KEYS]
    with get_engine(db_url).connect() as conn:
        stored = conn.execute(sa.select(*stored_keys, trips.groups.c.trips).order_by(*stored_keys)).all()
        counted = conn.execute(sa.select(*trip_keys, sa.func.count()).group_by(*trip_keys).order_by(*trip_keys)).all()
    return [tuple(r) for r in stored] == [tuple(r) for r in counted]


def _loaded_with_step_zero_only(client, aws, app_env, queue, tmp_path) -> tuple[int, list[str]]:
    """An ingestion whose chunks are all in and whose finishing died after step 0 (of 2) committed."""
    path = tmp_path / "t.csv"
    generate(path, 400, seed=13)
    ingestion_id, bodies = _loaded_unfinished(client, aws, app_env, queue, "trips/steps.csv", path)
    engine = get_engine(app_env)
    with engine.begin() as conn:
        ingestions.claim_step(conn, ingestion_id, 0)
        trips.finish_step(conn, ingestion_id, 0, trips.FINISH_STEPS)
    with pytest.raises(IntegrityError), engine.begin() as conn:  # a step runs once
        ingestions.claim_step(conn, ingestion_id, 0)
    return ingestion_id, bodies


def _loaded_unfinished(client, aws, app_env, queue, key: str, path) -> tuple[int, list[str]]:
    """An ingestion whose chunks are all in and whose finishing steps have not run, and its messages.

    The last chunk is loaded directly, as a worker that died before finishing would have left it.
    """
    sqs, url = queue
    upload(aws, key, path.read_bytes())
    invoke(client, key)
    bodies = sorted(_drain(sqs, url), key=lambda b: json.loads(b)["seq"])
    _deliver(client, bodies[:-1])
    ingestion_id = json.loads(bodies[-1])["ingestion_id"]
    engine = get_engine(app_env)
    with engine.connect() as conn:
        job = pipeline.job_from_row(ingestions.get(conn, ingestion_id))
    assert pipeline.load_chunk(engine, s3objects.client(), Settings.from_env(), job, job.plan[-1])
    return ingestion_id, bodies


def test_finishing_resumes_with_the_steps_not_done(client, aws, app_env, queue, tmp_path):
    ingestion_id, bodies = _loaded_with_step_zero_only(client, aws, app_env, queue, tmp_path)
    partial = ingestion_for(client, "trips/steps.csv")
    assert partial["status"] == "running" and partial["rows_loaded"] == 400
    assert 0 < _totals(app_env)[2] < 400  # step 0 merged some groups, not all
    _deliver(client, bodies[-1:])  # SQS redelivers the last chunk: finishing runs step 1 only
    assert ingestion_for(client, "trips/steps.csv")["status"] == "done"
    assert _totals(app_env) == (400, 400, 400)
    assert _groups_match_trips(app_env)
    _deliver(client, bodies)  # and again: nothing changes
    assert _totals(app_env) == (400, 400, 400)


def test_failing_after_a_finishing_step_takes_its_groups_back(client, aws, app_env, queue, tmp_path):
    ingestion_id, _ = _loaded_with_step_zero_only(client, aws, app_env, queue, tmp_path)
    pipeline.fail(get_engine(app_env), Settings.from_env(), ingestion_id, trips, "Stopped by an operator.")
    assert ingestion_for(client, "trips/steps.csv")["status"] == "failed"
    assert _totals(app_env) == (0, 0, 0)
    assert _groups_match_trips(app_env)


def test_files_finishing_at_once_merge_shared_groups_exactly(client, aws, app_env, queue, tmp_path):
    """Every step of two files runs at the same moment; groups that both files fill add up."""
    _finish_two_files_at_once(client, aws, app_env, queue, tmp_path)


def test_servers_before_version_15_merge_groups_with_on_conflict(client, aws, app_env, queue, tmp_path, monkeypatch):
    """Servers without MERGE take the INSERT ... ON CONFLICT path, with the same result."""
    if not app_env.startswith("postgresql"):
        pytest.skip("a question of the PostgreSQL server version")
    monkeypatch.setattr(get_engine(app_env).dialect, "server_version_info", (14, 11))
    _finish_two_files_at_once(client, aws, app_env, queue, tmp_path)


def test_group_merge_probes_the_primary_key(client, aws, app_env, queue, tmp_path):
    """The merge looks each of the file's groups up by the primary key: no join that reads all of
    trip_groups, and no index probed by region alone (which rescanned the groups just inserted)."""
    if not app_env.startswith("postgresql"):
        pytest.skip("SQLite merges with ON CONFLICT, which always probes the primary key")
    path = tmp_path / "plan.csv"
    generate(path, 300, seed=41)
    ingestion_id, _ = _loaded_unfinished(client, aws, app_env, queue, "trips/plan.csv", path)
    engine = get_engine(app_env)
    with engine.connect() as conn, conn.begin():
        indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("trip_groups")}
        trips_load._take_turns_postgres(conn, 0)
        explain = sa.text("EXPLAIN " + trips_load.MERGE_GROUPS.text)
        params = {"ingestion_id": ingestion_id, "step": 0, "steps": trips.FINISH_STEPS, "sign": 1}
        plan = "\n".join(row[0] for row in conn.execute(explain, params))
    assert indexes == {"ix_trip_groups_trips"}
    assert "Nested Loop" in plan and "Index Scan using trip_groups_pkey on trip_groups" in plan, plan
    assert "Hash Join" not in plan and "Merge Join" not in plan, plan


def _finish_two_files_at_once(client, aws, app_env, queue, tmp_path) -> None:
    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    generate(paths[0], 600, seed=21)
    generate(paths[1], 600, seed=21, datetime_header="date_time")  # the same trips in other bytes
    ids = [_loaded_unfinished(client, aws, app_env, queue, f"trips/{p.name}", p)[0] for p in paths]
    engine = get_engine(app_env)
    start = threading.Barrier(len(ids) * trips.FINISH_STEPS)

    def step(ingestion_id: int, k: int) -> None:
        start.wait()
        with engine.begin() as conn:
            trips.finish_step(conn, ingestion_id, k, trips.FINISH_STEPS)

    with ThreadPoolExecutor(len(ids) * trips.FINISH_STEPS) as pool:
        for future in [pool.submit(step, i, k) for i in ids for k in range(trips.FINISH_STEPS)]:
            future.result()
    assert _groups_match_trips(app_env)
    with engine.connect() as conn:
        shared = conn.execute(sa.text(
            "SELECT count(*) FROM (SELECT 1 FROM trips GROUP BY region, o_cx, o_cy, d_cx, d_cy, tod "
            "HAVING count(DISTINCT ingestion_id) = 2) s"
        )).scalar()
    assert shared > 0  # the files meet in some groups, so the merges really overlapped


def test_merges_of_one_step_take_turns(client, aws, app_env, queue, tmp_path):
    """A step's merge waits for any other file's merge of the same step, and only of the same step."""
    if not app_env.startswith("postgresql"):
        pytest.skip("the merges take turns on a PostgreSQL advisory lock; SQLite has one writer anyway")
    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    generate(paths[0], 300, seed=31)
    generate(paths[1], 300, seed=32)
    first, second = (_loaded_unfinished(client, aws, app_env, queue, f"trips/{p.name}", p)[0] for p in paths)
    engine = get_engine(app_env)
    with engine.connect() as holding, holding.begin():
        trips.finish_step(holding, first, 0, trips.FINISH_STEPS)  # step 0's turn, until this commits
        with engine.connect() as other:
            with pytest.raises(OperationalError, match="lock timeout"), other.begin():
                other.exec_driver_sql("SET LOCAL lock_timeout = '300ms'")
                trips.finish_step(other, second, 0, trips.FINISH_STEPS)
            with other.begin():
                other.exec_driver_sql("SET LOCAL lock_timeout = '5s'")
                trips.finish_step(other, second, 1, trips.FINISH_STEPS)  # another step does not wait
