"""Loading trips: rows and weekly rollups per chunk, similarity groups per file, and taking a file back out."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from chalicelib.datasets.trips.schema import (
    EXTENT_COLUMNS,
    GROUP_KEYS,
    LOAD_COLUMNS,
    cell_weeks,
    datasource_weeks,
    groups,
    region_extents,
    region_weeks,
    trips,
)
from chalicelib.db import add_counts, bulk_insert, is_postgres, upsert

# --- loading --------------------------------------------------------------------------------------


def load(conn: Connection, table: pa.Table, ingestion_id: int) -> int:
    """Bulk-load typed trips and add them to every rollup, in the caller's transaction."""
    if table.num_rows == 0:
        return 0
    table = table.append_column("ingestion_id", pa.array(np.full(table.num_rows, ingestion_id, "int32")))
    bulk_insert(conn, trips, LOAD_COLUMNS, table)
    _add_rollups(conn, table)
    return table.num_rows


def _add_rollups(conn: Connection, table: pa.Table) -> None:
    """The chunk's share of the weekly rollups, committed with its rows (groups come at the end)."""
    def counted(keys: list[str], source: pa.Table = table) -> pa.Table:
        out = source.group_by(keys).aggregate([([], "count_all")])
        return out.select([*keys, "count_all"]).rename_columns([*keys, "trips"])

    add_counts(conn, region_weeks, ["region", "week"], counted(["region", "week"]))
    add_counts(conn, datasource_weeks, ["datasource", "week"], counted(["datasource", "week"]))
    cells = pa.concat_tables([
        _cell_keys(table, "o", "o_cx", "o_cy"),
        _cell_keys(table, "d", "d_cx", "d_cy"),
    ])
    add_counts(conn, cell_weeks, ["point", "cx", "cy", "week"], counted(["point", "cx", "cy", "week"], cells))
    _widen_extents(conn, table)


def _widen_extents(conn: Connection, table: pa.Table) -> None:
    """Grow each region's stored extent to hold the chunk's origins and destinations."""
    sources = {"o": ("origin_lon", "origin_lat"), "d": ("dest_lon", "dest_lat")}
    aggregates = [(sources[n[0]][0 if n.endswith("lon") else 1], n[2:5]) for n in EXTENT_COLUMNS]
    out = table.group_by("region").aggregate(aggregates)
    rows = [dict(zip(["region", *EXTENT_COLUMNS], values, strict=True))
            for values in zip(*(out.column(c).to_pylist() for c in ["region", *[f"{a}_{f}" for a, f in aggregates]]),
                              strict=True)]
    bound = sa.func.least if is_postgres(conn) else sa.func.min
    wider = sa.func.greatest if is_postgres(conn) else sa.func.max
    insert = upsert(conn, region_extents)
    widen = {n: (bound if "_min_" in n else wider)(region_extents.c[n], insert.excluded[n]) for n in EXTENT_COLUMNS}
    for row in sorted(rows, key=lambda r: r["region"]):  # one order for every worker: no deadlocks
        conn.execute(insert.values(**row).on_conflict_do_update(index_elements=["region"], set_=widen))


def _cell_keys(table: pa.Table, point: str, cx: str, cy: str) -> pa.Table:
    return pa.table({
        "point": pa.array([point] * table.num_rows, pa.string()),
        "cx": table.column(cx),
        "cy": table.column(cy),
        "week": table.column("week"),
    })


#: The similarity groups are merged when every chunk is in, in this many independent steps (each its
#: own transaction, run in parallel); step k takes the groups whose origin column o_cx is k modulo it.
FINISH_STEPS = 2


def finish_step(conn: Connection, ingestion_id: int, step: int, steps: int, sign: int = 1) -> None:
    """Add (sign -1: take back) the file's trips to the similarity groups of one step.

    Groups are merged once per file rather than per chunk: most groups are small (a few hundred
    metres and an hour hold few trips), so each chunk's groups are nearly as many as its rows, and
    per-chunk upserts cost as much as loading the trips (measured: 11.7 s against 5.0-6.6 s per million
    trips). One set-based statement over the file's rows writes each group once. A file's groups
    therefore appear when its chunks are all in, before it is marked done.
    """
    if is_postgres(conn):
        _take_turns_postgres(conn, step)
        if conn.dialect.server_version_info >= (15,):
            conn.execute(MERGE_GROUPS, {"ingestion_id": ingestion_id, "step": step, "steps": steps, "sign": sign})
            return
    keys = [trips.c[k] for k in GROUP_KEYS]
    mine = sa.and_(trips.c.ingestion_id == ingestion_id, (trips.c.o_cx % steps + steps) % steps == step)
    rows = sa.select(*keys, sign * sa.func.count()).where(mine).group_by(*keys)
    insert = upsert(conn, groups).from_select([*GROUP_KEYS, "trips"], rows)
    conn.execute(insert.on_conflict_do_update(
        index_elements=list(GROUP_KEYS), set_={"trips": groups.c.trips + insert.excluded.trips}
    ))


#: Advisory lock namespace of the group merges (any constant int4 unique to this use).
GROUP_LOCK = 0x7472_6970  # "trip"

_KEYS = ", ".join(GROUP_KEYS)
#: The group merge on PostgreSQL 15 and later: new groups are inserted plainly, where ON CONFLICT
#: inserts speculatively (about twice the work per new group).
MERGE_GROUPS = sa.text(f"""
    MERGE INTO trip_groups g
    USING (
        SELECT {_KEYS}, :sign * count(*) AS trips FROM trips
        WHERE ingestion_id = :ingestion_id AND (o_cx % :steps + :steps) % :steps = :step
        GROUP BY {_KEYS}
    ) f
    ON {" AND ".join(f"g.{k} = f.{k}" for k in GROUP_KEYS)}
    WHEN MATCHED THEN UPDATE SET trips = g.trips + f.trips
    WHEN NOT MATCHED THEN INSERT ({_KEYS}, trips) VALUES ({", ".join(f"f.{k}" for k in GROUP_KEYS)}, f.trips)
""")  # noqa: S608 (the names are the constants above; values are bound)


def _take_turns_postgres(conn: Connection, step: int) -> None:
    """Wait for this step's turn among all files, and fix the merge's plan for this transaction.

    Merges of the same step (from any file) take turns on a transaction-scoped advisory lock. So no
    other transaction can add one of our new groups while the MERGE runs (MERGE would then fail on
    the primary key), and the rows need no locking order (two files upserting the same groups in
    different orders could deadlock). Without an order, the file's rows are grouped by a hash
    aggregate instead of sorted first: 0.8-1.0 s against 2.3-3.1 s for 500,000 trips.

    The planner cannot know how many rows a just-loaded file has (it guesses a handful), so the plan
    is set here rather than left to estimates: no sorting, 64 MB for the aggregate instead of
    spilling to disk, and a nested loop that probes trip_groups by its primary key for each of the
    file's groups (a hash or merge join would read all of trip_groups, which at scale is far larger
    than one file). The primary key is the only index the join can probe: migration 0006 dropped
    the (region, trips) index, which on a new, never-analysed table the planner probed by region
    alone, rescanning every group it had just inserted (6.6 s against 0.19 s for 22,559 groups).
    """
    for setting in ("work_mem = '64MB'", "enable_sort = off", "enable_hashjoin = off", "enable_mergejoin = off"):
        conn.exec_driver_sql(f"SET LOCAL {setting}")
    lock = sa.text("SELECT pg_advisory_xact_lock(CAST(:space AS integer), CAST(:step AS integer))")
    conn.execute(lock, {"space": GROUP_LOCK, "step": step})


def discard(conn: Connection, ingestion_id: int, steps_done: Iterable[int] = ()) -> None:
    """Take an ingestion's trips back out of the rollups and the table (a file failed as a whole).

    The subtraction is aggregated in SQL and streamed in batches, so memory stays bounded however
    many rows the failed file had loaded; groups are taken back for the finishing steps that ran.
    """
    mine = trips.c.ingestion_id == ingestion_id
    c = trips.c
    sources = [
        (region_weeks, ["region", "week"], [c.region, c.week]),
        (datasource_weeks, ["datasource", "week"], [c.datasource, c.week]),
        (cell_weeks, ["point", "cx", "cy", "week"], [sa.literal("o"), c.o_cx, c.o_cy, c.week]),
        (cell_weeks, ["point", "cx", "cy", "week"], [sa.literal("d"), c.d_cx, c.d_cy, c.week]),
    ]
    for rollup, keys, exprs in sources:
        query = sa.select(*exprs, sa.func.count()).where(mine).group_by(*exprs[1:] if keys[0] == "point" else exprs)
        result = conn.execute(query.execution_options(stream_results=True, yield_per=50_000))
        for rows in result.partitions():
            columns = list(zip(*rows, strict=True))
            table = pa.table({k: pa.array(list(v)) for k, v in zip(keys, columns[:-1], strict=True)})
            add_counts(conn, rollup, keys, table.append_column("trips", pa.array([-n for n in columns[-1]], pa.int64())))
        conn.execute(rollup.delete().where(rollup.c.trips <= 0))
    steps_done = list(steps_done)
    for step in steps_done:
        finish_step(conn, ingestion_id, step, FINISH_STEPS, sign=-1)
    if steps_done:
        conn.execute(groups.delete().where(groups.c.trips <= 0))
    conn.execute(trips.delete().where(mine))


def finish(conn: Connection, ingestion: dict[str, Any], settings: Any) -> None:
    """Nothing left once the steps ran: the weekly rollups were kept chunk by chunk."""


