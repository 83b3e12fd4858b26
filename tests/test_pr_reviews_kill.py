"""A pr-reviews worker killed in the middle of a file: the retry loads the rest exactly once, and the
report (computed when the file is complete) equals pandas over the whole file.

As tests/test_kill_and_resume.py: a real worker process, S3 on a moto server, SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import boto3
import sqlalchemy as sa

from chalicelib import chunks
from chalicelib.db import get_engine
from tests.support.pr_reviews import (
    PLOT_NAMES,
    expected_report,
    normalised,
    read_file,
    without_outliers_section,
)
from tests.test_kill_and_resume import ROOT, s3_server  # noqa: F401 - the fixture
from tools.generate_pr_reviews import generate

BUCKET = "sluice-kill-test"
KEY = "pr-reviews/killed.csv"
WORKER = (
    "from chalicelib.pipeline import ingest_object\n"
    "from chalicelib.settings import Settings\n"
    f"ingest_object({BUCKET!r}, {KEY!r}, Settings.from_env())\n"
)


def _count(url: str, sql: str) -> int:
    with get_engine(url).connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


def test_killed_worker_resumes_and_the_report_is_exact(db_url, s3_server, tmp_path, monkeypatch):  # noqa: F811
    path = tmp_path / "prs.csv"
    summary = generate(path, 4000, seed=5, missing=0.02, excel_dates=0.2)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(path), BUCKET, KEY)
    env = {**os.environ, **s3_server, "DATABASE_URL": db_url, "CHUNK_BYTES": "1024", "INGEST_WORKERS": "1"}
    worker = subprocess.Popen([sys.executable, "-c", WORKER], cwd=ROOT, env=env)
    total = len(chunks.plan(path.stat().st_size, 1024))
    deadline = time.time() + 60
    while _count(db_url, "select count(*) from ingestion_chunks") < 5 and worker.poll() is None \
            and time.time() < deadline:
        time.sleep(0.01)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    done_at_kill = _count(db_url, "select count(*) from ingestion_chunks")
    assert 5 <= done_at_kill < total - 5, "the kill must land in the middle of the file"
    assert _count(db_url, "select rows_loaded from ingestions") == _count(db_url, "select count(*) from pr_reviews")

    from chalice.test import Client

    from app import app

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("CHUNK_BYTES", "1024")
    with Client(app, stage_name="local") as client:
        event = client.events.generate_s3_event(BUCKET, KEY)
        client.lambda_.invoke("on_csv_upload", event)  # the retry: resumes after the last committed chunk
        client.lambda_.invoke("on_csv_upload", event)  # and once more: a no-op
        ingestion_id = _count(db_url, "select id from ingestions")
        response = client.http.get(f"/pr-reviews/reports/{ingestion_id}")
    assert response.status_code == 200, response.body


    body = json.loads(response.body)
    assert _count(db_url, "select count(*) from pr_reviews") == summary["rows"]
    assert _count(db_url, "select count(*) from pr_review_reports") == 1
    expected = expected_report(read_file(path.read_bytes()))
    assert normalised(without_outliers_section(body["report"])) == normalised(expected)
    assert sorted(p["name"] for p in body["plots"]) == PLOT_NAMES
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"results/pr-reviews/{ingestion_id}/")["Contents"]
    assert len(listed) == len(PLOT_NAMES)
