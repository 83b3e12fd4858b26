"""What the benchmarks share: cached input files, throwaway databases, a moto S3 server, the pipeline
run in a child process (so its peak memory is its own), and the exactness checks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "bench"
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BUCKET = "sluice-bench"
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- input files --------------------------------------------------------------------------------


def trips_csv(rows: int, seed: int, start: str = "2018-05-01", end: str = "2018-05-31",
              directory: Path = DATA) -> Path:
    """A synthetic trips CSV from tools.generate_trips, generated once and reused (keyed by its options)."""
    from tools.generate_trips import generate

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"trips-{rows}-s{seed}-{start}-{end}.csv"
    if path.exists():
        return path
    log(f"generating {rows:,} rows (seed {seed}, {start}..{end}) -> {path.name}")
    partial = path.with_suffix(".partial")
    generate(partial, rows, seed, start=start, end=end)
    partial.rename(path)
    return path


# --- databases ----------------------------------------------------------------------------------


def admin_engine() -> Any:
    import sqlalchemy as sa

    return sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def create_database(label: str) -> tuple[str, str]:
    """A new, migrated database `sluice_bench_<label>_<random>`: (name, SQLAlchemy URL)."""
    import sqlalchemy as sa

    from chalicelib.migrate import upgrade

    name = f"sluice_bench_{label}_{secrets.token_hex(3)}"
    engine = admin_engine()
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    return name, url


def drop_database(name: str) -> None:
    import sqlalchemy as sa

    from chalicelib.db import dispose_engines

    assert name.startswith("sluice_bench_"), name
    dispose_engines()
    engine = admin_engine()
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def psql_args(url: str) -> list[str]:
    import sqlalchemy as sa

    u = sa.make_url(url)
    return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", u.host or "127.0.0.1", "-p", str(u.port or 5432),
            "-U", u.username or "postgres", "-d", u.database or ""]


# --- S3 (moto_server) ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_MOTO_PIDS: dict[str, int] = {}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def moto_cpu_seconds(endpoint: str) -> float:
    """CPU time used so far by the moto_server behind `endpoint` (it shares the 2 cores with the rest)."""
    return cpu_seconds(_MOTO_PIDS[endpoint])


@contextlib.contextmanager
def moto_server(ranged_reads: bool = False) -> Iterator[str]:
    """A `moto_server` process on a free 127.0.0.1 port; yields its endpoint URL, stops it afterwards.

    `ranged_reads`: serve ranged GETs by reading only the range (bench.moto_ranges), as S3 does.
    """
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = [sys.executable, "-m", "bench.moto_ranges"] if ranged_reads else [str(BIN / "moto_server")]
    proc = subprocess.Popen(
        [*server, "-H", "127.0.0.1", "-p", str(port)], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("moto_server did not start")
            time.sleep(0.1)
        _MOTO_PIDS[endpoint] = proc.pid
        yield endpoint
    finally:
        _MOTO_PIDS.pop(endpoint, None)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=FAKE_AWS["AWS_DEFAULT_REGION"],
        aws_access_key_id=FAKE_AWS["AWS_ACCESS_KEY_ID"], aws_secret_access_key=FAKE_AWS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_AWS["AWS_SESSION_TOKEN"],
    )


def upload(endpoint: str, path: Path, key: str) -> None:
    s3 = s3_client(endpoint)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=BUCKET)
    s3.upload_file(str(path), BUCKET, key)


# --- the pipeline, in a child process -----------------------------------------------------------


def run_pipeline(url: str, endpoint: str, key: str, workers: int, chunk_bytes: int | None) -> dict[str, Any]:
    """Run chalicelib.pipeline.ingest_object on s3://BUCKET/key in a child process.

    Returns the child's own timing of ingest_object (imports excluded), its wall time as seen from
    here, and its peak RSS: the child's VmHWM, the high-water mark of its own address space. (wait4's
    ru_maxrss would do if Linux did not carry the parent's RSS over into it through fork/vfork + exec.)
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "INGEST_", "WEBSOCKET_"))}
    env.update(FAKE_AWS)
    env.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")  # as the Lambdas run (.chalice/config.json)
    env.update({"AWS_ENDPOINT_URL": endpoint, "DATABASE_URL": url, "INGEST_BUCKET": BUCKET,
                "INGEST_WORKERS": str(workers), "PYTHONPATH": str(ROOT)})
    if chunk_bytes:
        env["CHUNK_BYTES"] = str(chunk_bytes)
    else:
        env.pop("CHUNK_BYTES", None)
    out = DATA / f"child-{os.getpid()}-{secrets.token_hex(3)}.json"
    DATA.mkdir(parents=True, exist_ok=True)
    moto_before = moto_cpu_seconds(endpoint)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bench.common", BUCKET, key, str(out)], env=env, cwd=ROOT)
    proc.wait()
    wall = time.perf_counter() - started
    moto_cpu = moto_cpu_seconds(endpoint) - moto_before
    if proc.returncode != 0:
        raise RuntimeError(f"the pipeline child failed with exit code {proc.returncode}")
    result = json.loads(out.read_text())
    out.unlink()
    result["wall_seconds"] = wall
    result["moto_cpu_seconds"] = moto_cpu
    return result


def vm_hwm_mb() -> float:
    """This process's peak resident set size (VmHWM), in MiB."""
    return _status_mb("VmHWM")


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _child(bucket: str, key: str, out: str) -> None:
    from chalicelib import pipeline
    from chalicelib.settings import Settings

    settings = Settings.from_env()
    rss_before = vm_hwm_mb()
    started = time.perf_counter()
    ingestion_id = pipeline.ingest_object(bucket, key, settings)
    seconds = time.perf_counter() - started
    Path(out).write_text(json.dumps({
        "ingestion_id": ingestion_id, "seconds": seconds, "rss_after_imports_mb": rss_before,
        "peak_rss_mb": vm_hwm_mb(), "rss_file_mb": _status_mb("RssFile"), "chunk_bytes": settings.chunk_bytes, "workers": settings.ingest_workers,
    }))


# --- checks -------------------------------------------------------------------------------------


def table_totals(url: str) -> dict[str, int]:
    """Row count of trips and the total count held by each rollup (cell weeks hold each trip twice)."""
    import sqlalchemy as sa

    from chalicelib.db import get_engine

    with get_engine(url).connect() as conn:
        def one(sql: str) -> int:
            return int(conn.execute(sa.text(sql)).scalar() or 0)

        return {
            "trips": one("SELECT count(*) FROM trips"),
            "trip_region_weeks": one("SELECT sum(trips) FROM trip_region_weeks"),
            "trip_datasource_weeks": one("SELECT sum(trips) FROM trip_datasource_weeks"),
            "trip_cell_weeks_half": one("SELECT sum(trips) FROM trip_cell_weeks") // 2,
            "trip_groups": one("SELECT sum(trips) FROM trip_groups"),
        }


def ingestion_row(url: str, ingestion_id: int) -> dict[str, Any]:
    import sqlalchemy as sa

    from chalicelib.db import get_engine

    with get_engine(url).connect() as conn:
        row = conn.execute(
            sa.text("""
                SELECT status, rows_loaded, rows_rejected, error,
                       extract(epoch FROM last_chunk - started_at) AS chunks_seconds,
                       extract(epoch FROM finished_at - last_chunk) AS finish_seconds
                FROM ingestions i,
                     LATERAL (SELECT max(c.finished_at) AS last_chunk FROM ingestion_chunks c
                              WHERE c.ingestion_id = i.id) chunks
                WHERE id = :id
            """),
            {"id": ingestion_id},
        ).mappings().one()
    return dict(row)


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    payload = {"generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


if __name__ == "__main__":
    _child(*sys.argv[1:4])
