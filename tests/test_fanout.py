"""With INGEST_QUEUE_URL, chunks fan out over SQS; any order and redelivery give exact counts."""

from __future__ import annotations

import json
import random

import boto3
import pytest
import sqlalchemy as sa

from chalicelib import chunks
from chalicelib.db import get_engine
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
    _deliver(client, [json.dumps({"ingestion_id": failed["id"], "seq": 0})])
    assert ingestion_for(client, "trips/x.csv")["status"] == "failed"


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
