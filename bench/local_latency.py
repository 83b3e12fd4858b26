"""Route latency while a file ingests, in the local run (`make run`): the HTTP API and the ingestion
share one process, as they do in `python -m tools.local`.

    python -m bench.local_latency [--rows 300000] [--database-url URL] [--path /trips/weekly-average?region=Turin]

What it does:
1. a fresh SQLite database (default; or `--database-url`) gets the 100-row sample, so the route has data;
2. the local HTTP server (Chalice's, as `make run` starts it) serves it on a free port;
3. a separate process (so that its own waits are not counted) calls the route every 20 ms: first while
   nothing else runs (idle), then while a synthetic trips file of `--rows` rows is ingested in this
   process through `on_csv_upload`, exactly as the local run does;
4. prints p50 / p95 / max of both phases and writes bench/results/local-latency-latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

# The poller: GET the URL every `interval` seconds until stdin closes; one latency (ms) per line.
POLLER = r"""
import sys, threading, time, urllib.request
url, interval = sys.argv[1], float(sys.argv[2])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
while not stop.is_set():
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
    print(f"{(time.perf_counter() - start) * 1000:.2f}", flush=True)
    stop.wait(interval)
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.local_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000, help="rows of the file ingested during the load")
    parser.add_argument("--database-url", default="", help="default: a fresh SQLite file in a temp folder")
    parser.add_argument("--path", default="/trips/weekly-average?region=Turin", help="the route to time")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between two calls")
    parser.add_argument("--output", type=Path, default=RESULTS / "local-latency-latest.json")
    return parser.parse_args(argv)


class Poller:
    """The route called from another process; latencies collected as they come."""

    def __init__(self, url: str, interval: float) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", POLLER, url, str(interval)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.samples: list[tuple[float, float]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.samples.append((time.monotonic(), float(line)))

    def between(self, start: float, end: float) -> list[float]:
        return [ms for at, ms in self.samples if start <= at <= end]

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(60)
        self.thread.join(5)


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"calls": 0}
    ordered = sorted(values)
    return {"calls": len(values), "p50_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 1),
            "max_ms": round(ordered[-1], 1)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sluice-latency-") as tmp:
        os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{Path(tmp) / 'sluice.sqlite'}"
        from tools import local

        local._local_environment()
        from moto import mock_aws

        with mock_aws():
            result = measure(args, Path(tmp), local)
    print(json.dumps(result, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def measure(args: argparse.Namespace, tmp: Path, local: Any) -> dict[str, Any]:
    import boto3

    from app import app
    from chalicelib.migrate import upgrade
    from chalicelib.settings import Settings
    from tools.generate_trips import canonical_sample, generate

    url = Settings.from_env().database_url
    upgrade(url)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=local.BUCKET)
    sample, big = tmp / "canonical.csv", tmp / f"trips-{args.rows}.csv"
    canonical_sample(sample)
    generate(big, args.rows, seed=7, start="2018-04-02", end="2018-06-30")
    upload_and_ingest(s3, local, "trips/canonical.csv", sample)

    server = local.LocalHttpServer(app, 0, access_log=False)
    server.start()
    port = server.port
    poller = Poller(f"http://127.0.0.1:{port}{args.path}", args.interval)
    try:
        time.sleep(1.0)  # the poller's interpreter starts
        idle_start = time.monotonic()
        time.sleep(args.idle_seconds)
        load_start = time.monotonic()
        upload_and_ingest(s3, local, f"trips/{big.name}", big)
        load_end = time.monotonic()
    finally:
        poller.stop()
        server.stop()
    return {
        "database": url.split(":", 1)[0], "route": args.path, "rows": args.rows,
        "load_seconds": round(load_end - load_start, 2),
        "idle": summary(poller.between(idle_start, load_start)),
        "during_load": summary(poller.between(load_start, load_end)),
    }


def upload_and_ingest(s3: Any, local: Any, key: str, path: Path) -> None:
    from chalice.test import Client

    from app import app

    s3.upload_file(str(path), local.BUCKET, key)
    with Client(app, stage_name="local") as client:
        client.lambda_.invoke("on_csv_upload", client.events.generate_s3_event(local.BUCKET, key))


if __name__ == "__main__":
    sys.exit(main())
