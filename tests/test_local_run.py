"""The README's main job (`python -m tools.local`) ingests the samples through on_csv_upload."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_local_run_ingests_samples_and_answers(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'local.sqlite'}"}
    for name in ("AWS_ENDPOINT_URL", "INGEST_QUEUE_URL"):
        env.pop(name, None)
    extra = tmp_path / "mine.csv"
    extra.write_text("region,origin_coord,destination_coord,datetime,datasource\n"
                     "Turin,POINT (7.6 45.0),POINT (7.7 45.1),2018-05-01 08:00:00,mine\n")
    result = subprocess.run(
        [sys.executable, "-m", "tools.local", "--no-serve", "--sample-rows", "3000", str(extra)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "trips/trips-canonical.csv" in result.stderr and "100.0%" in result.stderr
    assert "trips/mine.csv" in result.stderr
    assert '"region": "Turin"' in result.stdout


def test_local_run_names_a_missing_file(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'local.sqlite'}"}
    result = subprocess.run(
        [sys.executable, "-m", "tools.local", "--no-serve", "--sample-rows", "0", "no/such.csv"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert "no such file: no/such.csv" in result.stderr
