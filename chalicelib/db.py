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
        sa.event.listen(engine, "before_execute", _sqlite_note_implicit_begin)
        sa.event.listen(engine, "after_execute", _sqlite_clear_implicit_begin)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    # JIT compiling costs tens of milliseconds per query (80 ms seen on a bbox query at 10M trips) and
    # never pays back on these short, index-driven queries; a URL's own `options` still decides.
    connect_args = {} if "options" in parsed.query else {"options": "-c jit=off"}
    return sa.create_engine(parsed, pool_pre_ping=True, pool_size=4, max_overflow=4, connect_args=connect_args)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Take over transaction control from the sqlite3 module so BEGIN IMMEDIATE below is honoured.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


# Reads run on `engine.connect()`, where the first statement begins the transaction implicitly
# (SQLAlchemy's autobegin, after `before_execute`); writes begin explicitly, with `engine.begin()`.
_IMPLICIT_BEGIN = "sluice_implicit_begin"


def _sqlite_note_implicit_begin(conn: Connection, *_: Any) -> None:
    if not conn.in_transaction():
        conn.info[_IMPLICIT_BEGIN] = True


def _sqlite_clear_implicit_begin(conn: Connection, *_: Any) -> None:
    conn.info.pop(_IMPLICIT_BEGIN, None)


def _sqlite_begin(conn: Connection) -> None:
    # Writers queue on the database lock at BEGIN instead of failing later on lock upgrade. Reads take
    # no lock: under WAL they see a snapshot while a writer works, instead of waiting for its commit
    # (a route waited up to 2 s behind a chunk's transaction during a local load).
    implicit = conn.info.pop(_IMPLICIT_BEGIN, False)
    conn.exec_driver_sql("BEGIN" if implicit else "BEGIN IMMEDIATE")


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def bulk_insert(conn: Connection, table: sa.Table, columns: Sequence[str], data: Any) -> int:
    """Load a pyarrow Table whose column names are `columns` into `table`; return the row count.

    PostgreSQL gets one `COPY ... FROM STDIN`, in binary (chalicelib.pgcopy) when every column's type
    allows, else as CSV from pyarrow's C++ writer; SQLite gets one `executemany` over column lists.
    """
    if data.num_rows == 0:
        return 0
    if is_postgres(conn):
        copy_rows(conn, table, conn.dialect.identifier_preparer.format_table(table), columns, data)
    else:
        _sqlite_executemany(conn, table, columns, data)
    return data.num_rows


COPY_BATCH_ROWS = 32_768


def copy_rows(conn: Connection, table: sa.Table, name: str, columns: Sequence[str], data: Any) -> None:
    """COPY a pyarrow Table into `name` (shaped like `table`), a batch of rows at a time.

    Binary when pgcopy encodes every column (no text for the server to parse), else CSV.
    """
    from chalicelib import pgcopy

    quoted = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in columns)
    kinds = pgcopy.encodable(table, columns, data)
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        if kinds is not None:
            with cur.copy(f"COPY {name} ({quoted}) FROM STDIN (FORMAT binary)") as copy:
                copy.write(pgcopy.SIGNATURE)
                for payload in pgcopy.batches(data, columns, kinds, COPY_BATCH_ROWS):
                    copy.write(payload)
                copy.write(pgcopy.TRAILER)
            return
        with cur.copy(f"COPY {name} ({quoted}) FROM STDIN (FORMAT csv)") as copy:
            for payload in _csv_batches(data, columns):
                copy.write(payload)


def _csv_batches(data: Any, columns: Sequence[str]) -> Any:
    import pyarrow.csv as pacsv

    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    for batch in data.select(list(columns)).to_batches(max_chunksize=COPY_BATCH_ROWS):
        buf = io.BytesIO()
        pacsv.write_csv(batch, buf, write_options=options)
        yield buf.getbuffer()


def _sqlite_executemany(
    conn: Connection, table: sa.Table, columns: Sequence[str], data: Any, on_conflict: str = ""
) -> None:
    quoted = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in columns)
    marks = ", ".join("?" for _ in columns)
    name = conn.dialect.identifier_preparer.format_table(table)
    # Identifiers come from Table metadata, quoted by the dialect; values are bound.
    sql = f"INSERT INTO {name} ({quoted}) VALUES ({marks}) {on_conflict}"  # noqa: S608
    conn.exec_driver_sql(sql, _sqlite_rows(data, columns))


def _sqlite_rows(data: Any, columns: Sequence[str]) -> list[tuple]:
    """Rows as tuples, dates and times as the strings SQLAlchemy's SQLite types store and compare."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lists = []
    for name in columns:
        column = data.column(name)
        if pa.types.is_timestamp(column.type):
            column = pc.binary_join_element_wise(pc.strftime(column, format="%Y-%m-%d %H:%M:%S"), ".000000", "")
        elif pa.types.is_date(column.type):
            column = pc.strftime(column, format="%Y-%m-%d")
        lists.append(column.to_pylist())
    return list(zip(*lists, strict=True))


def add_counts(conn: Connection, table: sa.Table, keys: Sequence[str], data: Any, count: str = "trips") -> None:
    """Upsert a pyarrow Table of (keys..., count) into a rollup table, adding to the stored counts.

    PostgreSQL: COPY into a temporary table, then one INSERT ... SELECT ... ON CONFLICT, in key order
    so that concurrent workers lock rollup rows in the same order (no deadlocks). SQLite: executemany.
    """
    if data.num_rows == 0:
        return
    prep = conn.dialect.identifier_preparer
    columns = [*keys, count]
    cols = ", ".join(prep.quote(c) for c in columns)
    key_cols = ", ".join(prep.quote(k) for k in keys)
    name = prep.format_table(table)
    c = prep.quote(count)
    update = f"ON CONFLICT ({key_cols}) DO UPDATE SET {c} = {name}.{c} + excluded.{c}"
    if is_postgres(conn):
        temp = f"tmp_{table.name}"
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {temp} (LIKE {name}) ON COMMIT DELETE ROWS"
        )
        copy_rows(conn, table, temp, columns, data)
        conn.exec_driver_sql(
            f"INSERT INTO {name} ({cols}) SELECT {cols} FROM {temp} ORDER BY {key_cols} {update}"  # noqa: S608
        )
        conn.exec_driver_sql(f"TRUNCATE {temp}")
    else:
        _sqlite_executemany(conn, table, columns, data, on_conflict=update)


def upsert(conn: Connection, table: sa.Table) -> Any:
    """An INSERT for `table` in the connection's dialect, which offers `on_conflict_do_update`."""
    if is_postgres(conn):
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)
