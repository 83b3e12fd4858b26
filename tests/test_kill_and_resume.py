"""A worker killed in the middle of a file loses nothing and doubles nothing once the event is replayed.

The worker is a real process, S3 is a moto server on localhost (so both processes see the same bucket),
and the kill is SIGKILL: no handler, no cleanup, exactly like a Lambda that times out or dies.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa

from chalicelib import chunks
from chalicelib.db import get_engine
from tools.generate_trips import generate

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "sluice-kill-test"
KEY = "trips/killed.csv"
WORKER = (
    "from chalicelib.pipeline import ingest_object\n"
    "from chalicelib.settings import Settings\n"
    f"ingest_object({BUCKET!r}, {KEY!r}, Settings.from_env())\n"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_server(monkeypatch):
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield env
    server.stop()


def _chunks_done(url: str) -> int:
    with get_engine(url).connect() as conn:
        return conn.execute(sa.text("select count(*) from ingestion_chunks")).scalar()


def test_killed_worker_resumes_exactly(db_url, s3_server, tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    summary = generate(path, 1200, seed=5)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(path), BUCKET, KEY)
    env = {**os.environ, **s3_server, "DATABASE_URL": db_url, "CHUNK_BYTES": "1024", "INGEST_WORKERS": "1"}
    worker = subprocess.Popen([sys.executable, "-c", WORKER], cwd=ROOT, env=env)
    total = len(chunks.plan(path.stat().st_size, 1024))
    deadline = time.time() + 60
    while _chunks_done(db_url) < 5 and worker.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    done_at_kill = _chunks_done(db_url)
    assert 5 <= done_at_kill < total - 5, "the kill must land in the middle of the file"

    with get_engine(db_url).connect() as conn:
        status, loaded = conn.execute(sa.text("select status, rows_loaded from ingestions")).one()
        in_table = conn.execute(sa.text("select count(*) from trips")).scalar()
    assert status == "running" and loaded == in_table  # counters and rows committed together

    from chalice.test import Client

    from app import app

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("CHUNK_BYTES", "1024")
    with Client(app, stage_name="local") as client:
        event = client.events.generate_s3_event(BUCKET, KEY)
        client.lambda_.invoke("on_csv_upload", event)  # the retry: resumes after the last committed chunk
        client.lambda_.invoke("on_csv_upload", event)  # and once more: a no-op

    with get_engine(db_url).connect() as conn:
        row = conn.execute(sa.text("select status, rows_loaded, bytes_done, bytes_total from ingestions")).one()
        trips = conn.execute(sa.text("select count(*) from trips")).scalar()
        weekly = conn.execute(sa.text("select sum(trips) from trip_region_weeks")).scalar()
        cells = conn.execute(sa.text("select sum(trips) from trip_cell_weeks where point = 'o'")).scalar()
        groups = conn.execute(sa.text("select sum(trips) from trip_groups")).scalar()
    assert row == ("done", summary["rows"], path.stat().st_size, path.stat().st_size)
    assert trips == weekly == cells == groups == summary["rows"]
