"""Run sluice on a laptop: SQLite, S3 simulated in-process by moto, no AWS account.

    python -m tools.local [FILE ...] [--dataset trips] [--port 8000] [--ws-port 8001] [--no-serve]

What it does, in order:
1. brings the database (DATABASE_URL, default data/sluice.sqlite) to the current schema;
2. starts the HTTP API (Chalice's local server) and the WebSocket endpoint on localhost;
3. uploads the sample trips files (made once under data/samples/) and every FILE given to the
   simulated bucket, and hands each to the very same `on_csv_upload` handler, with a progress bar;
4. keeps serving, and ingests any CSV dropped into data/inbox/<dataset>/ while it runs.
`--no-serve` stops after step 3 (it prints the answers of a few routes instead).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
SAMPLES = DATA / "samples"
INBOX = DATA / "inbox"
BUCKET = "sluice-local-uploads"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _local_environment()
    from moto import mock_aws

    with mock_aws():
        return run(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.local", description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="CSV files to ingest after the samples")
    parser.add_argument("--dataset", default="trips", help="dataset (key prefix) for FILEs (default: trips)")
    parser.add_argument("--sample-rows", type=int, default=200_000, help="rows in the synthetic sample file")
    parser.add_argument("--port", type=int, default=8000, help="HTTP API port (default 8000)")
    parser.add_argument("--ws-port", type=int, default=8001, help="WebSocket port (default 8001)")
    parser.add_argument("--no-serve", action="store_true", help="ingest, print a few answers and exit")
    return parser


def _local_environment() -> None:
    """Defaults for a laptop: the embedded database, fake AWS credentials for moto, our bucket."""
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{DATA / 'sluice.sqlite'}")
    # Arrow reads this when it is first imported: the system allocator gives memory back after each
    # chunk (mimalloc keeps it cached), which keeps peak memory bounded.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    os.environ["INGEST_BUCKET"] = BUCKET
    os.environ.pop("INGEST_QUEUE_URL", None)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "local")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def run(args: argparse.Namespace) -> int:
    import boto3

    from chalicelib.migrate import upgrade
    from chalicelib.settings import Settings

    url = Settings.from_env().database_url
    print(f"database: {url}")
    upgrade(url)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    files = [(f"trips/{p.name}", p) for p in sample_files(args.sample_rows)]
    files += [(f"{args.dataset}/{p.name}", p) for p in args.files]
    missing = [str(p) for _, p in files if not p.is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    servers = [] if args.no_serve else start_servers(args.port, args.ws_port)
    ingested = [ingest(s3, key, path) for key, path in files]
    if args.no_serve:
        show_answers()
        return 0 if all(ingested) else 1
    print_examples(args.port, args.ws_port)
    try:
        watch_inbox(s3)
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        for server in servers:
            server.stop()
    return 0


def sample_files(rows: int) -> list[Path]:
    """The canonical 100-row sample and a larger synthetic file, made once and reused."""
    from tools.generate_trips import canonical_sample, generate

    SAMPLES.mkdir(parents=True, exist_ok=True)
    canonical = SAMPLES / "trips-canonical.csv"
    if not canonical.exists():
        canonical_sample(canonical)
    synthetic = SAMPLES / f"trips-synthetic-{rows}.csv"
    if rows > 0 and not synthetic.exists():
        print(f"making {synthetic.relative_to(ROOT)} ({rows:,} rows)")
        generate(synthetic, rows, seed=42, start="2018-04-02", end="2018-06-30", bad_rows=0.001)
    return [canonical] + ([synthetic] if rows > 0 else [])


# --- ingestion with a progress bar --------------------------------------------------------------


def ingest(s3: Any, key: str, path: Path) -> bool:
    """Upload `path` as `key` and run `on_csv_upload` on it, drawing its progress; True if done."""
    from chalice.test import Client

    from app import app
    from chalicelib import notify

    s3.upload_file(str(path), BUCKET, key)
    bar = ProgressBar(key)
    notify.add_listener(bar.update)
    try:
        with Client(app, stage_name="local") as client:
            client.lambda_.invoke("on_csv_upload", client.events.generate_s3_event(BUCKET, key))
    finally:
        notify.remove_listener(bar.update)
    return bar.finish()


class ProgressBar:
    """One terminal line per ingestion, redrawn on each notification (about once a second)."""

    WIDTH = 30

    def __init__(self, key: str) -> None:
        self.key = key
        self.last: dict[str, Any] | None = None

    def update(self, message: dict[str, Any]) -> None:
        ingestion = message["ingestion"]
        if ingestion["key"] != self.key:
            return
        self.last = ingestion
        total = max(ingestion["bytes_total"], 1)
        share = min(ingestion["bytes_done"] / total, 1.0)
        filled = int(share * self.WIDTH)
        line = (
            f"\r{self.key:<40.40} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {share:6.1%} "
            f"{ingestion['rows_loaded']:>10,} rows  {ingestion['status']:<8}"
        )
        print(line, end="", file=sys.stderr, flush=True)

    def finish(self) -> bool:
        print(file=sys.stderr)
        ingestion = self.last
        if ingestion is None:
            print(f"  {self.key}: no ingestion was recorded", file=sys.stderr)
            return False
        if ingestion["duplicate_of"]:
            print(f"  duplicate of ingestion {ingestion['duplicate_of']}: nothing loaded", file=sys.stderr)
        elif ingestion["status"] == "failed":
            print(f"  failed: {ingestion['error']}", file=sys.stderr)
        if ingestion["rows_rejected"]:
            first = ingestion["errors"][0]
            print(
                f"  {ingestion['rows_rejected']:,} rows rejected; first: line {first['line']}: {first['message']}",
                file=sys.stderr,
            )
        return ingestion["status"] == "done"


# --- serving ------------------------------------------------------------------------------------


def start_servers(port: int, ws_port: int) -> list[Any]:
    from app import app
    from tools.local_ws import LocalWebSocketServer

    http = LocalHttpServer(app, port)
    http.start()
    ws = LocalWebSocketServer(app, port=ws_port)
    print(f"WebSocket: {ws.start()}")
    return [ws, http]


class LocalHttpServer:
    """Chalice's own local server (as `chalice local` runs it), in a background thread."""

    def __init__(self, app: Any, port: int) -> None:
        from chalice.cli.factory import CLIFactory
        from chalice.local import create_local_server

        config = CLIFactory(str(ROOT), environ=os.environ).create_config_obj(chalice_stage_name="local")
        self.server = create_local_server(app, config, "127.0.0.1", port)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()


def print_examples(port: int, ws_port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    print(f"\nHTTP API: {base}   (Ctrl-C to stop)\n\nTry:")
    for path in (
        "/ingestions?limit=5",
        "/trips/weekly-average?region=Turin",
        "/trips/weekly-average?bbox=7.60,45.00,7.75,45.10",
        "/trips/weekly?region=Prague",
        "/trips/groups?region=Hamburg&limit=5",
        "/trips/counts?by=datasource",
        "/trips?region=Turin&limit=3",
    ):
        print(f"  curl '{base}{path}'")
    print(
        f"\nWatch ingestions live:\n  python -m websockets ws://127.0.0.1:{ws_port}\n"
        '  > {"action": "subscribe", "ingestion_id": "*"}\n'
        f"\nDrop CSV files into {INBOX.relative_to(ROOT)}/<dataset>/ (e.g. {INBOX.relative_to(ROOT)}/trips/) "
        "to ingest them while this runs."
    )


def watch_inbox(s3: Any, interval: float = 1.0) -> None:
    """Ingest each file under data/inbox/<dataset>/ once its size holds steady across two looks."""
    from chalicelib import datasets

    for name in datasets.names():
        (INBOX / name).mkdir(parents=True, exist_ok=True)
    sizes: dict[Path, int] = {}
    ingested: dict[Path, int] = {}
    while True:
        for path in sorted(p for p in INBOX.glob("*/*") if p.is_file()):
            size = path.stat().st_size
            steady, sizes[path] = sizes.get(path) == size, size
            if steady and ingested.get(path) != size:
                ingested[path] = size
                ingest(s3, f"{path.parent.name}/{path.name}", path)
        time.sleep(interval)


def show_answers() -> None:
    from chalice.test import Client

    from app import app

    with Client(app, stage_name="local") as client:
        for path in ("/trips/counts?by=region", "/trips/weekly-average?region=Turin", "/trips/groups?limit=3"):
            response = client.http.get(path)
            print(f"GET {path}\n  {json.dumps(json.loads(response.body))}")


if __name__ == "__main__":
    sys.exit(main())
