"""The pr-reviews dataset's part in the pipeline: load rows, build the report, draw the plots, discard.

- Each chunk bulk-loads its typed rows into `pr_reviews` (no rollups: every figure is computed from
  the rows, in the database).
- One finishing step, when every chunk is in, computes the file's report and the data of its plots
  (grouped queries over the file's rows) and stores both in `pr_review_reports`, once (its marker).
- `finish`, in the transaction that marks the file done, draws the eight plots from the stored data
  and writes them under `results/pr-reviews/<ingestion id>/` with fixed names, then deletes any other
  object under that prefix: a rerun after a crash writes the same keys and leaves nothing stray.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from chalicelib import ingestions, results
from chalicelib.datasets.pr_reviews import plotdata, plots
from chalicelib.datasets.pr_reviews.summary import figures, report_json, source, value_counts
from chalicelib.datasets.pr_reviews.tables import LOAD_COLUMNS, TEAM_CHARS, reports, rows
from chalicelib.db import bulk_insert, is_postgres

log = logging.getLogger("sluice.pr_reviews")

PREFIX = "pr-reviews"
HAS_HEADER = True
COLUMNS: dict[str, tuple[str, ...]] = {
    "review_time": ("review_time",),
    "team": ("team",),
    "date": ("date",),
    "merge_time": ("merge_time",),
}
TABLES = (rows, reports)
#: One step: the report and the plots' data, computed once the whole file is in.
FINISH_STEPS = 1


def context(conn: Connection, settings: Any) -> None:
    """Parsing needs nothing from the database."""
    return None


def load(conn: Connection, table: pa.Table, ingestion_id: int) -> int:
    """Bulk-load typed rows in the caller's (the chunk's) transaction."""
    if table.num_rows == 0:
        return 0
    table = table.append_column("ingestion_id", pa.array(np.full(table.num_rows, ingestion_id, "int32")))
    return bulk_insert(conn, rows, LOAD_COLUMNS, table)


def finish_step(conn: Connection, ingestion_id: int, step: int, steps: int, sign: int = 1) -> None:
    """Store the file's report and plot data (sign -1: take them back out)."""
    conn.execute(reports.delete().where(reports.c.ingestion_id == ingestion_id))
    if sign < 0:
        return
    row = ingestions.get(conn, ingestion_id)
    title = row["key"] if row else f"ingestion {ingestion_id}"
    report, inputs = build(conn, [rows.c.ingestion_id == ingestion_id], title)
    conn.execute(reports.insert().values(
        ingestion_id=ingestion_id, report=json.dumps(report), plot_inputs=json.dumps(inputs),
        plots=None, created_at=ingestions.utcnow(),
    ))


def build(conn: Connection, where: Sequence[Any], title: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(report, plot inputs) of the rows matching `where`: five passes over the rows (counts per team,
    value counts of the three times, PRs per plot label), the rest from the stored value counts."""
    s = source(where)
    with stored(conn, value_counts(s)) as values:
        team_figures = figures(conn, s, values=values)
        report = report_json(team_figures)
        report["outliers"], inputs = plotdata.collect(conn, where, title, team_figures, values)
    return report, inputs


@contextmanager
def stored(conn: Connection, query: Any) -> Iterator[sa.Table]:
    """The value counts (c, g, x, n) of `query` in a temporary table, for the statements of this
    block (dropped after it; an error rolls its creation back with the transaction)."""
    table = sa.Table(
        "pr_review_values", sa.MetaData(),
        sa.Column("c", sa.Integer), sa.Column("g", sa.String(TEAM_CHARS)), sa.Column("x", sa.BigInteger),
        sa.Column("n", sa.BigInteger), prefixes=["TEMPORARY"],
    )
    table.drop(conn, checkfirst=True)
    table.create(conn)
    if is_postgres(conn):
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")  # the counting's hash tables in memory
    conn.execute(table.insert().from_select(["c", "g", "x", "n"], query))
    if is_postgres(conn):
        conn.exec_driver_sql("ANALYZE pr_review_values")  # plans sized for what it holds, not a guess
    yield table
    table.drop(conn)


def finish(conn: Connection, ingestion: dict[str, Any], settings: Any) -> None:
    """Draw the plots and write them to S3 (fixed keys; anything else under the prefix is deleted)."""
    ingestion_id = ingestion["id"]
    stored = conn.execute(
        sa.select(reports.c.plot_inputs).where(reports.c.ingestion_id == ingestion_id)
    ).scalar()
    if stored is None:
        raise RuntimeError(f"ingestion {ingestion_id} has no stored report to draw")
    try:
        pngs = plots.render(json.loads(stored))
    except ImportError:
        log.warning("matplotlib is not installed here: ingestion %s gets its report without plots", ingestion_id)
        _record_plots(conn, ingestion_id, [], "The plots could not be drawn: matplotlib is not installed where "
                                               "this file was finished.")
        return
    s3 = results.client()
    bucket = results.bucket_for(settings, ingestion["bucket"])
    prefix = results.prefix(PREFIX, ingestion_id)
    for name in plots.names():
        results.put(s3, bucket, prefix + name, pngs[name], "image/png")
    results.delete_prefix(s3, bucket, prefix, keep=frozenset(prefix + name for name in plots.names()))
    _record_plots(conn, ingestion_id, plots.names(), None)


def _record_plots(conn: Connection, ingestion_id: int, names: list[str], note: str | None) -> None:
    conn.execute(reports.update().where(reports.c.ingestion_id == ingestion_id).values(
        plots=json.dumps({"names": names, "note": note})
    ))


def discard(conn: Connection, ingestion_id: int, steps_done: Iterable[int]) -> None:
    """Take the file's rows and report out (two indexed deletes; the S3 plots go with the prefix)."""
    conn.execute(reports.delete().where(reports.c.ingestion_id == ingestion_id))
    conn.execute(rows.delete().where(rows.c.ingestion_id == ingestion_id))
