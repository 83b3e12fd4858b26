"""Run sluice on a laptop: SQLite, S3 simulated in-process by moto, no AWS account.

    python -m tools.local [FILE ...] [--dataset trips] [--port 8000] [--ws-port 8001] [--no-serve]
                          [--sample-rows 200000] [--inbox data/inbox]

What it does, in order:
1. brings the database (DATABASE_URL, default data/sluice.sqlite) to the current schema;
2. starts the HTTP API (Chalice's local server) and the WebSocket endpoint on localhost;
3. uploads the sample trips files (made once under data/samples/) and every FILE given to the
   simulated bucket, and hands each to the very same `on_csv_upload` handler, with a progress bar;
   a file this database already holds is not loaded again (one line says how many there were);
4. ingests each file in data/inbox/<dataset>/ (one folder per dataset), then moves it to
   data/inbox/done/<dataset>/ or data/inbox/failed/<dataset>/, so it is never fed twice; a file
   anywhere else in the inbox is reported, not ignored;
5. keeps serving, and keeps watching the inbox, until Ctrl-C.
`--no-serve` stops after one pass over the inbox, printing the answers of a few routes instead.
The exit status is 0 unless a file failed (1), or the arguments or ports are unusable (2).
"""

from __future__ import annotations

import argparse
import errno
import functools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.progress import Bar, logs_above_bars, say

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
SAMPLES = DATA / "samples"
INBOX = DATA / "inbox"
DONE, FAILED = "done", "failed"
BUCKET = "sluice-local-uploads"
OTHER_PORTS = "--port 8010 --ws-port 8011"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _local_environment()
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    from moto import mock_aws

    with mock_aws():
        return run(args)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.local", description=__doc__.split("\n")[0],
                                     epilog='Through make: make run ARGS="--no-serve --port 8010" FILES="a.csv b.csv"')
    parser.add_argument("files", nargs="*", type=Path, help="CSV files to ingest after the samples")
    parser.add_argument("--dataset", default="trips", help="dataset (key prefix) for FILEs (default: trips)")
    parser.add_argument("--sample-rows", type=int, default=200_000,
                        help="rows in the synthetic sample file (0: only the 100-row sample)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP API port (default 8000; 0 picks a free one)")
    parser.add_argument("--ws-port", type=int, default=8001, help="WebSocket port (default 8001; 0 picks a free one)")
    parser.add_argument("--inbox", type=Path, default=INBOX, help="the folder watched for files (default data/inbox)")
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

    from app import app  # noqa: F401 - configures the app's logger, which logs_above_bars takes over
    from chalicelib.datasets import names
    from chalicelib.migrate import upgrade
    from chalicelib.settings import Settings

    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    url = Settings.from_env().database_url
    print(f"database: {url}")
    upgrade(url)
    try:
        servers = [] if args.no_serve else start_servers(args.port, args.ws_port)
    except PortUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    report, inbox = Report(), Inbox(args.inbox, names())
    try:
        with logs_above_bars("sluice"):
            ingest_all(s3, args, report)
            if args.no_serve:
                watch_inbox(s3, inbox, report, once=True)
                show_answers()
            else:
                print_examples(servers[1].port, servers[0].port, inbox)
                watch_inbox(s3, inbox, report)
    except KeyboardInterrupt:
        say("stopping")
    finally:
        for server in servers:
            server.stop()
    return report.exit_status()


def ingest_all(s3: Any, args: argparse.Namespace, report: Report) -> None:
    """The samples, then the FILEs given, in order."""
    files = [(f"trips/{p.name}", p) for p in sample_files(args.sample_rows)]
    files += [(f"{args.dataset}/{p.name}", p) for p in args.files]
    for key, path in files:
        report.add(ingest(s3, key, path))
    report.say_already_loaded()


def sample_files(rows: int) -> list[Path]:
    """The canonical 100-row sample and a larger synthetic file, made once and reused."""
    from tools.generate_trips import canonical_sample, generate

    SAMPLES.mkdir(parents=True, exist_ok=True)
    canonical = SAMPLES / "trips-canonical.csv"
    if not canonical.exists():
        canonical_sample(canonical)
    synthetic = SAMPLES / f"trips-synthetic-{rows}.csv"
    if rows > 0 and not synthetic.exists():
        print(f"making {shown(synthetic)} ({rows:,} rows)")
        partial = synthetic.with_suffix(".partial")
        generate(partial, rows, seed=42, start="2018-04-02", end="2018-06-30", bad_rows=0.001)
        partial.replace(synthetic)  # a run stopped while generating leaves no truncated sample behind
    return [canonical] + ([synthetic] if rows > 0 else [])


def shown(path: Path) -> str:
    """A path as the user would type it: relative to the repository when it is inside."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# --- ingesting one file, with a progress bar ----------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What became of one file: its ingestion (None if none was recorded), and whether it was
    already in the database before this run (then nothing was done)."""

    key: str
    ingestion: dict[str, Any] | None
    already: bool = False
    problem: str = ""

    @property
    def failed(self) -> bool:
        return self.ingestion is None or self.ingestion["status"] != "done"

    def lines(self) -> list[str]:
        """What to tell the user beyond the progress bar."""
        i = self.ingestion
        if i is None:
            return [f"  {self.key}: no ingestion was recorded{': ' + self.problem if self.problem else ''}"]
        when = "earlier, " if self.already else ""
        if i["status"] == "failed":
            return [f"  {self.key} failed ({when}ingestion {i['id']}): {i['error']}"]
        if i["status"] != "done":
            return [f"  {self.key}: ingestion {i['id']} is still {i['status']}"]
        out = []
        if i["duplicate_of"]:
            out.append(f"  {self.key}: the same bytes as ingestion {i['duplicate_of']}; nothing loaded")
        if i["rows_rejected"] and not self.already:
            first = i["errors"][0] if i["errors"] else {"line": "?", "message": "?"}
            out.append(f"  {i['rows_rejected']:,} rows rejected; first: line {first['line']}: {first['message']}")
        return out


@dataclass
class Report:
    """Every file's outcome; says each new one as it comes, the already-loaded ones in one line."""

    outcomes: list[Outcome] = field(default_factory=list)
    _said_already: int = 0

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if not outcome.already or outcome.failed:
            for line in outcome.lines():
                say(line)

    def say_already_loaded(self) -> None:
        """One line for the files this database already held (once per batch)."""
        already = [o for o in self.outcomes if o.already and not o.failed][self._said_already:]
        self._said_already += len(already)
        if already:
            names = ": " + ", ".join(o.key for o in already) if len(already) <= 3 else ""
            say(f"{len(already)} file{'s' if len(already) > 1 else ''} already loaded{names} (nothing to do)")

    def exit_status(self) -> int:
        return 1 if any(o.failed for o in self.outcomes) else 0


def ingest(s3: Any, key: str, path: Path) -> Outcome:
    """Upload `path` as `key` and run `on_csv_upload` on it, drawing its progress. A file whose exact
    bytes this database already holds under the same key (done, not superseded by a newer version) is
    not handed over again; one that failed or was deleted is, and the pipeline loads it again."""
    from chalicelib import notify, s3objects

    s3.upload_file(str(path), BUCKET, key)
    obj = s3objects.head(s3, BUCKET, key)
    earlier = find_ingestion(obj)
    if earlier is not None and earlier["status"] == "done" and not earlier.get("superseded_by"):
        return Outcome(key, earlier, already=True)
    bar = Bar(key, obj.size)
    listener = functools.partial(_show_progress, bar, key)
    notify.add_listener(listener)
    problem = ""
    try:
        invoke_upload_handler(key)
    except Exception as exc:  # noqa: BLE001 - Lambda would log it; the user gets the sentence
        problem = f"{type(exc).__name__}: {exc}"
    finally:
        notify.remove_listener(listener)
    ingestion = find_ingestion(obj)
    if ingestion is not None:
        bar.update(ingestion["bytes_done"], ingestion["bytes_total"] or None, _note(ingestion))
    bar.close()
    return Outcome(key, ingestion, problem=problem)


def invoke_upload_handler(key: str) -> None:
    from chalice.test import Client

    from app import app

    with Client(app, stage_name="local") as client:
        client.lambda_.invoke("on_csv_upload", client.events.generate_s3_event(BUCKET, key))


def find_ingestion(obj: Any) -> dict[str, Any] | None:
    """The ingestion of exactly this object (bucket, key and ETag), as GET /ingestions/{id} shows it."""
    from chalicelib import ingestions
    from chalicelib.db import get_engine
    from chalicelib.settings import Settings

    with get_engine(Settings.from_env().database_url).connect() as conn:
        row = ingestions.find_object(conn, obj.bucket, obj.key, obj.etag)
        return ingestions.to_json(conn, row) if row else None


def _show_progress(bar: Bar, key: str, message: dict[str, Any]) -> None:
    ingestion = message["ingestion"]
    if ingestion["bucket"] == BUCKET and ingestion["key"] == key:
        bar.update(ingestion["bytes_done"], ingestion["bytes_total"] or None, _note(ingestion))


def _note(ingestion: dict[str, Any]) -> str:
    return f"{ingestion['rows_loaded']:,} rows, {ingestion['status']}"


# --- serving ------------------------------------------------------------------------------------


class PortUnavailable(Exception):
    """A server could not listen on its port; the message says which and how to choose others."""


def port_problem(what: str, port: int, cause: BaseException | None) -> PortUnavailable:
    taken = isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE
    why = "is already in use (is another `make run` running?)" if taken else f"cannot be used ({cause})"
    return PortUnavailable(
        f"port {port} for {what} on 127.0.0.1 {why}. Stop whatever holds it, or pick other ports: "
        f'make run ARGS="{OTHER_PORTS}" (or .venv/bin/python -m tools.local {OTHER_PORTS}).'
    )


def start_servers(port: int, ws_port: int) -> list[Any]:
    """The WebSocket endpoint and the HTTP API, in that order; PortUnavailable if either cannot listen."""
    from app import app
    from tools.local_ws import ListenError, LocalWebSocketServer

    try:
        http = LocalHttpServer(app, port)
    except OSError as exc:
        raise port_problem("the HTTP API (--port)", port, exc) from None
    ws = LocalWebSocketServer(app, port=ws_port)
    try:
        say(f"WebSocket: {ws.start()}")
    except ListenError as exc:
        http.stop()
        raise port_problem("the WebSocket (--ws-port)", ws_port, exc.cause) from None
    http.start()
    return [ws, http]


class LocalHttpServer:
    """Chalice's own local server (as `chalice local` runs it), in a background thread. Its access log
    goes through `say()`, above the progress bars (`access_log=False` drops it)."""

    def __init__(self, app: Any, port: int, access_log: bool = True) -> None:
        from chalice.cli.factory import CLIFactory
        from chalice.local import create_local_server

        config = CLIFactory(str(ROOT), environ=os.environ).create_config_obj(chalice_stage_name="local")
        self.server = create_local_server(app, config, "127.0.0.1", port)  # binds: OSError if taken
        self.server.server.RequestHandlerClass = functools.partial(
            _request_handler(access_log), app_object=app, config=config)
        self.port: int = self.server.server.server_address[1]
        self.thread = threading.Thread(target=self.server.server.serve_forever, name="local-http", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server.server_close()


@functools.cache
def _request_handler(access_log: bool) -> type:
    from chalice.local import ChaliceRequestHandler

    class RequestHandler(ChaliceRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            if access_log:
                say(f"http: {self.command} {self.path} {code}")

        def log_message(self, format: str, *args: Any) -> None:  # the base class names it `format`
            say(f"http: {format % args}")

        def _send_error_response(self, error: Any) -> None:
            """What API Gateway answers itself (an unknown path: 403 "Missing Authentication Token")
            in sluice's shape, as the deployed stages' gateway responses do."""
            if error.CODE == 403:
                where = self.path.split("?", 1)[0]
                self._send_sluice_error(404, f"No route {self.command} {where}; every route is listed at /docs.")
            else:
                super()._send_error_response(error)

        def _send_http_response(self, code: int, headers: Any, body: Any) -> None:
            if code == 405 and body and b"MethodNotAllowedError" in (body if isinstance(body, bytes) else body.encode()):
                where = self.path.split("?", 1)[0]
                self._send_sluice_error(405, f"{self.command} is not allowed on {where}; see /docs for its methods.")
                return
            super()._send_http_response(code, headers, body)

        def _send_sluice_error(self, code: int, sentence: str) -> None:
            super()._send_http_response(code, {"Content-Type": "application/json"}, json.dumps({"error": sentence}))

    return RequestHandler


def print_examples(port: int, ws_port: int, inbox: Inbox) -> None:
    base = f"http://127.0.0.1:{port}"
    python = shown(Path(sys.executable)) if Path(sys.executable).is_relative_to(ROOT) else sys.executable
    lines = [f"\nHTTP API: {base}   (Ctrl-C to stop)\n\nTry:"]
    for path in (
        "/ingestions?limit=5",
        "/trips/weekly-average?region=Turin",
        "/trips/weekly-average?bbox=7.60,45.00,7.75,45.10",
        "/trips/weekly?region=Prague",
        "/trips/groups?region=Hamburg&limit=5",
        "/trips/counts?by=datasource",
        "/trips?region=Turin&limit=3",
    ):
        lines.append(f"  curl '{base}{path}'")
    lines += [
        f"\nWatch ingestions live:\n  {python} -m websockets ws://127.0.0.1:{ws_port}",
        '  > {"action": "subscribe", "ingestion_id": "*"}',
        f"\nDrop CSV files into {inbox.shown}/<dataset>/ ({', '.join(inbox.datasets)}) to ingest them while "
        f"this runs; each is then moved to {inbox.shown}/{DONE}/ or {inbox.shown}/{FAILED}/.",
    ]
    say("\n".join(lines))


# --- the inbox ----------------------------------------------------------------------------------


class Inbox:
    """`root/<dataset>/<file>` for every dataset: each file is ingested once it has stopped changing,
    then moved to `root/done/<dataset>/` or `root/failed/<dataset>/`. Files anywhere else are reported."""

    def __init__(self, root: Path, datasets: Sequence[str]) -> None:
        self.root, self.datasets = root, sorted(datasets)
        self.shown = shown(root)
        self._seen: dict[Path, tuple[int, int]] = {}
        self._reported: set[Path] = set()

    def prepare(self) -> None:
        for name in self.datasets:
            (self.root / name).mkdir(parents=True, exist_ok=True)

    def look(self) -> list[Path]:
        """Files unchanged since the previous look (so not still being written), oldest look first."""
        ready, present = [], set()
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root)
            if not path.is_file() or rel.parts[0] in (DONE, FAILED) or any(p.startswith(".") for p in rel.parts):
                continue
            present.add(path)
            if len(rel.parts) != 2 or rel.parts[0] not in self.datasets:
                self._report_stray(path, rel)
                continue
            stat = path.stat()
            signature = (stat.st_size, stat.st_mtime_ns)
            if self._seen.get(path) == signature:
                ready.append(path)
            self._seen[path] = signature
        self._seen = {p: s for p, s in self._seen.items() if p in present}
        self._reported &= present  # a stray moved away and dropped again is reported again
        return ready

    def _report_stray(self, path: Path, rel: Path) -> None:
        if path in self._reported:
            return
        self._reported.add(path)
        where = "the inbox itself" if len(rel.parts) == 1 else f"{self.shown}/{rel.parent}/, which nobody reads"
        say(f"{self.shown}/{rel} is in {where}: move it to {self.shown}/<dataset>/, with <dataset> one of "
            f"{', '.join(self.datasets)}.")

    @staticmethod
    def key(path: Path) -> str:
        return f"{path.parent.name}/{path.name}"

    def file_away(self, path: Path, failed: bool) -> Path:
        """Move an ingested file out of the way; a name already taken there gets a number."""
        folder = self.root / (FAILED if failed else DONE) / path.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        target, n = folder / path.name, 1
        while target.exists():
            n += 1
            target = folder / f"{path.name.split('.', 1)[0]}-{n}{''.join(path.suffixes)}"
        path.replace(target)
        self._seen.pop(path, None)
        return target


def watch_inbox(s3: Any, inbox: Inbox, report: Report, interval: float = 1.0, once: bool = False) -> None:
    """Ingest each file that lands in the inbox, then move it; `once`: a single pass, then return."""
    inbox.prepare()
    inbox.look()
    while True:
        time.sleep(interval)
        for path in inbox.look():
            outcome = ingest(s3, inbox.key(path), path)
            report.add(outcome)
            target = inbox.file_away(path, outcome.failed)
            say(f"  {shown(path)} {'was already loaded; ' if outcome.already else ''}moved to {shown(target)}")
        if once:
            return


def show_answers() -> None:
    from chalice.test import Client

    from app import app

    with Client(app, stage_name="local") as client:
        for path in ("/trips/counts?by=region", "/trips/weekly-average?region=Turin", "/trips/groups?limit=3"):
            response = client.http.get(path)
            print(f"GET {path}\n  {json.dumps(json.loads(response.body))}")


if __name__ == "__main__":
    sys.exit(main())
