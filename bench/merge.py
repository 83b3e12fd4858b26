"""A/B of the trips group merge on an existing benchmark database: the committed form (`MERGE`
probing the primary key, PostgreSQL 15+, with only groups of two trips or more indexed by size)
against the previous one (`INSERT ... ON CONFLICT`, with the `(region, trips)` and full `(trips)`
indexes that migration 0006 replaced).

Both finishing steps of the database's last `done` file run in parallel, as the pipeline runs them,
and the forms alternate so that the machine's noise spreads over both. Two modes:
- `fresh`: trip_groups is emptied before each run (committed), as for a file on a new database;
- `scale`: the file's groups are taken out and merged again inside transactions that roll back,
  so the database is left as it was; only the merging is timed.

    python -m bench.merge --database sluice_bench_pipe_xxxxxx --mode fresh --rounds 4

Get a database with `bench.ingest --keep` or `bench.scale --keep`. `fresh` leaves trip_groups holding
the last file's groups only. The database ends with the committed indexes.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

import sqlalchemy as sa

from bench.common import PG_ADMIN_URL, log, write_json
from chalicelib.datasets import trips

FORMS = ("merge", "on_conflict")
OLD_INDEX = "ix_trip_groups_region_trips"
SIZE_INDEX = "ix_trip_groups_trips"


def use_form(engine: Any, form: str) -> None:
    """Give trip_groups the indexes of `form` and make finish_step take its path."""
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {OLD_INDEX}")
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {SIZE_INDEX}")
        if form == "on_conflict":
            conn.exec_driver_sql(f"CREATE INDEX {OLD_INDEX} ON trip_groups (region, trips)")
            conn.exec_driver_sql(f"CREATE INDEX {SIZE_INDEX} ON trip_groups (trips)")
        else:
            conn.exec_driver_sql(f"CREATE INDEX {SIZE_INDEX} ON trip_groups (trips) WHERE trips >= 2")
    engine.dialect.server_version_info = (14, 0) if form == "on_conflict" else (15, 0)


def merge_once(engine: Any, ingestion_id: int, mode: str) -> float:
    """Both steps in parallel; the slower step's merging time in seconds."""
    if mode == "fresh":
        with engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE trip_groups")
    times: dict[int, float] = {}

    def step(k: int) -> None:
        with engine.connect() as conn:
            tx = conn.begin()
            if mode == "scale":
                trips.finish_step(conn, ingestion_id, k, trips.FINISH_STEPS, sign=-1)
                conn.execute(trips.groups.delete().where(trips.groups.c.trips <= 0))
            start = time.perf_counter()
            trips.finish_step(conn, ingestion_id, k, trips.FINISH_STEPS)
            times[k] = time.perf_counter() - start
            tx.rollback() if mode == "scale" else tx.commit()

    threads = [threading.Thread(target=step, args=(k,)) for k in range(trips.FINISH_STEPS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(times) != trips.FINISH_STEPS:
        raise SystemExit("a merge step failed; see the traceback above")
    return max(times.values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database", required=True, help="an existing sluice_bench_* database")
    p.add_argument("--mode", choices=("fresh", "scale"), default="fresh")
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args(argv)
    if not args.database.startswith("sluice_bench_"):
        p.error("--database must name a sluice_bench_* database (fresh mode empties trip_groups)")
    url = sa.make_url(PG_ADMIN_URL).set(database=args.database)
    engine = sa.create_engine(url.set(drivername="postgresql+psycopg"))
    with engine.connect() as conn:
        ingestion_id = conn.execute(sa.text("SELECT max(id) FROM ingestions WHERE status = 'done'")).scalar()
        groups = conn.execute(sa.select(sa.func.count()).select_from(trips.groups)).scalar()
    if ingestion_id is None:
        p.error(f"{args.database} holds no finished ingestion")
    log(f"{args.database}: {groups:,} groups; merging ingestion {ingestion_id} ({args.mode})")
    seconds: dict[str, list[float]] = {form: [] for form in FORMS}
    try:
        for r in range(args.rounds):
            for form in FORMS if r % 2 == 0 else FORMS[::-1]:
                use_form(engine, form)
                seconds[form].append(round(merge_once(engine, ingestion_id, args.mode), 2))
                log(f"round {r + 1} {form}: {seconds[form][-1]} s")
    finally:
        use_form(engine, "merge")
    summary = {form: {"median_s": statistics.median(xs), "min_s": min(xs), "max_s": max(xs), "runs_s": xs}
               for form, xs in seconds.items()}
    for form, s in summary.items():
        print(f"{form:12} median {s['median_s']:.2f} s ({s['min_s']:.2f}-{s['max_s']:.2f})")
    path = write_json(f"merge-{args.mode}.json", {"database": args.database, "groups_before": groups, **summary})
    log(f"written to {path.relative_to(path.parents[2])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
