"""The scalability proof: load time and route latency as one PostgreSQL database grows.

    python -m bench.scale --sizes 1000000,10000000,100000000 [--file-rows 1000000] [--calls 50] [--keep]

One fresh, migrated database is grown in steps up to each size. Each step loads new files through the
real pipeline (chalicelib.pipeline.ingest_object in a child process, S3 served by `moto_server`); the
files are generated with their own seeds over one year (about 52 ISO weeks), one at a time, and deleted
(locally and from the bucket) once loaded. After each step (and a VACUUM ANALYZE, as autovacuum would do):
`--calls` timed calls per query through the routes (chalice.test.Client, DATABASE_URL set):
weekly average by region, weekly average by a random bbox inside a city, the top 20 groups, and the
weekly series by a random bbox, reported as p50/p95/max. A few answers are checked against brute-force
SQL over the raw trips rows (not timed). Results: bench/results/scale-latest.json and scale.png.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import (
    BUCKET,
    DATA,
    RESULTS,
    create_database,
    drop_database,
    ingestion_row,
    log,
    moto_server,
    run_pipeline,
    s3_client,
    table_totals,
    trips_csv,
    upload,
    write_json,
)

START, END = "2018-01-01", "2018-12-30"  # 52 ISO weeks, Monday 2018-01-01 to Sunday 2018-12-30
TARGETS_MS = {"weekly_average_region": 30, "weekly_average_bbox": 30, "groups_top20": 50}
QUERIES = ("weekly_average_region", "weekly_average_bbox", "groups_top20", "weekly_bbox", "weekly_world_both")


# --- loading ------------------------------------------------------------------------------------


def load_step(url: str, endpoint: str, rows: int, file_rows: int, first_seed: int, args: argparse.Namespace,
              ) -> dict[str, Any]:
    """Load `rows` more trips, in files of at most `file_rows`; timing covers the pipeline only."""
    seconds, peak, files, seed, moto = 0.0, 0.0, 0, first_seed, 0.0
    directory = DATA / "scale"
    while rows > 0:
        n = min(rows, file_rows)
        path = trips_csv(n, seed, START, END, directory)
        key = f"trips/scale-{seed}.csv"
        upload(endpoint, path, key)
        path.unlink()
        result = run_pipeline(url, endpoint, key, args.workers, args.chunk_bytes)
        s3_client(endpoint).delete_object(Bucket=BUCKET, Key=key)
        row = ingestion_row(url, result["ingestion_id"])
        if row["status"] != "done" or int(row["rows_loaded"]) != n:
            raise RuntimeError(f"{key}: ingestion {row}")
        seconds += result["seconds"]
        moto += result["moto_cpu_seconds"]
        peak = max(peak, result["peak_rss_mb"])
        files += 1
        rows -= n
        seed += 1
        log(f"  loaded {key}: {n:,} rows in {result['seconds']:.1f} s ({n / result['seconds']:,.0f} rows/s), "
            f"peak RSS {result['peak_rss_mb']:.0f} MB")
    return {"seconds": seconds, "files": files, "peak_rss_mb": peak, "next_seed": seed, "moto_cpu_seconds": moto}


# --- queries ------------------------------------------------------------------------------------


def random_bbox(rng: random.Random) -> tuple[float, float, float, float]:
    """A box inside one of the generator's cities: centre within ~5 km of the city centre, sides from
    a few hundred metres (boundary cells only) to ~12 km."""
    from tools.generate_trips import DEFAULT_REGIONS, REGIONS

    lon, lat = REGIONS[rng.choice(DEFAULT_REGIONS)]
    lon += rng.uniform(-0.05, 0.05)
    lat += rng.uniform(-0.05, 0.05)
    half = rng.choice((0.002, 0.005, 0.01, 0.02, 0.04, 0.06)) * rng.uniform(0.8, 1.2)
    return (round(lon - half, 6), round(lat - half * 0.7, 6), round(lon + half, 6), round(lat + half * 0.7, 6))


def bbox_param(box: tuple[float, float, float, float]) -> str:
    return ",".join(f"{v:.6f}" for v in box)


def measure_queries(url: str, calls: int, seed: int) -> tuple[dict[str, Any], dict[str, list]]:
    """Timed route calls; returns the latency summary and the answers kept for the exactness checks."""
    from chalice.test import Client

    from app import app
    from tools.generate_trips import DEFAULT_REGIONS

    os.environ["DATABASE_URL"] = url
    rng = random.Random(seed)
    paths: dict[str, list[str]] = {
        "weekly_average_region": [f"/trips/weekly-average?region={DEFAULT_REGIONS[i % 3]}" for i in range(calls)],
        "weekly_average_bbox": [f"/trips/weekly-average?bbox={bbox_param(random_bbox(rng))}" for _ in range(calls)],
        "groups_top20": ["/trips/groups?limit=20"] * calls,
        "weekly_bbox": [f"/trips/weekly?bbox={bbox_param(random_bbox(rng))}" for _ in range(calls)],
        # a box holding every trip, both ends: answered from the region rollup through the extents
        "weekly_world_both": ["/trips/weekly?bbox=-180,-90,180,90&point=both"] * calls,
    }
    latencies: dict[str, list[float]] = {name: [] for name in paths}
    answers: dict[str, list] = {name: [] for name in paths}
    with Client(app, stage_name="local") as client:
        for name in paths:  # warm-up: connection pool, imports, first plans (not timed)
            for path in paths[name][:3]:
                assert client.http.get(path).status_code == 200, path
        for i in range(calls):  # interleaved, so noise from other load spreads over every query
            for name in QUERIES:
                path = paths[name][i]
                started = time.perf_counter()
                response = client.http.get(path)
                latencies[name].append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{path}: {response.status_code} {response.body[:300]!r}")
                answers[name].append((path, json.loads(response.body)))
    summary = {}
    for name, values in latencies.items():
        values.sort()
        summary[name] = {
            "calls": len(values),
            "p50_ms": round(statistics.median(values), 2),
            "p95_ms": round(values[max(0, int(round(0.95 * len(values))) - 1)], 2),
            "max_ms": round(values[-1], 2),
            "target_p95_ms": TARGETS_MS.get(name),
        }
    return summary, answers


# --- exactness ----------------------------------------------------------------------------------


def check_answers(url: str, answers: dict[str, list], per_query: int) -> list[dict[str, Any]]:
    """Compare some answers with brute-force counts over the raw trips rows (plain lon/lat BETWEEN).

    Every check is one `count(*) FILTER (WHERE ...)` column of a single scan grouped by week, so the
    cost is one pass over the table however many answers are checked.
    """
    import sqlalchemy as sa

    from chalicelib.db import get_engine

    conditions: list[str] = []
    params: dict[str, Any] = {}
    cases: list[tuple[str, str, Any, Any]] = []  # (query, kind, answer, extra)

    def condition(sql: str, values: dict[str, Any]) -> str:
        n = len(conditions)
        conditions.append(sql.format(n=n))
        params.update({f"{k}{n}": v for k, v in values.items()})
        return f"c{n}"

    bbox_sql = ("origin_lon BETWEEN :x0{n} AND :x1{n} AND origin_lat BETWEEN :y0{n} AND :y1{n}")

    def bbox_values(path: str) -> dict[str, float]:
        x0, y0, x1, y1 = (float(v) for v in path.split("bbox=")[1].split(","))
        return {"x0": x0, "x1": x1, "y0": y0, "y1": y1}

    for path, body in answers["weekly_average_region"][:3]:
        column = condition("region = :r{n}", {"r": path.split("region=")[1]})
        cases.append((path, column, body["trips"], None))
    for path, body in answers["weekly_average_bbox"][:per_query]:
        column = condition(bbox_sql, bbox_values(path))
        cases.append((path, column, body["trips"], (body["from"], body["to"])))
    for path, body in answers["weekly_bbox"][:per_query]:
        column = condition(bbox_sql, bbox_values(path))
        got = {item["week"]: item["trips"] for item in body["items"] if item["trips"]}
        cases.append((path, column, got, "weekly"))
    for path, body in answers["weekly_world_both"][:1]:
        column = condition("origin_lon BETWEEN -180 AND 180 AND dest_lon BETWEEN -180 AND 180 AND :one{n} = 1",
                           {"one": 1})
        got = {item["week"]: item["trips"] for item in body["items"] if item["trips"]}
        cases.append((path, column, got, "weekly"))
    body = answers["groups_top20"][0][1]
    deg = body["rule"]["cell_degrees"]
    hours = body["rule"]["time_bucket_hours"]
    for group in body["items"][:3]:
        cells = [round(group[p][c] / deg - 0.5) for p in ("origin", "destination") for c in ("lon", "lat")]
        column = condition(
            "region = :r{n} AND floor(origin_lon / :d{n}) = :ox{n} AND floor(origin_lat / :d{n}) = :oy{n}"
            " AND floor(dest_lon / :d{n}) = :dx{n} AND floor(dest_lat / :d{n}) = :dy{n}"
            " AND extract(hour FROM started_at)::int / :h{n} = :t{n}",
            {"r": group["region"], "d": deg, "ox": cells[0], "oy": cells[1], "dx": cells[2], "dy": cells[3],
             "h": hours, "t": int(group["time_of_day"][:2]) // hours})
        cases.append((f"/trips/groups?limit=20 ({group['region']} {group['time_of_day']})", column, group["trips"], None))

    columns = ", ".join(f"count(*) FILTER (WHERE {c}) AS c{i}" for i, c in enumerate(conditions))
    with get_engine(url).connect() as conn:
        rows = conn.execute(sa.text(f"SELECT week, {columns} FROM trips GROUP BY week"), params).mappings().all()  # noqa: S608
    checks = []
    for query, column, answer, extra in cases:
        per_week = {r["week"].isoformat(): int(r[column]) for r in rows if r[column]}
        if extra == "weekly":
            expected: Any = per_week
            checks.append({"query": query, "answer": sum(answer.values()), "brute_force": sum(per_week.values()),
                           "exact": answer == expected})
            continue
        if extra is not None:
            per_week = {w: n for w, n in per_week.items() if extra[0] <= w <= extra[1]}
        expected = sum(per_week.values())
        checks.append({"query": query, "answer": answer, "brute_force": expected, "exact": answer == expected})
    return checks


# --- the plot -----------------------------------------------------------------------------------


def plot(steps: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [s["rows"] for s in steps]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    left.loglog(rows, [s["load_seconds_total"] for s in steps], "o-", label="total load time (pipeline)")
    left.loglog(rows, [s["load_seconds"] for s in steps], "s--", label="this step's load time")
    for s in steps:
        left.annotate(f"{s['load_rows_per_s']:,.0f} rows/s", (s["rows"], s["load_seconds_total"]),
                      textcoords="offset points", xytext=(6, -12), fontsize=8)
    left.set_xlabel("trips in the database")
    left.set_ylabel("seconds")
    left.set_title("Loading through the pipeline (CSV in S3 -> PostgreSQL)")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    labels = {
        "weekly_average_region": "weekly average, region",
        "weekly_average_bbox": "weekly average, bbox",
        "groups_top20": "top 20 groups",
        "weekly_bbox": "weekly series, bbox",
        "weekly_world_both": "weekly series, world box, both ends",
    }
    for name, label in labels.items():
        right.loglog(rows, [s["queries"][name]["p95_ms"] for s in steps], "o-", label=f"{label} (p95)")
    for target, style, what in ((30, ":", "weekly average"), (50, "-.", "top groups")):
        right.axhline(target, color="grey", linestyle=style, linewidth=1)
        right.annotate(f"{target} ms target at 100M ({what})", (max(rows) * 1.9, target),
                       textcoords="offset points", xytext=(0, 3), fontsize=8, color="grey", ha="right")
    right.set_xlabel("trips in the database")
    right.set_ylabel("p95 latency through the route (ms)")
    right.set_title("Queries through the routes")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=8)
    from matplotlib.ticker import EngFormatter, LogFormatter, ScalarFormatter

    for ax in (left, right):
        ax.set_xlim(min(rows) / 2, max(rows) * 2)
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main ---------------------------------------------------------------------------------------


def database_bytes(url: str) -> int:
    import sqlalchemy as sa

    from chalicelib.db import get_engine

    with get_engine(url).connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar())


def analyze(url: str) -> float:
    import sqlalchemy as sa

    from chalicelib.db import get_engine

    # VACUUM as autovacuum soon would (migration 0004 has it vacuum trips after every 100,000
    # inserted rows): the visibility map it sets lets the bbox boundary queries run index-only.
    started = time.perf_counter()
    with get_engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000000,10000000,100000000", help="database sizes, comma-separated")
    p.add_argument("--file-rows", type=int, default=1_000_000, help="rows per generated file")
    p.add_argument("--calls", type=int, default=50, help="timed calls per query per size")
    p.add_argument("--checks", type=int, default=4, help="bbox answers checked by brute force per query")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chunk-bytes", type=int, default=None)
    p.add_argument("--seed", type=int, default=1000, help="seed of the first file (then +1 per file)")
    p.add_argument("--keep", action="store_true", help="keep the database")
    p.add_argument("--database", help="only measure the queries on this existing sluice_bench_* database")
    p.add_argument("--output", default="scale-latest.json", help="file name under bench/results")
    args = p.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if args.database:
        return remeasure(args)

    name, url = create_database("scale")
    log(f"database {name}")
    steps: list[dict[str, Any]] = []
    loaded, total_seconds, seed = 0, 0.0, args.seed
    ok = True
    try:
        with moto_server() as endpoint:
            for size in sizes:
                log(f"step to {size:,} rows: loading {size - loaded:,}")
                load = load_step(url, endpoint, size - loaded, args.file_rows, seed, args)
                seed = load["next_seed"]
                total_seconds += load["seconds"]
                step_rows = size - loaded
                loaded = size
                totals = table_totals(url)
                if any(v != size for v in totals.values()):
                    raise RuntimeError(f"rollups do not add up to {size}: {totals}")
                analyze_seconds = analyze(url)
                log(f"  measuring queries ({args.calls} calls each)")
                queries, answers = measure_queries(url, args.calls, seed=size)
                checks = check_answers(url, answers, args.checks)
                ok = ok and all(c["exact"] for c in checks)
                steps.append({
                    "rows": size,
                    "files": load["files"],
                    "load_seconds": round(load["seconds"], 1),
                    "load_rows_per_s": round(step_rows / load["seconds"]),
                    "load_seconds_total": round(total_seconds, 1),
                    "pipeline_peak_rss_mb": round(load["peak_rss_mb"], 1),
                    "moto_cpu_seconds": round(load["moto_cpu_seconds"], 1),
                    "analyze_seconds": round(analyze_seconds, 1),
                    "database_gb": round(database_bytes(url) / 1e9, 2),
                    "rollup_totals": totals,
                    "queries": queries,
                    "exactness": checks,
                })
                write_json(args.output, {"database": name, "file_rows": args.file_rows,
                                                 "workers": args.workers, "steps": steps})
                plot(steps, RESULTS / "scale.png")
                report(steps[-1])
    finally:
        if not args.keep:
            drop_database(name)
    return 0 if ok else 1


def remeasure(args: argparse.Namespace) -> int:
    """Queries and checks only, on a database kept by an earlier run (--keep)."""
    import sqlalchemy as sa

    from bench.common import PG_ADMIN_URL

    url = sa.make_url(PG_ADMIN_URL).set(database=args.database).render_as_string(hide_password=False)
    rows = table_totals(url)["trips"]
    queries, answers = measure_queries(url, args.calls, seed=rows)
    checks = check_answers(url, answers, args.checks)
    step = {"rows": rows, "database_gb": round(database_bytes(url) / 1e9, 2), "queries": queries,
            "exactness": checks, "load_seconds": None, "load_rows_per_s": 0, "pipeline_peak_rss_mb": 0}
    write_json(args.output, {"database": args.database, "remeasured": True, "steps": [step]})
    report(step)
    return 0 if all(c["exact"] for c in checks) else 1


def report(step: dict[str, Any]) -> None:
    print(f"\n{step['rows']:,} trips ({step['database_gb']} GB)", end="")
    if step["load_seconds"] is None:
        print(": queries only")
    else:
        print(f": step loaded in {step['load_seconds']} s ({step['load_rows_per_s']:,} rows/s), "
              f"peak RSS {step['pipeline_peak_rss_mb']:.0f} MB")
    print(f"{'query':<24}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'target':>8}")
    for name, q in step["queries"].items():
        target = f"<{q['target_p95_ms']}" if q["target_p95_ms"] else ""
        print(f"{name:<24}{q['p50_ms']:>9.1f}{q['p95_ms']:>9.1f}{q['max_ms']:>9.1f}{target:>8}")
    exact = sum(c["exact"] for c in step["exactness"])
    print(f"exactness: {exact}/{len(step['exactness'])} answers equal the brute-force count", flush=True)
    for c in step["exactness"]:
        if not c["exact"]:
            print(f"  NOT EXACT {c['query']}: {c['answer']} != {c['brute_force']}")


if __name__ == "__main__":
    raise SystemExit(main())
