"""pr-reviews: ingestion against psql's `\\copy`, and the team report across uploads at scale.

    python -m bench.pr_reviews --rows 1000000 [--seed 1] [--repeat 1] [--scale 1000000,5000000]
        [--calls 10] [--keep]

Ingestion (per repeat): the generated CSV (missing cells and Excel dates included) typed by the
dataset's own parse (not timed) and loaded by ONE `psql \\copy` stream into (a) a bare copy of the
`pr_reviews` table, no indexes, and (b) the migrated, indexed table, each in a fresh database; then
the real pipeline (`ingest_object`, no queue, in a child process whose peak RSS is read) from a
moto_server bucket into a fresh database, finishing included (the report and the eight plots).
Exactness: the same row count everywhere, and the stored report's count, sums and medians equal a
brute-force SQL count / sum / ORDER BY ... OFFSET over the raw rows.

Team report (`--scale`): the pipeline's database grown with `\\copy` of the typed rows under new done
uploads to each size, VACUUM ANALYZE, then `--calls` timed calls per query through the routes
(chalice.test.Client): every team, one team, one team in a 30-day range. Checked the same way.
At the largest size, the medians, quartiles and modes of every team are computed both with
PostgreSQL's ordered-set aggregates (the first version) and with the value counts used now.
Results: stdout and bench/results/pr-reviews-latest.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import (
    DATA,
    FAKE_AWS,
    create_database,
    drop_database,
    ingestion_row,
    log,
    moto_server,
    psql_args,
    run_pipeline,
    upload,
    write_json,
)

RSS_LIMIT_MB = 256
TYPED_COLUMNS = ("ingestion_id", "review_time", "merge_time", "team", "date")
QUERIES = {
    "every team": "/pr-reviews/report",
    "one team": "/pr-reviews/report?team=Platform",
    "one team, 30 days": "/pr-reviews/report?team=Platform&from=2023-02-01&to=2023-03-02",
}


def pr_reviews_csv(rows: int, seed: int) -> Path:
    """A generated pr-reviews CSV (2% empty cells, 20% Excel dates), made once and reused."""
    from tools.generate_pr_reviews import generate

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"pr-reviews-{rows}-s{seed}.csv"
    if not path.exists():
        log(f"generating {rows:,} PRs (seed {seed}) -> {path.name}")
        partial = path.with_suffix(".partial")
        generate(partial, rows, seed, missing=0.02, excel_dates=0.2)
        partial.rename(path)
    return path


def typed_csv(raw: Path) -> Path:
    """The rows as the pipeline loads them (the dataset's parse over the file's blocks), as CSV of
    TYPED_COLUMNS with ingestion_id 1 and empty (NULL) missing values; cached next to `raw`."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from chalicelib import chunks, csvblock, pipeline
    from chalicelib.datasets import pr_reviews

    path = raw.with_suffix(".typed.csv")
    if path.exists() and path.stat().st_mtime >= raw.stat().st_mtime:
        return path
    log(f"typing {raw.name} -> {path.name}")
    size = raw.stat().st_size
    partial = path.with_suffix(".partial")
    with raw.open("rb") as f, pa.OSFile(str(partial), "wb") as sink:
        def read(a: int, b: int) -> bytes:
            f.seek(a)
            return f.read(b - a)

        header = [name.strip() for name in f.readline().decode("utf-8-sig").strip().split(",")]
        names = pipeline.column_names(pr_reviews, header)
        writer = None
        for chunk in chunks.plan(size, 16 * 1024 * 1024):
            block = csvblock.parse(chunks.read_lines(read, chunk, size), names, skip_header=chunk.seq == 0)
            table = pr_reviews.parse(block, None).table
            table = table.append_column("ingestion_id", pa.array([1] * table.num_rows, pa.int32()))
            table = table.select(list(TYPED_COLUMNS))
            if writer is None:
                writer = pacsv.CSVWriter(sink, table.schema, write_options=pacsv.WriteOptions(
                    include_header=False, quoting_style="needed"))
            writer.write_table(table)
        if writer is not None:
            writer.close()
    partial.rename(path)
    return path


def psql(url: str, command: str) -> float:
    started = time.perf_counter()
    subprocess.run([*psql_args(url), "-c", command], check=True)
    return time.perf_counter() - started


def copy_command(table: str, typed: Path) -> str:
    return f"\\copy {table} ({', '.join(TYPED_COLUMNS)}) FROM '{typed}' WITH (FORMAT csv)"


def copy_baselines(typed: Path) -> dict[str, float]:
    """Seconds for one `\\copy` into a bare table and into the indexed table (fresh databases)."""
    out = {}
    for label, table in (("bare", "pr_reviews_bare"), ("indexed", "pr_reviews")):
        name, url = create_database(f"prcopy{label}")
        try:
            if table == "pr_reviews_bare":
                psql(url, "CREATE TABLE pr_reviews_bare (LIKE pr_reviews)")
            out[label] = psql(url, copy_command(table, typed))
        finally:
            drop_database(name)
    return out


def scalar(url: str, sql: str, **params: Any) -> Any:
    import sqlalchemy as sa

    from chalicelib.db import get_engine

    with get_engine(url).connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def execute(url: str, sql: str) -> Any:
    """Run one statement in its own committed transaction; its first value."""
    import sqlalchemy as sa

    from chalicelib.db import get_engine

    with get_engine(url).begin() as conn:
        return conn.execute(sa.text(sql)).scalar()


def brute_force(url: str, where: str, params: dict[str, Any]) -> dict[str, Any]:
    """Count, sums and the review_time median over the raw rows, without the report's code."""
    count = scalar(url, f"SELECT count(*) FROM pr_reviews WHERE {where}", **params)  # noqa: S608
    n = scalar(url, f"SELECT count(review_time) FROM pr_reviews WHERE {where}", **params)  # noqa: S608
    middle = [scalar(url, f"SELECT review_time FROM pr_reviews WHERE {where} AND review_time IS NOT NULL "  # noqa: S608
                          "ORDER BY review_time OFFSET :k LIMIT 1", k=k, **params) for k in {(n - 1) // 2, n // 2}]
    total = scalar(url, f"SELECT sum(review_time) FROM pr_reviews WHERE {where}", **params)  # noqa: S608
    from chalicelib.stats import rounded

    return {"count": count, "mean": rounded(total / n, 1), "median": rounded(sum(middle) / len(middle), 1)}


def agrees(report: dict[str, Any], truth: dict[str, Any]) -> bool:
    stats = report["stats"]
    return (stats["count"], stats["mean"]["review_time"], stats["median"]["review_time"]) == (
        truth["count"], truth["mean"], truth["median"])


def ingest_once(raw: Path, typed: Path, endpoint: str, key: str, keep: bool) -> dict[str, Any]:
    copies = copy_baselines(typed)
    name, url = create_database("prpipe")
    child = run_pipeline(url, endpoint, key, 2, None)
    row = ingestion_row(url, child["ingestion_id"])
    rows = scalar(url, "SELECT count(*) FROM pr_reviews")
    report = json.loads(scalar(url, "SELECT report FROM pr_review_reports"))
    exact = row["status"] == "done" and agrees(report, brute_force(url, "true", {}))
    result = {
        "rows": rows,
        "copy_bare_rows_per_s": round(rows / copies["bare"]),
        "copy_indexed_rows_per_s": round(rows / copies["indexed"]),
        "pipeline_seconds": round(child["seconds"], 2),
        "pipeline_rows_per_s": round(rows / child["seconds"]),
        "ratio_vs_bare_copy": round(copies["bare"] / child["seconds"], 3),
        "ratio_vs_indexed_copy": round(copies["indexed"] / child["seconds"], 3),
        "chunks_seconds": round(float(row["chunks_seconds"]), 2),
        "finish_seconds": round(float(row["finish_seconds"]), 2),
        "peak_rss_mb": round(child["peak_rss_mb"], 1),
        "exact": exact,
        "database": name,
        "url": url,
    }
    if not keep:
        result["database"] = None
    return result


def grow(url: str, typed: Path, target: int) -> int:
    """\\copy the typed rows under new done uploads until the table holds at least `target` rows."""
    rows = scalar(url, "SELECT count(*) FROM pr_reviews")
    while rows < target:
        ingestion_id = execute(url, """
            INSERT INTO ingestions (dataset, bucket, key, etag, status, created_at)
            VALUES ('pr-reviews', 'bench', 'bench/' || md5(random()::text), md5(random()::text), 'done', now())
            RETURNING id""")
        psql(url, f"ALTER TABLE pr_reviews ALTER ingestion_id SET DEFAULT {int(ingestion_id)}")
        columns = ", ".join(TYPED_COLUMNS[1:])
        psql(url, f"\\copy pr_reviews ({columns}) FROM PROGRAM 'cut -d, -f2- {typed}' WITH (FORMAT csv)")
        rows = scalar(url, "SELECT count(*) FROM pr_reviews")
        log(f"  grown to {rows:,} rows")
    psql(url, "ALTER TABLE pr_reviews ALTER ingestion_id DROP DEFAULT")
    psql(url, "VACUUM ANALYZE pr_reviews")
    return rows


def time_queries(url: str, calls: int) -> dict[str, Any]:
    from chalice.test import Client

    from app import app

    os.environ["DATABASE_URL"] = url
    out = {}
    with Client(app, stage_name="local") as client:
        for label, path in QUERIES.items():
            seconds, body = [], None
            for _ in range(calls):
                started = time.perf_counter()
                response = client.http.get(path)
                seconds.append(time.perf_counter() - started)
                assert response.status_code == 200, response.body
                body = json.loads(response.body)
            assert body is not None
            where, params = _where(path)
            seconds.sort()
            out[label] = {
                "p50_ms": round(statistics.median(seconds) * 1000, 1),
                "p95_ms": round(seconds[min(len(seconds) - 1, int(0.95 * len(seconds)))] * 1000, 1),
                "rows": body["report"]["total_num_observations"],
                "exact": agrees(body["report"], brute_force(url, where, params)),
            }
    return out


ORDERED_SET = """
    SELECT {group} {aggregates} FROM (SELECT team, review_time, merge_time, review_time + merge_time AS total_time
                                      FROM pr_reviews) r {group_by}
"""


def compare_centres(url: str, rounds: int) -> dict[str, Any]:
    """Medians, quartiles and modes of every team and overall, two ways, alternating: PostgreSQL's
    ordered-set aggregates (the first version) and the value counts the report uses now."""
    import sqlalchemy as sa

    from chalicelib.datasets.pr_reviews import summary
    from chalicelib.db import get_engine

    aggregates = ", ".join(
        f"percentile_cont(ARRAY[0.25, 0.5, 0.75]) WITHIN GROUP (ORDER BY {c}), mode() WITHIN GROUP (ORDER BY {c})"
        for c in summary.TIMES)
    statements = [ORDERED_SET.format(group="", aggregates=aggregates, group_by=""),
                  ORDERED_SET.format(group="team,", aggregates=aggregates, group_by="GROUP BY team")]
    times: dict[str, list[float]] = {"ordered_set_aggregates": [], "value_counts": []}
    answers: dict[str, Any] = {}
    engine = get_engine(url)
    for _ in range(rounds):
        with engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
            started = time.perf_counter()
            found = [conn.execute(sa.text(sql)).all() for sql in statements]
            times["ordered_set_aggregates"].append(time.perf_counter() - started)
            answers["ordered_set_aggregates"] = {None: list(found[0][0])[2:4]}
        with engine.begin() as conn:
            started = time.perf_counter()
            centres = summary.centres(conn, summary.value_counts(summary.source([])).cte("vc"))
            times["value_counts"].append(time.perf_counter() - started)
            answers["value_counts"] = {None: [centres[None]["merge_time"][0], centres[None]["merge_time"][1]]}
    same = answers["ordered_set_aggregates"][None] == answers["value_counts"][None]
    return {k: {"median_s": round(statistics.median(v), 2), "runs_s": [round(t, 2) for t in v]} for k, v in times.items()
            } | {"same_answer": same}


def _where(path: str) -> tuple[str, dict[str, Any]]:
    where, params = ["true"], {}
    if "team=" in path:
        where.append("team = :team")
        params["team"] = "Platform"
    if "from=" in path:
        where.append("date BETWEEN :start AND :end")
        params.update(start=dt.date(2023, 2, 1), end=dt.date(2023, 3, 2))
    return " AND ".join(where), params


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pr_reviews", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--scale", default="", help="comma-separated row counts for the team report (e.g. 1000000,5000000)")
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--ab-rounds", type=int, default=3,
                   help="at the largest --scale size, time the first version's ordered-set aggregates against "
                        "the value counts this many times each")
    p.add_argument("--keep", action="store_true", help="keep the benchmark databases")
    args = p.parse_args(argv)
    for name, value in FAKE_AWS.items():
        os.environ.setdefault(name, value)

    raw = pr_reviews_csv(args.rows, args.seed)
    typed = typed_csv(raw)
    key = f"pr-reviews/{raw.name}"
    runs, scale = [], []
    with moto_server() as endpoint:
        upload(endpoint, raw, key)
        for i in range(args.repeat):
            log(f"run {i + 1}/{args.repeat}: \\copy baselines, then the pipeline")
            run = ingest_once(raw, typed, endpoint, key, keep=True)
            log(f"  pipeline {run['pipeline_rows_per_s']:,} rows/s, {run['ratio_vs_bare_copy']:.2f}x bare \\copy, "
                f"{run['ratio_vs_indexed_copy']:.2f}x indexed \\copy; finishing {run['finish_seconds']} s; "
                f"peak RSS {run['peak_rss_mb']} MB; exact {run['exact']}")
            runs.append(run)
        url = runs[-1]["url"]
        try:
            for target in [int(s) for s in args.scale.split(",") if s.strip()]:
                rows = grow(url, typed, target)
                scale.append({"rows": rows, "queries": time_queries(url, args.calls)})
                log(f"  {rows:,} rows: {json.dumps(scale[-1]['queries'])}")
            if scale and args.ab_rounds:
                scale[-1]["centres_ab"] = compare_centres(url, args.ab_rounds)
                log(f"  centres A/B: {json.dumps(scale[-1]['centres_ab'])}")
        finally:
            for run in runs:
                if run["database"] and not args.keep:
                    drop_database(run["database"])
                run.pop("url")
                if not args.keep:
                    run["database"] = None
    summary = {
        "rows": runs[0]["rows"],
        "file_mb": round(raw.stat().st_size / 1e6, 1),
        "ratio_vs_bare_copy_median": statistics.median(r["ratio_vs_bare_copy"] for r in runs),
        "ratio_vs_indexed_copy_median": statistics.median(r["ratio_vs_indexed_copy"] for r in runs),
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs),
        "exact": all(r["exact"] for r in runs) and all(q["exact"] for s in scale for q in s["queries"].values()),
        "rss_limit_mb": RSS_LIMIT_MB,
    }
    path = write_json("pr-reviews-latest.json", {"summary": summary, "runs": runs, "team_report": scale})
    print(json.dumps(summary, indent=2))
    print(f"written to {path}")
    return 0 if summary["exact"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
