"""A plays worker killed in the middle of a file loses nothing and doubles nothing once the event is
replayed: the staged chunk sums commit with their chunk markers, so the final totals are exact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import sqlalchemy as sa

from chalicelib import chunks
from chalicelib.db import get_engine
from tests.plays_support import python_totals, rollup, sorted_rows, stage_tables
from tests.test_kill_and_resume import s3_server  # noqa: F401 - the moto server fixture
from tools.generate_plays import generate

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "sluice-plays-kill-test"
KEY = "plays/killed.csv"
WORKER = (
    "from chalicelib.pipeline import ingest_object\n"
    "from chalicelib.settings import Settings\n"
    f"ingest_object({BUCKET!r}, {KEY!r}, Settings.from_env())\n"
)


def _count(url: str, sql: str) -> int:
    with get_engine(url).connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


def test_killed_plays_worker_resumes_exactly(db_url, s3_server, tmp_path, monkeypatch):  # noqa: F811
    path = tmp_path / "p.csv"
    generate(path, 3000, seed=9, songs=60)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(path), BUCKET, KEY)
    env = {**os.environ, **s3_server, "DATABASE_URL": db_url, "CHUNK_BYTES": "1024", "INGEST_WORKERS": "1"}
    worker = subprocess.Popen([sys.executable, "-c", WORKER], cwd=ROOT, env=env)
    total = len(chunks.plan(path.stat().st_size, 1024))
    deadline = time.time() + 60
    while _count(db_url, "select count(*) from ingestion_chunks") < 5 and worker.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    done_at_kill = _count(db_url, "select count(*) from ingestion_chunks")
    assert 5 <= done_at_kill < total - 5, "the kill must land in the middle of the file"
    assert sum(stage_tables(db_url).values()) > 0 and _count(db_url, "select count(*) from play_file_totals") == 0

    from chalice.test import Client

    from app import app

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("CHUNK_BYTES", "1024")
    with Client(app, stage_name="local") as client:
        event = client.events.generate_s3_event(BUCKET, KEY)
        client.lambda_.invoke("on_csv_upload", event)  # the retry: resumes after the last committed chunk
        client.lambda_.invoke("on_csv_upload", event)  # and once more: a no-op

    raw = path.read_bytes()
    expected = python_totals(raw)
    assert _count(db_url, "select rows_loaded from ingestions") == 3000
    assert rollup(db_url) == {k: (v, 1) for k, v in expected.items()}
    assert stage_tables(db_url) == {}
    parts = s3.list_objects_v2(Bucket=BUCKET, Prefix="results/plays/")["Contents"]
    body = b"".join(s3.get_object(Bucket=BUCKET, Key=p["Key"])["Body"].read() for p in parts)
    lines = body.decode().splitlines()
    assert lines[0] == "Song,Date,Total Plays" and len(lines) - 1 == len(sorted_rows(expected))
