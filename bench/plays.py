"""Plays: a generated play log of at least 1 GB, from S3 to result part files, against psql's `\\copy`.

    python -m bench.plays [--bytes 1.1e9] [--seed 1] [--workers 2] [--part-bytes 16777216] [--repeat 1] [--keep]

- Baseline: ONE `psql -c "\\copy plays_raw (song, date, plays) FROM ... (FORMAT csv, HEADER)"` of the
  same file into a bare table (no index) of a fresh database; the file is plain typed CSV already (LF,
  no BOM, no bad rows), so these are exactly the rows the pipeline takes. For reference, the time of
  one `GROUP BY song, date` over the copied rows is reported too.
- Pipeline: a fresh migrated database, the file in a `moto_server` bucket, and
  chalicelib.pipeline.ingest_object in a child process (no queue): chunks, the finishing step and
  the result part files. Its peak RSS is the child's VmHWM.
- Exactness: the part files are read back from S3 and compared row by row with the baseline's
  GROUP BY in (song, date) byte order; every part must start with the header, hold whole rows and
  stay within PLAYS_PART_BYTES; the rollup must hold the same totals.

Results: a table on stdout and bench/results/plays-latest.json.
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import (
    BUCKET,
    DATA,
    create_database,
    drop_database,
    ingestion_row,
    log,
    moto_server,
    psql_args,
    run_pipeline,
    s3_client,
    upload,
    write_json,
)

RSS_LIMIT_MB = 256
RAW_TABLE = 'CREATE TABLE plays_raw (song text COLLATE "C" NOT NULL, date date NOT NULL, plays bigint NOT NULL)'


def plays_csv(min_bytes: int, seed: int, directory: Path = DATA) -> tuple[Path, int]:
    """A generated plays file of at least `min_bytes` (cached): (path, rows)."""
    from tools.generate_plays import generate

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"plays-{min_bytes}-s{seed}.csv"
    rows_file = path.with_suffix(".rows")
    if path.exists() and rows_file.exists():
        return path, int(rows_file.read_text())
    log(f"generating a plays file of at least {min_bytes / 1e9:.2f} GB (seed {seed}) -> {path.name}")
    partial = path.with_suffix(".partial")
    summary = generate(partial, seed=seed, min_bytes=min_bytes)
    partial.rename(path)
    rows_file.write_text(str(summary["rows"]))
    return path, int(summary["rows"])  # type: ignore[arg-type]


def copy_baseline(path: Path) -> dict[str, Any]:
    """One `\\copy` stream into a bare table, then (timed apart) one GROUP BY over it."""
    name, url = create_database("plays_copy")
    try:
        subprocess.run([*psql_args(url), "-c", RAW_TABLE], check=True)
        started = time.perf_counter()
        command = f"\\copy plays_raw (song, date, plays) FROM '{path}' WITH (FORMAT csv, HEADER true)"
        subprocess.run([*psql_args(url), "-c", command], check=True)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run([*psql_args(url), "-c", "CREATE TABLE plays_sums AS SELECT song, date, sum(plays) AS plays "
                        "FROM plays_raw GROUP BY song, date"], check=True)
        group_seconds = time.perf_counter() - started
    except Exception:
        drop_database(name)
        raise
    return {"db": name, "url": url, "seconds": seconds, "group_seconds": group_seconds}


def _scalar(url: str, sql: str) -> Any:
    import sqlalchemy as sa

    from chalicelib.db import get_engine

    with get_engine(url).connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


def check_results(copy_url: str, pipe_url: str, endpoint: str, ingestion_id: int, cap: int) -> tuple[list[str], dict]:
    """Compare the part files with the baseline's sums, row by row; [] when exact."""
    import sqlalchemy as sa

    from chalicelib.datasets import plays
    from chalicelib.db import get_engine

    problems: list[str] = []
    with get_engine(pipe_url).connect() as conn:
        parts = conn.execute(sa.select(plays.result_files).where(plays.result_files.c.ingestion_id == ingestion_id)
                             .order_by(plays.result_files.c.part)).mappings().all()
        summary = dict(conn.execute(sa.select(plays.files).where(plays.files.c.ingestion_id == ingestion_id))
                       .mappings().one())
        rollup = conn.execute(sa.text("SELECT count(*), sum(plays) FROM play_totals")).one()
    s3 = s3_client(endpoint)
    expected = get_engine(copy_url).connect()
    try:
        rows = expected.execute(sa.text("SELECT song, date::text, plays FROM plays_sums ORDER BY song COLLATE \"C\", date")
                                .execution_options(stream_results=True, yield_per=50_000))
        want = iter(rows)
        seen = 0
        for part in parts:
            body = s3.get_object(Bucket=BUCKET, Key=part["key"])["Body"].read()
            if len(body) != part["bytes"] or len(body) > cap:
                problems.append(f"{part['key']}: {len(body)} bytes (recorded {part['bytes']}, cap {cap})")
            reader = csv.reader(io.StringIO(body.decode("utf-8"), newline=""))
            if next(reader) != ["Song", "Date", "Total Plays"]:
                problems.append(f"{part['key']} does not start with the header")
            count = 0
            for got in reader:
                count += 1
                song, day, total = next(want, (None, None, None))
                if got != [song, day, str(total)] and len(problems) < 10:
                    problems.append(f"{part['key']} row {count}: {got} != {[song, day, total]}")
            if count != part["rows"]:
                problems.append(f"{part['key']}: {count} rows (recorded {part['rows']})")
            seen += count
        if next(want, None) is not None:
            problems.append("the part files miss rows of the baseline's sums")
    finally:
        expected.close()
    total = _scalar(copy_url, "SELECT sum(plays) FROM plays_raw")
    if (rollup[0], rollup[1]) != (seen, total) or summary["total_plays"] != total:
        problems.append(f"rollup {tuple(rollup)}, summary {summary['total_plays']}, baseline ({seen}, {total})")
    return problems, {"parts": len(parts), "result_rows": seen, "result_bytes": sum(p["bytes"] for p in parts),
                      "write_seconds": summary["write_seconds"], "songs": summary["songs"], "dates": summary["dates"]}


def measure(path: Path, rows: int, endpoint: str, key: str, args: argparse.Namespace) -> dict[str, Any]:
    import os

    copy: dict[str, Any] = {}
    pipe: dict[str, Any] = {}
    try:
        copy = copy_baseline(path)
        name, url = create_database("plays_pipe")
        pipe = {"db": name, "url": url}
        os.environ["PLAYS_PART_BYTES"] = str(args.part_bytes)
        pipe.update(run_pipeline(url, endpoint, key, args.workers, args.chunk_bytes))
        ingestion = ingestion_row(url, pipe["ingestion_id"])
        problems = [] if ingestion["status"] == "done" else [f"status {ingestion['status']}: {ingestion['error']}"]
        if int(ingestion["rows_loaded"]) != rows:
            problems.append(f"rows_loaded {ingestion['rows_loaded']} != {rows}")
        copied = _scalar(copy["url"], "SELECT count(*) FROM plays_raw")
        if copied != rows:
            problems.append(f"the baseline copied {copied} rows, the file holds {rows}")
        found, extra = check_results(copy["url"], url, endpoint, pipe["ingestion_id"], args.part_bytes)
        problems += found
        staged = _scalar(url, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'play_stage_%'")
        if staged:
            problems.append(f"{staged} staging tables left behind")
        sizes = {t: round(_scalar(url, f"SELECT pg_total_relation_size('{t}')") / 1e6, 1)  # noqa: S608 (constants)
                 for t in ("play_file_totals", "play_totals")}
    finally:
        if not args.keep:
            for db in (copy.get("db"), pipe.get("db")):
                if db:
                    drop_database(db)
    copy_rps = rows / copy["seconds"]
    pipe_rps = rows / pipe["seconds"]
    return {
        "rows": rows,
        "file_bytes": path.stat().st_size,
        "copy_seconds": round(copy["seconds"], 2),
        "copy_rows_per_s": round(copy_rps),
        "copy_group_by_seconds": round(copy["group_seconds"], 2),
        "pipeline_seconds": round(pipe["seconds"], 2),
        "pipeline_rows_per_s": round(pipe_rps),
        "ratio": round(pipe_rps / copy_rps, 3),
        "chunks_seconds": round(float(ingestion["chunks_seconds"]), 2),
        "chunks_ratio": round(copy["seconds"] / float(ingestion["chunks_seconds"]), 3),
        "finish_seconds": round(float(ingestion["finish_seconds"]), 2),  # last chunk -> done
        "results_seconds": extra["write_seconds"],  # rollup merge + part files, inside finishing
        "peak_rss_mb": round(pipe["peak_rss_mb"], 1),
        "rss_after_imports_mb": round(pipe["rss_after_imports_mb"], 1),
        "rss_file_mb": round(pipe["rss_file_mb"], 1),
        "moto_cpu_seconds": round(pipe["moto_cpu_seconds"], 2),
        "part_bytes": args.part_bytes,
        "table_mb": sizes,  # what the file leaves in the database (table and indexes)
        **{k: extra[k] for k in ("parts", "result_rows", "result_bytes", "songs", "dates")},
        "chunk_bytes": pipe["chunk_bytes"],
        "workers": pipe["workers"],
        "exact": not problems,
        "problems": problems,
        "databases": [copy["db"], pipe["db"]] if args.keep else [],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.plays", description=__doc__.splitlines()[0])
    p.add_argument("--bytes", type=float, default=1.1e9, help="least size of the generated file (default 1.1e9)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="INGEST_WORKERS (default 2)")
    p.add_argument("--chunk-bytes", type=int, default=None, help="CHUNK_BYTES (default: the app's default)")
    p.add_argument("--part-bytes", type=int, default=16 * 1024 * 1024, help="PLAYS_PART_BYTES (default 16 MiB)")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the benchmark databases")
    p.add_argument("--stock-moto", action="store_true",
                   help="plain moto_server, which reads the whole object for every ranged GET (bench.moto_ranges)")
    args = p.parse_args(argv)

    path, rows = plays_csv(int(args.bytes), args.seed)
    key = f"plays/{path.name}"
    runs = []
    with moto_server(ranged_reads=not args.stock_moto) as endpoint:
        log(f"moto_server at {endpoint}; uploading {path.stat().st_size / 1e9:.2f} GB ({rows:,} rows)")
        upload(endpoint, path, key)
        for i in range(args.repeat):
            log(f"run {i + 1}/{args.repeat}: \\copy baseline, then the pipeline")
            runs.append(measure(path, rows, endpoint, key, args))
            r = runs[-1]
            log(f"  \\copy {r['copy_rows_per_s']:,} rows/s, pipeline {r['pipeline_rows_per_s']:,} rows/s "
                f"({r['ratio']:.2f}x), chunks {r['chunks_seconds']:.1f} s, finishing {r['finish_seconds']:.1f} s "
                f"(results {r['results_seconds']:.1f} s), peak RSS {r['peak_rss_mb']:.0f} MB, exact {r['exact']}")

    summary = {
        "rows": rows,
        "file_gb": round(path.stat().st_size / 1e9, 3),
        "ratio_median": round(statistics.median(r["ratio"] for r in runs), 3),
        "finish_seconds_median": round(statistics.median(r["finish_seconds"] for r in runs), 2),
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs),
        "rss_limit_mb": RSS_LIMIT_MB,
        "exact": all(r["exact"] for r in runs),
    }
    out = write_json("plays-latest.json", {"summary": summary, "runs": runs})
    print(f"\nplays, {rows:,} rows, {summary['file_gb']} GB CSV, INGEST_WORKERS={runs[0]['workers']}, "
          f"PLAYS_PART_BYTES={args.part_bytes:,}")
    heads = ("run", "\\copy s", "\\copy rows/s", "pipeline s", "rows/s", "ratio", "chunks s", "finish s",
             "results s", "parts", "peak RSS MB", "exact")
    widths = (4, 8, 13, 11, 10, 6, 9, 9, 10, 6, 12, 6)
    print(" ".join(h.rjust(w) for h, w in zip(heads, widths, strict=True)))
    for i, r in enumerate(runs, 1):
        print(f"{i:>4} {r['copy_seconds']:>8.1f} {r['copy_rows_per_s']:>13,} {r['pipeline_seconds']:>11.1f} "
              f"{r['pipeline_rows_per_s']:>10,} {r['ratio']:>5.2f}x {r['chunks_seconds']:>9.1f} "
              f"{r['finish_seconds']:>9.1f} {r['results_seconds']:>10.1f} {r['parts']:>6} {r['peak_rss_mb']:>12.0f} "
              f"{str(r['exact']):>6}")
        for problem in r["problems"]:
            print(f"  NOT EXACT: {problem}")
    print(f"peak RSS {summary['peak_rss_mb_max']:.0f} MB (limit {RSS_LIMIT_MB} MB); written to "
          f"{out.relative_to(out.parents[2])}")
    return 0 if summary["exact"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
