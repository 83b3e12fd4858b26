"""Ingestion records: one row per uploaded object, one per committed chunk and finishing step, and
the first rejected lines.

A chunk row is inserted in the same transaction as the chunk's data, so "is this chunk loaded?" and
"are its rows in the table?" can never disagree: a rerun after a crash skips exactly the committed
chunks, and two workers racing on one chunk collide on its primary key instead of loading it twice.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from chalicelib.db import is_postgres, metadata

STATUSES = ("queued", "running", "done", "failed", "deleted")


class IngestionStopped(Exception):
    """The ingestion failed (or finished) while a chunk was loading: the chunk must roll back."""

ingestions = sa.Table(
    "ingestions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dataset", sa.String(32), nullable=False),
    sa.Column("bucket", sa.String(255), nullable=False),
    sa.Column("key", sa.String(1024), nullable=False),
    sa.Column("etag", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("rows_loaded", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_rejected", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_duplicate", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_removed", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("bytes_total", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("bytes_done", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("chunks_total", sa.Integer),
    sa.Column("header", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("duplicate_of", sa.Integer, sa.ForeignKey("ingestions.id")),
    sa.Column("superseded_by", sa.Integer, sa.ForeignKey("ingestions.id")),
    sa.Column("last_modified", sa.DateTime),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("started_at", sa.DateTime),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("notified_at", sa.DateTime),
    sa.UniqueConstraint("bucket", "key", "etag", name="uq_ingestions_object"),
    sa.Index("ix_ingestions_content", "etag", "bytes_total"),
    sa.Index("ix_ingestions_key", "bucket", "key"),
)

ingestion_chunks = sa.Table(
    "ingestion_chunks",
    metadata,
    sa.Column("ingestion_id", sa.Integer, sa.ForeignKey("ingestions.id"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("byte_start", sa.BigInteger, nullable=False),
    sa.Column("byte_end", sa.BigInteger, nullable=False),
    sa.Column("lines", sa.Integer, nullable=False),
    sa.Column("rows_loaded", sa.Integer, nullable=False),
    sa.Column("rows_rejected", sa.Integer, nullable=False),
    sa.Column("rows_duplicate", sa.Integer, nullable=False, server_default="0"),
    sa.Column("quotes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("finished_at", sa.DateTime, nullable=False),
)

ingestion_steps = sa.Table(
    "ingestion_steps",
    metadata,
    sa.Column("ingestion_id", sa.Integer, sa.ForeignKey("ingestions.id"), primary_key=True),
    sa.Column("step", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("finished_at", sa.DateTime, nullable=False),
)

ingestion_attempts = sa.Table(
    "ingestion_attempts",
    metadata,
    sa.Column("ingestion_id", sa.Integer, sa.ForeignKey("ingestions.id"), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),  # "chunk" or "step"
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

ingestion_rejects = sa.Table(
    "ingestion_rejects",
    metadata,
    sa.Column("ingestion_id", sa.Integer, sa.ForeignKey("ingestions.id"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("line", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("message", sa.Text, nullable=False),
)


def utcnow() -> dt.datetime:
    """Now, as a naive UTC datetime (how every timestamp is stored, on both databases)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.replace(microsecond=0).isoformat() + "Z"


def get(conn: Connection, ingestion_id: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(ingestions).where(ingestions.c.id == ingestion_id)).mappings().first()
    return dict(row) if row else None


def find_object(conn: Connection, bucket: str, key: str, etag: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            sa.select(ingestions).where(
                ingestions.c.bucket == bucket, ingestions.c.key == key, ingestions.c.etag == etag
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


def find_original(conn: Connection, dataset: str, etag: str, size: int, exclude_id: int) -> int | None:
    """The ingestion whose rows already hold these bytes (same ETag and size) in this dataset: one
    loading now, or one done that stored rows and was neither superseded nor deleted."""
    c = ingestions.c
    return conn.execute(
        sa.select(c.id)
        .where(
            c.dataset == dataset, c.etag == etag, c.bytes_total == size, c.id != exclude_id,
            c.duplicate_of.is_(None), c.superseded_by.is_(None),
            sa.or_(c.status == "running", sa.and_(c.status == "done", c.rows_loaded + c.rows_duplicate > 0)),
        )
        .order_by(c.id)
        .limit(1)
    ).scalar()


def versions(conn: Connection, bucket: str, key: str) -> list[dict[str, Any]]:
    """Every ingestion of one key still in force (not deleted or superseded), oldest version first."""
    c = ingestions.c
    rows = conn.execute(
        sa.select(ingestions)
        .where(c.bucket == bucket, c.key == key, c.superseded_by.is_(None), c.status != "deleted")
        .order_by(sa.func.coalesce(c.last_modified, c.created_at), c.id)
    ).mappings()
    return [dict(r) for r in rows]


def reset(conn: Connection, ingestion_id: int, last_modified: dt.datetime | None) -> None:
    """Make an ingestion new again (a retry, or the same bytes uploaded again after it failed or was
    deleted): its chunks, steps, attempts and rejects are forgotten and it is queued."""
    for table in (ingestion_rejects, ingestion_chunks, ingestion_steps, ingestion_attempts):
        conn.execute(table.delete().where(table.c.ingestion_id == ingestion_id))
    values: dict[str, Any] = dict(
        status="queued", header=None, chunks_total=None, error=None, duplicate_of=None, superseded_by=None,
        rows_loaded=0, rows_rejected=0, rows_duplicate=0, bytes_done=0, started_at=None, finished_at=None,
    )
    if last_modified is not None:
        values["last_modified"] = last_modified
    update(conn, ingestion_id, **values)


def create(
    conn: Connection, dataset: str, bucket: str, key: str, etag: str, size: int,
    last_modified: dt.datetime | None = None,
) -> int:
    result = conn.execute(
        ingestions.insert().values(
            dataset=dataset,
            bucket=bucket,
            key=key,
            etag=etag,
            bytes_total=size,
            status="queued",
            created_at=utcnow(),
            last_modified=last_modified,
        )
    )
    return int(result.inserted_primary_key[0])


def update(conn: Connection, ingestion_id: int, **values: Any) -> None:
    conn.execute(ingestions.update().where(ingestions.c.id == ingestion_id).values(**values))


def start(conn: Connection, ingestion_id: int, plan: dict[str, Any], chunks_total: int | None) -> None:
    """Record the plan and move a queued ingestion to running (a no-op once it is running)."""
    conn.execute(
        ingestions.update()
        .where(ingestions.c.id == ingestion_id, ingestions.c.status == "queued")
        .values(status="running", started_at=utcnow(), header=json.dumps(plan), chunks_total=chunks_total)
    )


def fail(conn: Connection, ingestion_id: int, message: str, **values: Any) -> bool:
    """Mark an unfinished ingestion failed; False if it had already finished."""
    result = conn.execute(
        ingestions.update()
        .where(ingestions.c.id == ingestion_id, ingestions.c.status.in_(("queued", "running")))
        .values(status="failed", error=message, finished_at=utcnow(), **values)
    )
    return result.rowcount == 1


def mark_removed(conn: Connection, ingestion_id: int) -> None:
    """The ingestion's rows were taken back out: rows_loaded says what is left (0), rows_removed
    how many were taken out."""
    conn.execute(
        ingestions.update()
        .where(ingestions.c.id == ingestion_id)
        .values(rows_removed=ingestions.c.rows_removed + ingestions.c.rows_loaded, rows_loaded=0)
    )


def finish(conn: Connection, ingestion_id: int) -> bool:
    """Mark a running ingestion done; False if another worker finished (or failed) it first."""
    result = conn.execute(
        ingestions.update()
        .where(ingestions.c.id == ingestion_id, ingestions.c.status == "running")
        .values(status="done", finished_at=utcnow())
    )
    return result.rowcount == 1


def done_chunks(conn: Connection, ingestion_id: int) -> set[int]:
    rows = conn.execute(
        sa.select(ingestion_chunks.c.seq).where(ingestion_chunks.c.ingestion_id == ingestion_id)
    )
    return {r[0] for r in rows}


def claim_chunk(conn: Connection, ingestion_id: int, seq: int, byte_start: int, byte_end: int) -> None:
    """Insert the chunk's marker first, so a second worker on the same chunk waits, then collides.

    Raises sqlalchemy.exc.IntegrityError when the chunk is already committed.
    """
    conn.execute(
        ingestion_chunks.insert().values(
            ingestion_id=ingestion_id,
            seq=seq,
            byte_start=byte_start,
            byte_end=byte_end,
            lines=0,
            rows_loaded=0,
            rows_rejected=0,
            finished_at=utcnow(),
        )
    )


def complete_chunk(
    conn: Connection,
    ingestion_id: int,
    seq: int,
    lines: int,
    loaded: int,
    rejects: list[tuple[int, str]],
    rejected: int,
    keep_errors: int,
    duplicates: int = 0,
    quotes: int = 0,
) -> None:
    """Record what a chunk did and add it to the ingestion's counters, in the chunk's transaction."""
    conn.execute(
        ingestion_chunks.update()
        .where(ingestion_chunks.c.ingestion_id == ingestion_id, ingestion_chunks.c.seq == seq)
        .values(
            lines=lines, rows_loaded=loaded, rows_rejected=rejected, rows_duplicate=duplicates, quotes=quotes,
            finished_at=utcnow(),
        )
    )
    if rejects and keep_errors > 0:
        conn.execute(
            ingestion_rejects.insert(),
            [
                {"ingestion_id": ingestion_id, "seq": seq, "line": line, "message": message}
                for line, message in rejects[:keep_errors]
            ],
        )
    chunk_bytes = sa.select(ingestion_chunks.c.byte_end - ingestion_chunks.c.byte_start).where(
        ingestion_chunks.c.ingestion_id == ingestion_id, ingestion_chunks.c.seq == seq
    )
    counted = conn.execute(
        ingestions.update()
        .where(ingestions.c.id == ingestion_id, ingestions.c.status == "running")
        .values(
            rows_loaded=ingestions.c.rows_loaded + loaded,
            rows_rejected=ingestions.c.rows_rejected + rejected,
            rows_duplicate=ingestions.c.rows_duplicate + duplicates,
            bytes_done=ingestions.c.bytes_done + chunk_bytes.scalar_subquery(),
        )
    )
    if counted.rowcount != 1:
        raise IngestionStopped(f"ingestion {ingestion_id} is no longer running")


def done_steps(conn: Connection, ingestion_id: int) -> set[int]:
    rows = conn.execute(
        sa.select(ingestion_steps.c.step).where(ingestion_steps.c.ingestion_id == ingestion_id)
    )
    return {r[0] for r in rows}


def claim_step(conn: Connection, ingestion_id: int, step: int) -> None:
    """Start a finishing step: its marker first (a second worker on it waits, then collides), and a
    shared lock on the ingestion row, so a failure in parallel waits for the step and then undoes it.

    Raises sqlalchemy.exc.IntegrityError when the step already ran, IngestionStopped when the
    ingestion is no longer running.
    """
    conn.execute(ingestion_steps.insert().values(ingestion_id=ingestion_id, step=step, finished_at=utcnow()))
    query = sa.select(ingestions.c.status).where(ingestions.c.id == ingestion_id)
    if is_postgres(conn):
        query = query.with_for_update(read=True)
    if conn.execute(query).scalar() != "running":
        raise IngestionStopped(f"ingestion {ingestion_id} is no longer running")


def count_attempt(conn: Connection, ingestion_id: int, kind: str, seq: int) -> tuple[int, str | None]:
    """Count one more attempt at a chunk or step, before it starts (so a killed worker counts too);
    return (attempts so far, the last error recorded)."""
    table = ingestion_attempts
    key = (table.c.ingestion_id == ingestion_id, table.c.kind == kind, table.c.seq == seq)
    updated = conn.execute(table.update().where(*key).values(attempts=table.c.attempts + 1, updated_at=utcnow()))
    if updated.rowcount == 0:
        conn.execute(table.insert().values(ingestion_id=ingestion_id, kind=kind, seq=seq, attempts=1,
                                           updated_at=utcnow()))
    row = conn.execute(sa.select(table.c.attempts, table.c.last_error).where(*key)).one()
    return int(row[0]), row[1]


def record_attempt_error(conn: Connection, ingestion_id: int, kind: str, seq: int, error: str) -> None:
    table = ingestion_attempts
    conn.execute(
        table.update()
        .where(table.c.ingestion_id == ingestion_id, table.c.kind == kind, table.c.seq == seq)
        .values(last_error=error[:1000], updated_at=utcnow())
    )


def chunk_quotes(conn: Connection, ingestion_id: int, seq: int | None = None) -> dict[int, int]:
    """{seq: double quotes on its lines} of the committed chunks (or of one)."""
    query = sa.select(ingestion_chunks.c.seq, ingestion_chunks.c.quotes).where(
        ingestion_chunks.c.ingestion_id == ingestion_id
    )
    if seq is not None:
        query = query.where(ingestion_chunks.c.seq == seq)
    return {int(s): int(q) for s, q in conn.execute(query)}


def chunk_committed(conn: Connection, ingestion_id: int, seq: int) -> bool:
    return conn.execute(
        sa.select(sa.func.count()).where(ingestion_chunks.c.ingestion_id == ingestion_id,
                                         ingestion_chunks.c.seq == seq)
    ).scalar() == 1


def start_parities(conn: Connection, ingestion_id: int) -> list[bool]:
    """Whether each chunk (by seq) starts inside a quoted field: the parity of the quotes before it."""
    rows = conn.execute(
        sa.select(ingestion_chunks.c.quotes).where(ingestion_chunks.c.ingestion_id == ingestion_id)
        .order_by(ingestion_chunks.c.seq)
    ).scalars()
    parities, total = [], 0
    for quotes in rows:
        parities.append(total % 2 == 1)
        total += int(quotes)
    return parities


def reset_chunks(conn: Connection, ingestion_id: int, plan: dict[str, Any]) -> None:
    """Forget every chunk of a running ingestion (its rows were taken out) to load it again with `plan`."""
    for table in (ingestion_rejects, ingestion_chunks, ingestion_attempts):
        conn.execute(table.delete().where(table.c.ingestion_id == ingestion_id))
    update(conn, ingestion_id, header=json.dumps(plan), rows_loaded=0, rows_rejected=0, rows_duplicate=0,
           bytes_done=0)


def errors(conn: Connection, ingestion_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """The first rejected lines, numbered from the start of the file.

    A chunk only knows its own line numbers; the file's are its own plus the lines of every
    earlier chunk, which are all committed by the time any error is shown for a finished file.
    """
    chunk_lines = dict(
        conn.execute(
            sa.select(ingestion_chunks.c.seq, ingestion_chunks.c.lines).where(
                ingestion_chunks.c.ingestion_id == ingestion_id
            )
        ).all()
    )
    offsets: dict[int, int] = {}
    total = 0
    for seq in range(max(chunk_lines, default=-1) + 1):
        offsets[seq] = total
        total += chunk_lines.get(seq, 0)
    rows = conn.execute(
        sa.select(ingestion_rejects.c.seq, ingestion_rejects.c.line, ingestion_rejects.c.message)
        .where(ingestion_rejects.c.ingestion_id == ingestion_id)
        .order_by(ingestion_rejects.c.seq, ingestion_rejects.c.line)
        .limit(limit)
    ).all()
    return [{"line": offsets.get(seq, 0) + line, "message": message} for seq, line, message in rows]


def to_json(conn: Connection, row: dict[str, Any], max_errors: int = 20) -> dict[str, Any]:
    """The public shape of an ingestion (GET /ingestions/{id} and every WebSocket message)."""
    return {
        "id": row["id"],
        "dataset": row["dataset"],
        "bucket": row["bucket"],
        "key": row["key"],
        "status": row["status"],
        "rows_loaded": int(row["rows_loaded"] or 0),
        "rows_rejected": int(row["rows_rejected"] or 0),
        "rows_duplicate": int(row["rows_duplicate"] or 0),
        "rows_removed": int(row["rows_removed"] or 0),
        "bytes_total": int(row["bytes_total"] or 0),
        "bytes_done": int(row["bytes_done"] or 0),
        "errors": errors(conn, row["id"], max_errors) if row["rows_rejected"] else [],
        "error": row["error"],
        "duplicate_of": row["duplicate_of"],
        "superseded_by": row["superseded_by"],
        "created_at": iso(row["created_at"]),
        "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
    }


def page(
    conn: Connection, limit: int, after: int | None, status: str | None, dataset: str | None
) -> list[dict[str, Any]]:
    """Newest first, keyset-paginated on id."""
    query = sa.select(ingestions).order_by(ingestions.c.id.desc()).limit(limit)
    if after is not None:
        query = query.where(ingestions.c.id < after)
    if status:
        query = query.where(ingestions.c.status == status)
    if dataset:
        query = query.where(ingestions.c.dataset == dataset)
    return [dict(r) for r in conn.execute(query).mappings()]
