"""Trips ingestion (CSV in S3 -> rows in PostgreSQL) against one stream of psql's `\\copy`.

    python -m bench.ingest --rows 1000000 [--seed 1] [--workers 2] [--chunk-bytes N] [--repeat 1] [--keep]

Baseline: the same rows already typed (the dataset's own parse run over the file, written as CSV of
exactly trips.LOAD_COLUMNS; not timed), loaded by ONE `psql -c "\\copy trips (...) FROM ..."` into a fresh
migrated database (same table, same indexes). Pipeline: a fresh migrated database, the raw CSV in a
`moto_server` bucket, and chalicelib.pipeline.ingest_object run in a child process (no queue), timed
inside the child; its peak RSS comes from wait4. Both databases are checked: equal row counts, and
every rollup totals the row count. Results: a table on stdout and bench/results/ingest-latest.json.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import (
    create_database,
    drop_database,
    ingestion_row,
    log,
    moto_server,
    psql_args,
    run_pipeline,
    table_totals,
    trips_csv,
    upload,
    write_json,
)

FLOOR = 0.75
RSS_LIMIT_MB = 256


def typed_csv(raw: Path, chunk_bytes: int = 16 * 1024 * 1024) -> Path:
    """The rows of `raw` as the pipeline loads them: the dataset's parse over the file's blocks,
    written with pyarrow's CSV writer as exactly trips.LOAD_COLUMNS (cached next to `raw`)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from chalicelib import chunks, csvblock, pipeline
    from chalicelib.datasets import trips
    from chalicelib.settings import Settings

    path = raw.with_suffix(".typed.csv")
    if path.exists() and path.stat().st_mtime >= raw.stat().st_mtime:
        return path
    log(f"typing {raw.name} -> {path.name}")
    settings = Settings.from_env()
    grid = trips.Grid(settings.grid_deg, settings.hour_bucket)
    size = raw.stat().st_size
    partial = path.with_suffix(".partial")
    with raw.open("rb") as f, pa.OSFile(str(partial), "wb") as sink:
        def read(a: int, b: int) -> bytes:
            f.seek(a)
            return f.read(b - a)

        header = [name.strip() for name in f.readline().decode("utf-8-sig").strip().split(",")]
        names = pipeline.column_names(trips, header)
        writer = None
        for chunk in chunks.plan(size, chunk_bytes):
            block = csvblock.parse(chunks.read_lines(read, chunk, size), names, skip_header=chunk.seq == 0)
            table = trips.parse(block, grid).table
            table = table.append_column("ingestion_id", pa.array([1] * table.num_rows, pa.int32()))
            table = table.select(trips.LOAD_COLUMNS)
            if writer is None:
                writer = pacsv.CSVWriter(sink, table.schema, write_options=pacsv.WriteOptions(
                    include_header=False, quoting_style="needed"))
            writer.write_table(table)
        if writer is not None:
            writer.close()
    partial.rename(path)
    return path


def copy_baseline(typed: Path) -> dict[str, Any]:
    """One `\\copy` stream of the typed rows into a fresh migrated database: (db name, seconds)."""
    from chalicelib.datasets import trips

    name, url = create_database("copy")
    columns = ", ".join(trips.LOAD_COLUMNS)
    command = f"\\copy trips ({columns}) FROM '{typed}' WITH (FORMAT csv)"
    started = time.perf_counter()
    try:
        subprocess.run([*psql_args(url), "-c", command], check=True)
    except Exception:
        drop_database(name)
        raise
    seconds = time.perf_counter() - started
    return {"db": name, "url": url, "seconds": seconds}


def pipeline_run(raw: Path, endpoint: str, key: str, workers: int, chunk_bytes: int | None) -> dict[str, Any]:
    name, url = create_database("pipe")
    try:
        child = run_pipeline(url, endpoint, key, workers, chunk_bytes)
    except Exception:
        drop_database(name)
        raise
    return {"db": name, "url": url, **child}


def measure(raw: Path, typed: Path, rows_expected: int | None, endpoint: str, key: str, args: argparse.Namespace,
            ) -> dict[str, Any]:
    copy: dict[str, Any] = {}
    pipe: dict[str, Any] = {}
    try:
        copy = copy_baseline(typed)
        pipe = pipeline_run(raw, endpoint, key, args.workers, args.chunk_bytes)
        copy_rows = table_totals(copy["url"])["trips"]
        totals = table_totals(pipe["url"])
        ingestion = ingestion_row(pipe["url"], pipe["ingestion_id"])
        problems = []
        if ingestion["status"] != "done":
            problems.append(f"ingestion status {ingestion['status']}: {ingestion['error']}")
        if int(ingestion["rows_loaded"]) != copy_rows:
            problems.append(f"rows_loaded {ingestion['rows_loaded']} != {copy_rows}")
        problems += [f"{k} = {v} != {copy_rows}" for k, v in totals.items() if v != copy_rows]
        if rows_expected is not None and copy_rows != rows_expected:
            problems.append(f"baseline holds {copy_rows} rows, the file {rows_expected}")
    finally:
        if not args.keep:
            for db in (copy.get("db"), pipe.get("db")):
                if db:
                    drop_database(db)
    copy_rps = copy_rows / copy["seconds"]
    pipe_rps = totals["trips"] / pipe["seconds"]
    return {
        "rows": copy_rows,
        "copy_seconds": round(copy["seconds"], 3),
        "copy_rows_per_s": round(copy_rps),
        "pipeline_seconds": round(pipe["seconds"], 3),
        "pipeline_wall_seconds": round(pipe["wall_seconds"], 3),
        "pipeline_rows_per_s": round(pipe_rps),
        "ratio": round(pipe_rps / copy_rps, 3),
        "peak_rss_mb": round(pipe["peak_rss_mb"], 1),
        "rss_after_imports_mb": round(pipe["rss_after_imports_mb"], 1),
        # mapped library pages; how many count varies with the page cache (see README, Benchmarks)
        "rss_file_mb": round(pipe["rss_file_mb"], 1),
        "moto_cpu_seconds": round(pipe["moto_cpu_seconds"], 2),
        "chunks_seconds": round(float(ingestion["chunks_seconds"]), 2),  # first chunk to last chunk committed
        "finish_seconds": round(float(ingestion["finish_seconds"]), 2),  # last chunk to done (finishing steps)
        "chunk_bytes": pipe["chunk_bytes"],
        "workers": pipe["workers"],
        "exact": not problems,
        "problems": problems,
        "databases": [copy["db"], pipe["db"]] if args.keep else [],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="INGEST_WORKERS for the pipeline (default 2)")
    p.add_argument("--chunk-bytes", type=int, default=None, help="CHUNK_BYTES (default: the app's default)")
    p.add_argument("--repeat", type=int, default=1, help="measure both ways this many times")
    p.add_argument("--keep", action="store_true", help="keep the benchmark databases")
    args = p.parse_args(argv)

    raw = trips_csv(args.rows, args.seed)
    typed = typed_csv(raw)
    file_mb = raw.stat().st_size / 1e6
    key = f"trips/{raw.name}"
    runs = []
    with moto_server() as endpoint:
        log(f"moto_server at {endpoint}; uploading {file_mb:.0f} MB")
        upload(endpoint, raw, key)
        for i in range(args.repeat):
            log(f"run {i + 1}/{args.repeat}: \\copy baseline, then the pipeline")
            runs.append(measure(raw, typed, args.rows, endpoint, key, args))
            r = runs[-1]
            log(f"  \\copy {r['copy_rows_per_s']:,} rows/s, pipeline {r['pipeline_rows_per_s']:,} rows/s, "
                f"ratio {r['ratio']:.2f}x, peak RSS {r['peak_rss_mb']:.0f} MB, exact {r['exact']}; "
                f"chunks {r['chunks_seconds']:.1f} s, finishing {r['finish_seconds']:.1f} s")

    ratios = [r["ratio"] for r in runs]
    summary = {
        "rows": runs[0]["rows"],
        "file_mb": round(file_mb, 1),
        "workers": runs[0]["workers"],
        "chunk_bytes": runs[0]["chunk_bytes"],
        "copy_rows_per_s_median": round(statistics.median(r["copy_rows_per_s"] for r in runs)),
        "pipeline_rows_per_s_median": round(statistics.median(r["pipeline_rows_per_s"] for r in runs)),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_min": min(ratios),
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs),
        "exact": all(r["exact"] for r in runs),
        "floor_ratio": FLOOR,
        "rss_limit_mb": RSS_LIMIT_MB,
    }
    path = write_json("ingest-latest.json", {"summary": summary, "runs": runs})

    print(f"\ntrips ingestion, {summary['rows']:,} rows, {file_mb:.0f} MB CSV, "
          f"INGEST_WORKERS={summary['workers']}, CHUNK_BYTES={summary['chunk_bytes']:,}")
    heads = ("run", "\\copy s", "\\copy rows/s", "pipeline s", "pipeline rows/s", "ratio", "peak RSS MB", "exact")
    print(" ".join(h.rjust(w) for h, w in zip(heads, (4, 9, 13, 11, 16, 6, 12, 6), strict=True)))
    for i, r in enumerate(runs, 1):
        print(f"{i:>4} {r['copy_seconds']:>9.2f} {r['copy_rows_per_s']:>13,} {r['pipeline_seconds']:>11.2f} "
              f"{r['pipeline_rows_per_s']:>16,} {r['ratio']:>5.2f}x {r['peak_rss_mb']:>12.0f} {str(r['exact']):>6}")
    for r in runs:
        for problem in r["problems"]:
            print(f"  NOT EXACT: {problem}")
    moto = statistics.median(r["moto_cpu_seconds"] for r in runs)
    print(f"moto_server (the stand-in for S3, on the same 2 cores) used a median {moto:.1f} CPU-seconds "
          "per pipeline run")
    verdict = "meets" if summary["ratio_median"] >= FLOOR and summary["peak_rss_mb_max"] < RSS_LIMIT_MB else "MISSES"
    print(f"median ratio {summary['ratio_median']:.2f}x (floor {FLOOR}x), peak RSS {summary['peak_rss_mb_max']:.0f} MB "
          f"(limit {RSS_LIMIT_MB} MB): {verdict} the bar; written to {path.relative_to(path.parents[2])}")
    return 0 if summary["exact"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
