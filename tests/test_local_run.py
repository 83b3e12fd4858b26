"""The README's main job (`make run`, i.e. `python -m tools.local`), run as a user runs it: a process
of its own, on a fresh SQLite database, with its own inbox folder (never the developer's data/inbox)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from chalicelib.datasets import names

ROOT = Path(__file__).resolve().parent.parent
HEADER = "region,origin_coord,destination_coord,datetime,datasource\n"
ROW = "Turin,POINT (7.6 45.0),POINT (7.7 45.1),2018-05-01 08:00:00,mine\n"
WAIT = 120  # seconds: a bound on every wait, never an expectation


def local_env(db: Path) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}"}
    for name in ("AWS_ENDPOINT_URL", "INGEST_QUEUE_URL"):
        env.pop(name, None)
    return env


def run_local(db: Path, inbox: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.local", "--inbox", str(inbox), *args],
        cwd=ROOT, env=local_env(db), capture_output=True, text=True, timeout=300,
    )


def answer(stdout: str, path: str) -> dict:
    """The JSON printed under `GET <path>` by --no-serve."""
    lines = stdout.splitlines()
    return json.loads(lines[lines.index(f"GET {path}") + 1])


def test_local_run_ingests_samples_and_answers(tmp_path):
    extra = tmp_path / "mine.csv"
    extra.write_text(HEADER + ROW)
    result = run_local(tmp_path / "local.sqlite", tmp_path / "inbox", "--no-serve", "--sample-rows", "3000",
                       str(extra))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith("trips/trips-canonical.csv: 100.0% ") and line.endswith("100 rows, done")
               for line in lines), result.stderr
    assert any(line.startswith("trips/mine.csv: 100.0% ") for line in lines), result.stderr
    assert "\r" not in result.stderr  # not a terminal: plain lines, no bar redrawn
    assert answer(result.stdout, "/trips/counts?by=region")["items"][2]["region"] == "Turin"


def test_local_run_names_a_missing_file(tmp_path):
    result = run_local(tmp_path / "local.sqlite", tmp_path / "inbox", "--no-serve", "--sample-rows", "0",
                       "no/such.csv")
    assert result.returncode == 2
    assert "no such file: no/such.csv" in result.stderr


def test_a_restart_reports_what_is_already_loaded_and_exits_0(tmp_path):
    db, inbox = tmp_path / "local.sqlite", tmp_path / "inbox"
    mine, new = tmp_path / "mine.csv", tmp_path / "new.csv"
    mine.write_text(HEADER + ROW)
    new.write_text(HEADER + ROW.replace("Turin", "Prague"))
    first = run_local(db, inbox, "--no-serve", "--sample-rows", "0", str(mine))
    assert first.returncode == 0, first.stderr
    prague = answer(first.stdout, "/trips/counts?by=region")["items"][1]

    again = run_local(db, inbox, "--no-serve", "--sample-rows", "0", str(mine), str(new))
    assert again.returncode == 0, again.stderr
    assert "2 files already loaded: trips/trips-canonical.csv, trips/mine.csv (nothing to do)" in again.stderr
    assert "no ingestion was recorded" not in again.stderr
    assert any(line.startswith("trips/new.csv: 100.0% ") for line in again.stderr.splitlines()), again.stderr
    assert answer(again.stdout, "/trips/counts?by=region")["items"][1] == {**prague, "trips": prague["trips"] + 1}


def test_inbox_files_are_ingested_once_and_moved_and_strays_reported(tmp_path):
    inbox = tmp_path / "inbox"
    for rel, text in {"trips/good.csv": HEADER + ROW * 3, "trips/bad.csv": "city,when\nTurin,2018-05-01\n",
                      "stray.csv": HEADER + ROW, "elsewhere/x.csv": HEADER + ROW,
                      "trips/deeper/y.csv": HEADER + ROW}.items():
        (inbox / rel).parent.mkdir(parents=True, exist_ok=True)
        (inbox / rel).write_text(text)
    first = run_local(tmp_path / "one.sqlite", inbox, "--no-serve", "--sample-rows", "0")
    assert first.returncode == 1, first.stderr  # bad.csv failed
    assert (inbox / "done/trips/good.csv").read_text() == HEADER + ROW * 3
    assert (inbox / "failed/trips/bad.csv").exists()
    assert not (inbox / "trips/good.csv").exists() and not (inbox / "trips/bad.csv").exists()
    assert f"{inbox}/trips/good.csv moved to {inbox}/done/trips/good.csv" in first.stderr
    assert f"{inbox}/trips/bad.csv moved to {inbox}/failed/trips/bad.csv" in first.stderr
    for stray in ("stray.csv", "elsewhere/x.csv", "trips/deeper/y.csv"):
        assert (inbox / stray).exists()  # left where they are...
        assert f"{inbox}/{stray} is in " in first.stderr  # ...and reported
    assert all((inbox / name).is_dir() for name in names())  # one folder per dataset
    assert answer(first.stdout, "/trips/weekly-average?region=Turin")["trips"] == 38 + 3

    # A new database sees only the samples: what the inbox held was fed once, into the first one.
    second = run_local(tmp_path / "two.sqlite", inbox, "--no-serve", "--sample-rows", "0")
    assert second.returncode == 0, second.stderr
    assert answer(second.stdout, "/trips/weekly-average?region=Turin") == {
        "weekly_average": 7.6, "weeks": 5, "trips": 38, "from": "2018-04-30", "to": "2018-05-28"}
    assert "moved to" not in second.stderr


def _taken_port() -> socket.socket:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


@pytest.mark.parametrize("option", ["--port", "--ws-port"])
def test_a_busy_port_is_named_with_a_way_out(tmp_path, option):
    holder = _taken_port()
    busy = holder.getsockname()[1]
    try:
        ports = {"--port": "0", "--ws-port": "0", option: str(busy)}
        result = run_local(tmp_path / "local.sqlite", tmp_path / "inbox", "--sample-rows", "0",
                           *[x for pair in ports.items() for x in pair])
    finally:
        holder.close()
    assert result.returncode == 2
    assert f"error: port {busy} for the " in result.stderr and f"({option}) on 127.0.0.1 is already in use" in result.stderr
    assert 'make run ARGS="--port 8010 --ws-port 8011"' in result.stderr
    assert "Traceback" not in result.stderr


def test_make_run_passes_args_and_files_through():
    shown = subprocess.run(["make", "--no-print-directory", "-n", "run", "ARGS=--no-serve --port 8010",
                            "FILES=a.csv b.csv"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    commands = [line for line in shown.stdout.splitlines() if "-m tools.local" in line]
    assert len(commands) == 1 and commands[0].endswith("/python -m tools.local --no-serve --port 8010 a.csv b.csv"), \
        shown.stdout


class Output:
    """A running process's stderr, read line by line in a thread."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True).start()

    def wait_for(self, pattern: str) -> re.Match:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            time.sleep(0.1)
        raise AssertionError(f"no line matched {pattern!r}:\n" + "".join(self.lines))


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_serving_answers_routes_ingests_the_inbox_live_and_stops_on_ctrl_c(tmp_path):
    inbox = tmp_path / "inbox"
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.local", "--inbox", str(inbox), "--sample-rows", "0", "--port", "0",
         "--ws-port", "0"],
        cwd=ROOT, env=local_env(tmp_path / "local.sqlite"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    output = Output(process.stderr)
    try:
        base = output.wait_for(r"HTTP API: (http://127\.0\.0\.1:\d+)").group(1)
        assert _get(f"{base}/trips/weekly-average?region=Turin")["trips"] == 38
        for method, path, status, phrase in [("GET", "/nowhere", 404, "No route GET /nowhere"),
                                             ("POST", "/trips", 405, "POST is not allowed on /trips")]:
            with pytest.raises(urllib.error.HTTPError) as caught:  # the platform's own answers, in our shape
                urllib.request.urlopen(urllib.request.Request(f"{base}{path}", method=method), timeout=WAIT)
            assert caught.value.code == status
            assert phrase in json.loads(caught.value.read())["error"]
        partial = tmp_path / "live.partial"  # written whole, then moved in, as a careful user would
        partial.write_text(HEADER + ROW * 2)
        (inbox / "trips").mkdir(parents=True, exist_ok=True)
        partial.replace(inbox / "trips" / "live.csv")
        output.wait_for(r"live\.csv moved to .*/done/trips/live\.csv")
        keys = {i["key"]: i["status"] for i in _get(f"{base}/ingestions")["items"]}
        assert keys["trips/live.csv"] == "done"
        process.send_signal(signal.SIGINT)
        assert process.wait(WAIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(WAIT)
    text = "".join(output.lines)
    assert "http: GET /trips/weekly-average?region=Turin 200" in text  # the access log, above any bar
    assert "stopping" in text
    assert "Traceback" not in text
