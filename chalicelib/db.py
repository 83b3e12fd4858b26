"""The database layer: one cached engine per URL, the shared metadata, and bulk loading.

PostgreSQL is the production database; SQLite is the embedded default. Everything here works on both:
bulk loads use `COPY ... FROM STDIN` on PostgreSQL and `executemany` on SQLite, and rollup upserts use
`INSERT ... ON CONFLICT DO UPDATE`, which both dialects speak.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

metadata = sa.MetaData()

_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()


def get_engine(url: str) -> Engine:
    """The engine for `url`, created on first use and cached for the life of the process."""
    with _LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _create_engine(url)
            _ENGINES[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every cached engine (tests and the local runner call this between databases)."""
    with _LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


def _create_engine(url: str) -> Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 60, "check_same_thread": False})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return sa.create_engine(parsed, pool_pre_ping=True, pool_size=4, max_overflow=4)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Take over transaction control from the sqlite3 module so BEGIN IMMEDIATE below is honoured.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin_immediate(conn: Connection) -> None:
    # Writers queue on the database lock at BEGIN instead of failing later on lock upgrade.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def bulk_insert(conn: Connection, table: sa.Table, columns: Sequence[str], data: Any) -> int:
    """Load a pyarrow Table whose column names are `columns` into `table`; return the row count.

    PostgreSQL gets one `COPY ... FROM STDIN (FORMAT csv)` fed by pyarrow's C++ CSV writer;
    SQLite gets one `executemany` over column-wise Python lists.
    """
    if data.num_rows == 0:
        return 0
    if is_postgres(conn):
        _copy_csv(conn, table, columns, data)
    else:
        _sqlite_executemany(conn, table, columns, data)
    return data.num_rows


def _copy_csv(conn: Connection, table: sa.Table, columns: Sequence[str], data: Any) -> None:
    import pyarrow.csv as pacsv

    buf = io.BytesIO()
    pacsv.write_csv(
        data.select(list(columns)),
        buf,
        write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"),
    )
    quoted = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in columns)
    name = conn.dialect.identifier_preparer.format_table(table)
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        with cur.copy(f"COPY {name} ({quoted}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(buf.getbuffer())


def _sqlite_executemany(conn: Connection, table: sa.Table, columns: Sequence[str], data: Any) -> None:
    quoted = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in columns)
    marks = ", ".join("?" for _ in columns)
    name = conn.dialect.identifier_preparer.format_table(table)
    lists = [data.column(c).to_pylist() for c in columns]
    rows = list(zip(*lists, strict=True))
    # Identifiers come from Table metadata, quoted by the dialect; values are bound.
    conn.exec_driver_sql(f"INSERT INTO {name} ({quoted}) VALUES ({marks})", rows)  # noqa: S608


def add_counts(
    conn: Connection, table: sa.Table, keys: Sequence[str], rows: list[dict], count: str = "trips"
) -> None:
    """Upsert `rows` into a rollup table, adding each row's `count` column to the stored one.

    Rows are sorted by key so that concurrent workers lock rollup rows in one order (no deadlocks).
    """
    if not rows:
        return
    rows = sorted(rows, key=lambda r: tuple(r[k] for k in keys))
    if is_postgres(conn):
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys],
        set_={count: table.c[count] + stmt.excluded[count]},
    )
    conn.execute(stmt, rows)
