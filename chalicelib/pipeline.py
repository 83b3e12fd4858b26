"""The one ingestion pipeline: S3 event -> plan -> chunks -> load -> finish -> notify.

Guarantees, and where they come from:
- Nothing doubled: an object is one ingestion, unique on (bucket, key, ETag); the same bytes under
  another key become a `duplicate_of` record that loads nothing; each chunk commits its rows together
  with its marker row, whose primary key stops a second load of the same chunk.
- Nothing lost: a rerun (replayed event, Lambda retry, SQS redelivery) skips committed chunks and loads
  the rest; when every chunk is in, each finishing step commits once with its own marker row (they
  run in parallel), and the ingestion is marked done under a row lock.
- Bounded memory: one chunk (CHUNK_BYTES of whole lines) per worker is in memory at a time.
- Bad input: a file that cannot be read fails with a sentence; bad rows are rejected with their line
  numbers; more rejects than MAX_REJECT_SHARE fails the file and takes its rows back out.
"""

from __future__ import annotations

import csv
import json
import logging
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from chalicelib import chunks, csvblock, datasets, ingestions, notify, results, s3objects
from chalicelib.db import get_engine, is_postgres
from chalicelib.errors import Conflict, FileRejected, NotFound
from chalicelib.s3objects import ObjectInfo
from chalicelib.settings import Settings

log = logging.getLogger("sluice.pipeline")

HEADER_SAMPLE_BYTES = 64 * 1024
SUFFIXES = (".csv", ".csv.gz")


@dataclass(frozen=True)
class Job:
    """What any worker needs to load a chunk of one ingestion (rebuilt from its database row)."""

    ingestion_id: int
    dataset: ModuleType
    obj: ObjectInfo
    columns: list[str]
    gzip: bool
    chunk_bytes: int
    skip_header: bool
    parities: tuple[bool, ...] | None = None  # per chunk: starts inside a quoted field (see finalize)

    @property
    def plan(self) -> list[chunks.Chunk]:
        return chunks.plan(self.obj.size, self.chunk_bytes)

    def start_quoted(self, seq: int) -> bool:
        return bool(self.parities[seq]) if self.parities and seq < len(self.parities) else False


# --- entry points -----------------------------------------------------------------------------


def ingest_object(bucket: str, key: str, settings: Settings, deadline: float | None = None) -> int | None:
    """Handle one S3 ObjectCreated event; return the ingestion id (None if the object is gone).

    Without a queue the whole file is loaded before this returns; with INGEST_QUEUE_URL the chunks
    are handed to SQS workers (`load_from_message`).
    """
    if results.is_result_key(key):
        log.info("s3://%s/%s is a result file sluice wrote; not an upload", bucket, key)
        return None
    engine = get_engine(settings.database_url)
    s3 = s3objects.client()
    try:
        obj = s3objects.head(s3, bucket, key)
    except s3objects.ObjectGone:
        log.warning("s3://%s/%s is gone; nothing to ingest", bucket, key)
        return None
    dataset = datasets.for_key(key)
    row, created = register(engine, dataset.PREFIX if dataset else _prefix(key), obj)
    if created:
        notify.changed(engine, settings, row["id"], status_changed=True)
    if row["status"] in ("done", "failed", "deleted"):
        return row["id"]
    start(engine, s3, settings, row, dataset, obj, deadline)
    return row["id"]


def start(
    engine: Engine, s3: Any, settings: Settings, row: dict[str, Any], dataset: ModuleType | None,
    obj: ObjectInfo, deadline: float | None = None,
) -> None:
    """Plan a queued ingestion (or pick up a running one) and load it, here or on the queue."""
    try:
        job = _retrying(settings, lambda: prepare(engine, s3, settings, row, dataset, obj))
        if job is None:  # the same bytes are already loaded: a duplicate
            return
        if settings.ingest_queue_url:
            enqueue(settings, job)
        else:
            run(engine, s3, settings, job, deadline)
    except FileRejected as exc:
        fail(engine, settings, row["id"], dataset, str(exc))


def load_from_message(message: dict[str, Any], settings: Settings, deadline: float | None = None) -> None:
    """An SQS worker's share: one chunk (or, for gzip, the stream from where it stopped)."""
    engine = get_engine(settings.database_url)
    ingestion_id = int(message["ingestion_id"])
    with engine.connect() as conn:
        row = ingestions.get(conn, ingestion_id)
    if row is None or row["status"] != "running":
        return
    job = job_from_row(row)
    s3 = s3objects.client()
    try:
        if job.gzip:
            run(engine, s3, settings, job, deadline)
            return
        chunk = job.plan[int(message["seq"])]
        load_chunk(engine, s3, settings, job, chunk)
        again = finalize(engine, settings, job)
        if again is not None:
            enqueue(settings, again)
    except FileRejected as exc:
        fail(engine, settings, ingestion_id, job.dataset, str(exc))


def retry(settings: Settings, ingestion_id: int) -> dict[str, Any]:
    """POST /ingestions/{id}/retry: a failed (or deleted) ingestion is loaded again from its object;
    a queued or running one resumes from its last committed chunk. Returns the ingestion's row.

    Without a queue the file is loaded before this returns; with one, its chunks are queued.
    """
    engine = get_engine(settings.database_url)
    row = _existing(engine, ingestion_id)
    if row["duplicate_of"] is not None:
        raise Conflict(f"Ingestion {ingestion_id} is a duplicate of ingestion {row['duplicate_of']}; "
                       "retry that one if it needs it.")
    if row["superseded_by"] is not None:
        raise Conflict(f"Ingestion {ingestion_id} was replaced by a newer version of its key "
                       f"(ingestion {row['superseded_by']}); there is nothing to retry.")
    if row["status"] == "done":
        raise Conflict(f"Ingestion {ingestion_id} is done; there is nothing to retry.")
    s3 = s3objects.client()
    try:
        obj = s3objects.head(s3, row["bucket"], row["key"])
    except s3objects.ObjectGone:
        raise Conflict(f"s3://{row['bucket']}/{row['key']} no longer exists; upload the file again.") from None
    if obj.etag != row["etag"]:
        raise Conflict(f"s3://{row['bucket']}/{row['key']} holds a newer version now, which has its own "
                       "ingestion; retry that one if it needs it.")
    if row["status"] in ("failed", "deleted"):
        with engine.begin() as conn:
            ingestions.reset(conn, ingestion_id, None)
            row = ingestions.get(conn, ingestion_id)
        notify.changed(engine, settings, ingestion_id, status_changed=True)
    start(engine, s3, settings, row, datasets.DATASETS.get(row["dataset"]), obj)
    return _existing(engine, ingestion_id)


def remove(settings: Settings, ingestion_id: int) -> dict[str, Any]:
    """DELETE /ingestions/{id}: take the ingestion's rows out of every table and rollup (stopping it
    first if it is loading) and mark it deleted; its result files go too. Idempotent."""
    engine = get_engine(settings.database_url)
    row = _existing(engine, ingestion_id)
    if row["status"] == "deleted":
        return row
    dataset = datasets.DATASETS.get(row["dataset"])
    with engine.begin() as conn:
        ingestions.fail(conn, ingestion_id, "Deleted while it was loading.")  # stops a loading one first
        row = _lock(conn, ingestion_id)
        if dataset is not None and row["rows_loaded"]:
            take_out(conn, dataset, ingestion_id)
        ingestions.update(conn, ingestion_id, status="deleted", finished_at=ingestions.utcnow())
        row = ingestions.get(conn, ingestion_id)
    _after_removal(engine, settings, [row])
    return row


def _existing(engine: Engine, ingestion_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        row = ingestions.get(conn, ingestion_id)
    if row is None:
        raise NotFound(f"Ingestion {ingestion_id} not found.")
    return row


# --- registering ------------------------------------------------------------------------------


def _prefix(key: str) -> str:
    return key.split("/", 1)[0][:32] if "/" in key else "(none)"


def register(engine: Engine, dataset: str, obj: ObjectInfo) -> tuple[dict[str, Any], bool]:
    """The ingestion of this exact object (bucket, key, ETag), created if new; (row, created).

    The same bytes put again under the same key after their ingestion failed or was deleted (a newer
    LastModified, so not a replayed event) make that ingestion new again.
    """
    with engine.begin() as conn:
        row = ingestions.find_object(conn, obj.bucket, obj.key, obj.etag)
        if row is None:
            ingestion_id = ingestions.create(conn, dataset, obj.bucket, obj.key, obj.etag, obj.size, obj.last_modified)
            return ingestions.get(conn, ingestion_id), True
        uploaded_again = obj.last_modified is not None and (
            row["last_modified"] is None or obj.last_modified > row["last_modified"]
        )
        if row["status"] in ("failed", "deleted") and uploaded_again:
            ingestions.reset(conn, row["id"], obj.last_modified)
            return ingestions.get(conn, row["id"]), True
        return row, False


# --- planning ---------------------------------------------------------------------------------


def prepare(
    engine: Engine, s3: Any, settings: Settings, row: dict[str, Any], dataset: ModuleType | None, obj: ObjectInfo
) -> Job | None:
    """Check the key and the first line, fix the chunk plan, and move the ingestion to running;
    None if these bytes are already loaded (the ingestion is then done as a `duplicate_of`).

    The key is checked before anything else, and the duplicate check and the move to running
    happen in one transaction, one registration per content at a time: of two identical uploads
    at once, exactly one loads.
    """
    if row["header"]:
        return job_from_row(row)
    check_key(dataset, obj)
    gz = obj.key.lower().endswith(".gz")
    with _attempt(engine, settings, row["id"], "plan", 0, "Reading the file's first line"):
        first = header_fields(read_first_line(s3, obj, gz))
    if dataset.HAS_HEADER:
        header, skip_header = first, True
    else:  # headerless: the columns in COLUMNS order; a first line naming them is skipped
        header, skip_header = list(dataset.COLUMNS), names_columns(dataset, first)
    columns = column_names(dataset, header)
    plan = {
        "columns": columns, "header": header, "gzip": gz, "chunk_bytes": settings.chunk_bytes,
        "skip_header": skip_header,
    }
    total = None if gz else len(chunks.plan(obj.size, settings.chunk_bytes))
    with engine.begin() as conn:
        if is_postgres(conn):
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:etag))"), {"etag": obj.etag})
        original = ingestions.find_original(conn, dataset.PREFIX, obj.etag, obj.size, row["id"])
        if original is not None:
            now = ingestions.utcnow()
            ingestions.update(conn, row["id"], status="done", duplicate_of=original, started_at=now, finished_at=now)
        else:
            dataset.context(conn, settings)
            ingestions.start(conn, row["id"], plan, total)
        row = ingestions.get(conn, row["id"])
    notify.changed(engine, settings, row["id"], status_changed=True)
    return None if original is not None else job_from_row(row)


def check_key(dataset: ModuleType | None, obj: ObjectInfo) -> None:
    """The key must name a dataset's folder and a CSV file, and the object must hold bytes."""
    if dataset is None:
        raise FileRejected(
            f"No dataset matches the key {obj.key!r}: the first folder must be one of "
            f"{', '.join(n + '/' for n in datasets.names())} (for example trips/2018-05.csv)."
        )
    if not obj.key.lower().endswith(SUFFIXES):
        raise FileRejected(f"{obj.key!r} is not a CSV file: sluice ingests keys ending in .csv or .csv.gz.")
    if obj.size == 0:
        raise FileRejected("The file is empty.")


def job_from_row(row: dict[str, Any]) -> Job:
    plan = json.loads(row["header"])
    obj = ObjectInfo(row["bucket"], row["key"], int(row["bytes_total"]), row["etag"])
    dataset = datasets.DATASETS[row["dataset"]]
    parities = plan.get("parities")
    return Job(
        row["id"], dataset, obj, plan["columns"], plan["gzip"], plan["chunk_bytes"],
        plan.get("skip_header", dataset.HAS_HEADER), tuple(parities) if parities else None,
    )


def read_first_line(s3: Any, obj: ObjectInfo, gz: bool) -> str:
    """The file's first line, with clear errors for files that are not CSV text."""
    sample = s3objects.read_range(s3, obj, 0, min(obj.size, HEADER_SAMPLE_BYTES))
    if gz:
        try:
            sample = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(sample, HEADER_SAMPLE_BYTES)
        except zlib.error:
            raise FileRejected(chunks.TRUNCATED) from None
    sample = sample[len(chunks.BOM):] if sample.startswith(chunks.BOM) else sample
    if b"\x00" in sample:
        raise FileRejected("The file is not CSV text: it holds binary data.")
    if b"\r" in sample.rstrip(b"\r") and b"\n" not in sample:
        raise FileRejected(
            "The file's lines end in a carriage return alone (old Mac line endings); save it with LF "
            "or CRLF line endings and upload it again."
        )
    line = sample.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise FileRejected(
            "The file is not UTF-8 text; save it as UTF-8 (with or without a BOM) and upload it again."
        ) from None
    if not text.strip():
        raise FileRejected("The first line is empty; it must be the header naming the columns.")
    return text


def header_fields(text: str) -> list[str]:
    try:
        return [name.strip() for name in next(csv.reader([text]))]
    except csv.Error as exc:
        raise FileRejected(f"The first line could not be read as CSV ({exc}).") from None


def names_columns(dataset: ModuleType, fields: list[str]) -> bool:
    """True if a headerless file's first line names the dataset's columns (a header to skip)."""
    names = [f.strip().lower() for f in fields]
    return len(names) == len(dataset.COLUMNS) and all(
        name in (column, *aliases) for name, (column, aliases) in zip(names, dataset.COLUMNS.items(), strict=True)
    )


def column_names(dataset: ModuleType, header: list[str]) -> list[str]:
    """Names for the file's fields in file order: the dataset's names where the header matches."""
    aliases = {alias: name for name, names in dataset.COLUMNS.items() for alias in names}
    names: list[str] = []
    for i, raw in enumerate(header):
        name = aliases.get(raw.strip().lower())
        names.append(name if name and name not in names else f"_extra_{i}")
    missing = [name for name in dataset.COLUMNS if name not in names]
    if missing:
        expected = ", ".join(
            name if len(alts) == 1 else f"{name} (or {', '.join(alts[1:])})" for name, alts in dataset.COLUMNS.items()
        )
        raise FileRejected(
            f"The header has no {', '.join(missing)} column{'s' if len(missing) > 1 else ''}. "
            f"A {dataset.PREFIX} file's first line must name the columns {expected}; "
            f"this one says: {', '.join(header)[:200]}."
        )
    return names


# --- loading ----------------------------------------------------------------------------------


class GaveUp(FileRejected):
    """A chunk or finishing step failed MAX_ATTEMPTS times: the file fails as a whole."""


def run(engine: Engine, s3: Any, settings: Settings, job: Job, deadline: float | None) -> None:
    """Load every chunk not yet committed, then finish; stop early (resumably) at the deadline.

    The deadline only applies with a queue to continue on: without one, the file is loaded whole,
    and a chunk that fails is tried again here (up to MAX_ATTEMPTS, counted in the database).
    """
    if not settings.ingest_queue_url:
        deadline = None
    if job.gzip:
        if not _retrying(settings, lambda: _run_gzip(engine, s3, settings, job, deadline)):
            return
    else:
        with engine.connect() as conn:
            done = ingestions.done_chunks(conn, job.ingestion_id)
        todo = [c for c in job.plan if c.seq not in done]

        def load(chunk: chunks.Chunk) -> bool:
            return _retrying(settings, lambda: load_chunk(engine, s3, settings, job, chunk))

        workers = min(settings.ingest_workers, len(todo))
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(load, todo))
        else:
            for chunk in todo:
                load(chunk)
    again = finalize(engine, settings, job)
    if again is not None:
        _continue(engine, s3, settings, again, deadline)


def _continue(engine: Engine, s3: Any, settings: Settings, job: Job, deadline: float | None) -> None:
    """Load a file again from its first chunk (see `finalize`): on the queue, or right here."""
    if settings.ingest_queue_url:
        enqueue(settings, job)
    else:
        run(engine, s3, settings, job, deadline)


def _retrying(settings: Settings, call: Any) -> Any:
    """`call()`, tried again after an error that may pass, when no queue would redeliver the work.

    With a queue the error propagates and SQS redelivers the message. Either way the attempts are
    counted in the database (`_attempt`), which turns the last one into GaveUp, a file failure.
    """
    while True:
        try:
            return call()
        except (FileRejected, ingestions.IngestionStopped):
            raise
        except Exception:
            if settings.ingest_queue_url:
                raise
            log.warning("an attempt failed; trying again", exc_info=True)
            time.sleep(0.2)


@contextmanager
def _attempt(engine: Engine, settings: Settings, ingestion_id: int, kind: str, seq: int, what: str) -> Iterator[None]:
    """One counted attempt at a chunk or step; past MAX_ATTEMPTS, GaveUp says why the file fails."""
    with engine.begin() as conn:
        tries, last_error = ingestions.count_attempt(conn, ingestion_id, kind, seq)
    if tries > settings.max_attempts:
        raise GaveUp(
            f"{what} failed {tries - 1} times, so the file cannot load "
            f"({last_error or 'the worker stopped without reporting an error'}). Nothing from this file "
            "was kept; correct the data there and upload the file again, or retry it once the cause is fixed."
        )
    try:
        yield
    except (FileRejected, ingestions.IngestionStopped):
        raise
    except Exception as exc:
        summary = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
        with engine.begin() as conn:
            ingestions.record_attempt_error(conn, ingestion_id, kind, seq, summary)
        raise


def _run_gzip(engine: Engine, s3: Any, settings: Settings, job: Job, deadline: float | None) -> bool:
    """Stream a gzip object block by block; False if stopped by the deadline (to be continued).

    The blocks come in order, so whether each starts inside a quoted field is known as it comes.
    """
    with engine.connect() as conn:
        done = ingestions.chunk_quotes(conn, job.ingestion_id)
    stream = s3objects.open_stream(s3, job.obj)
    last, loaded, quotes = -1, 0, 0
    for chunk, data in chunks.gzip_blocks(stream, job.chunk_bytes, max_line_bytes=settings.max_line_bytes):
        last = chunk.seq
        if chunk.seq not in done:
            if loaded and deadline is not None and time.time() > deadline:  # always make some progress
                stream.close()
                enqueue(settings, job)
                return False
            loaded += load_chunk(engine, s3, settings, job, chunk, data, start_quoted=quotes % 2 == 1)
            with engine.connect() as conn:
                done.update(ingestions.chunk_quotes(conn, job.ingestion_id, chunk.seq))
        quotes += done.get(chunk.seq, 0)
    with engine.begin() as conn:
        ingestions.update(conn, job.ingestion_id, chunks_total=last + 1)
    return True


def load_chunk(
    engine: Engine, s3: Any, settings: Settings, job: Job, chunk: chunks.Chunk, data: bytes | None = None,
    start_quoted: bool | None = None,
) -> bool:
    """Parse and commit one chunk with its marker and counters; False if it was already committed."""
    what = f"Chunk {chunk.seq} (bytes {chunk.start:,} to {chunk.end:,})"
    with _attempt(engine, settings, job.ingestion_id, "chunk", chunk.seq, what):
        if data is None:
            read = lambda a, b: s3objects.read_range(s3, job.obj, a, b)  # noqa: E731
            data = chunks.read_lines(read, chunk, job.obj.size, max_line_bytes=settings.max_line_bytes)
        if start_quoted is None:
            start_quoted = job.start_quoted(chunk.seq)
        block = csvblock.parse(data, job.columns, skip_header=chunk.seq == 0 and job.skip_header,
                               start_quoted=start_quoted, max_line_bytes=settings.max_line_bytes)
        del data  # memory: from here on only the parsed columns are needed
        try:
            if not _commit_chunk(engine, settings, job, chunk, block):
                return False
        finally:
            csvblock.release_memory()
    notify.changed(engine, settings, job.ingestion_id, status_changed=False)
    return True


def _commit_chunk(engine: Engine, settings: Settings, job: Job, chunk: chunks.Chunk, block: csvblock.Block) -> bool:
    """The chunk's one transaction: marker, parse, load, counters. False if it was already committed."""
    try:
        with engine.begin() as conn:
            ingestions.claim_chunk(conn, job.ingestion_id, chunk.seq, chunk.start, chunk.end)
            ctx = job.dataset.context(conn, settings)
            parsed = job.dataset.parse(block, ctx, settings.max_errors_kept)
            line_count, block_rejects, block_rejected, quotes = block.line_count, block.rejects, block.rejected, block.quotes
            del block  # memory: free the raw text columns before the bulk load
            loaded = job.dataset.load(conn, parsed.table, job.ingestion_id)
            ingestions.complete_chunk(
                conn, job.ingestion_id, chunk.seq, line_count, loaded, sorted(block_rejects + parsed.rejects),
                parsed.rejected + block_rejected, settings.max_errors_kept,
                duplicates=parsed.table.num_rows - loaded, quotes=quotes,
            )
    except IntegrityError:
        with engine.connect() as conn:
            if not ingestions.chunk_committed(conn, job.ingestion_id, chunk.seq):
                raise  # not the marker: a real error, counted as a failed attempt
        log.info("chunk %s of ingestion %s was already committed", chunk.seq, job.ingestion_id)
        return False
    except ingestions.IngestionStopped:
        log.info("ingestion %s stopped; chunk %s rolled back", job.ingestion_id, chunk.seq)
        return False
    return True


# --- finishing --------------------------------------------------------------------------------


def finalize(engine: Engine, settings: Settings, job: Job) -> Job | None:
    """When every chunk is in: check the quote parities, apply the reject rule, run the dataset's
    finishing steps (in parallel, each once), then its finishing step and mark the ingestion done,
    under a row lock.

    Range chunks are first loaded as if each started outside quotes. If the quotes of the chunks
    before one say it starts inside a quoted field (a field spanning lines across its boundary),
    the file's rows are taken out and the job comes back with the true parities, to load again:
    rare, and the only way any split of a file gives the same rows.
    """
    with engine.begin() as conn:
        row = _lock(conn, job.ingestion_id)
        if row["status"] != "running" or row["chunks_total"] is None:
            return None
        if len(ingestions.done_chunks(conn, job.ingestion_id)) < row["chunks_total"]:
            return None
        if not job.gzip:
            parities = ingestions.start_parities(conn, job.ingestion_id)
            if parities != [job.start_quoted(seq) for seq in range(len(parities))]:
                job.dataset.discard(conn, job.ingestion_id, ())
                plan = {**json.loads(row["header"]), "parities": parities}
                ingestions.reset_chunks(conn, job.ingestion_id, plan)
                log.info("ingestion %s: a quoted field spans a chunk boundary; loading again", job.ingestion_id)
                return replace(job, parities=tuple(parities))
        problem = _file_problem(row, settings.max_reject_share)
        if problem:
            ingestions.fail(conn, job.ingestion_id, problem)
            take_out(conn, job.dataset, job.ingestion_id)
    if not problem:
        if not _run_steps(engine, settings, job):
            return None
        with _attempt(engine, settings, job.ingestion_id, "finish", 0, "Finishing the file"), engine.begin() as conn:
            _lock_key(conn, job.obj)
            row = _lock(conn, job.ingestion_id)
            steps = len(ingestions.done_steps(conn, job.ingestion_id))
            if row["status"] != "running" or steps < job.dataset.FINISH_STEPS:
                return None
            job.dataset.finish(conn, row, settings)
            ingestions.finish(conn, job.ingestion_id)
            replaced = settle_versions(conn, job.obj.bucket, job.obj.key)
        _after_removal(engine, settings, replaced)
    notify.changed(engine, settings, job.ingestion_id, status_changed=True)
    return None


def _lock_key(conn: Any, obj: ObjectInfo) -> None:
    """Versions of one key settle one at a time (PostgreSQL; SQLite has one writer anyway)."""
    if is_postgres(conn):
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"{obj.bucket}/{obj.key}"})


def settle_versions(conn: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    """A key names one file: the newest done version keeps its rows; each older version in force is
    taken out of every table (a loading one is stopped first) and marked superseded_by the newest.
    A version newer than the newest done one is left to load (it settles the key when it is done).
    Returns the rows of the versions taken out."""
    versions = ingestions.versions(conn, bucket, key)
    done = [i for i, v in enumerate(versions) if v["status"] == "done"]
    if not done:
        return []
    newest = versions[done[-1]]
    replaced = []
    for version in versions[: done[-1]]:
        sentence = f"A newer version of this key (ingestion {newest['id']}) replaced this one."
        if version["status"] in ("queued", "running"):
            ingestions.fail(conn, version["id"], sentence)
        dataset = datasets.DATASETS.get(version["dataset"])
        if dataset is not None and version["status"] != "failed":
            take_out(conn, dataset, version["id"])
        ingestions.update(conn, version["id"], superseded_by=newest["id"])
        replaced.append(ingestions.get(conn, version["id"]))
    return replaced


def _after_removal(engine: Engine, settings: Settings, rows: list[dict[str, Any]]) -> None:
    """Once ingestions were taken out (committed): delete their result files and tell watchers."""
    for row in rows:
        remove_results(settings, row)
        notify.changed(engine, settings, row["id"], status_changed=True)


def _run_steps(engine: Engine, settings: Settings, job: Job) -> bool:
    """Run the finishing steps not yet committed, in parallel; False if the ingestion stopped."""
    with engine.connect() as conn:
        done = ingestions.done_steps(conn, job.ingestion_id)
    todo = [step for step in range(job.dataset.FINISH_STEPS) if step not in done]

    def run_step(step: int) -> bool:
        try:
            with _attempt(engine, settings, job.ingestion_id, "step", step, f"Finishing step {step}"):
                with engine.begin() as conn:
                    ingestions.claim_step(conn, job.ingestion_id, step)
                    job.dataset.finish_step(conn, job.ingestion_id, step, job.dataset.FINISH_STEPS)
        except IntegrityError:
            log.info("finishing step %s of ingestion %s was already committed", step, job.ingestion_id)
        except ingestions.IngestionStopped:
            log.info("ingestion %s stopped; finishing step %s rolled back", job.ingestion_id, step)
            return False
        return True

    workers = max(1, min(settings.ingest_workers, len(todo)))
    with ThreadPoolExecutor(workers) as pool:
        return all(list(pool.map(lambda step: _retrying(settings, lambda: run_step(step)), todo)))


def _lock(conn: Any, ingestion_id: int) -> dict[str, Any]:
    query = sa.select(ingestions.ingestions).where(ingestions.ingestions.c.id == ingestion_id)
    if is_postgres(conn):
        query = query.with_for_update()
    return dict(conn.execute(query).mappings().one())


def _file_problem(row: dict[str, Any], max_share: float) -> str | None:
    loaded, rejected = int(row["rows_loaded"]) + int(row["rows_duplicate"]), int(row["rows_rejected"])
    total = loaded + rejected
    if total == 0:
        return "The file has no data rows."
    if rejected > max_share * total:
        return (
            f"{rejected} of {total} rows ({rejected / total:.0%}) were rejected, more than the "
            f"{max_share:.0%} allowed (MAX_REJECT_SHARE), so nothing from this file was kept; "
            "see 'errors' for the first bad lines, fix them and upload the file again."
        )
    return None


def fail(engine: Engine, settings: Settings, ingestion_id: int, dataset: ModuleType | None, message: str) -> None:
    """Fail an ingestion as a whole: its rows come back out, the reason is recorded.

    The status changes first: that locks the ingestion row, so a chunk committing in parallel
    either landed before (and is discarded here) or sees the failure and rolls back.
    """
    with engine.begin() as conn:
        changed = ingestions.fail(conn, ingestion_id, message)
        if changed and dataset is not None:
            take_out(conn, dataset, ingestion_id)
        row = ingestions.get(conn, ingestion_id)
    if changed:
        _after_removal(engine, settings, [row])


def take_out(conn: Any, dataset: ModuleType, ingestion_id: int) -> None:
    """Take an ingestion's rows out of every table and rollup, and say so in its counts."""
    dataset.discard(conn, ingestion_id, ingestions.done_steps(conn, ingestion_id))
    ingestions.mark_removed(conn, ingestion_id)


def remove_results(settings: Settings, row: dict[str, Any]) -> None:
    """Delete the result files of an ingestion taken back out (best effort: logged, never raised)."""
    if row["dataset"] not in datasets.DATASETS:
        return
    try:
        bucket = results.bucket_for(settings, row["bucket"])
        results.delete_prefix(results.client(), bucket, results.prefix(row["dataset"], row["id"]))
    except Exception:  # noqa: BLE001 - a leftover file is logged, and the ingestion's state stands
        log.exception("could not delete the result files of ingestion %s", row["id"])


# --- fan-out ----------------------------------------------------------------------------------


def enqueue(settings: Settings, job: Job) -> None:
    """Hand the chunks (or the gzip stream) of a job to the SQS workers."""
    import boto3

    if job.gzip:
        bodies = [{"ingestion_id": job.ingestion_id, "gzip": True}]
    else:
        bodies = [{"ingestion_id": job.ingestion_id, "seq": c.seq} for c in job.plan]
    sqs = boto3.client("sqs")
    for i in range(0, len(bodies), 10):
        entries = [{"Id": str(n), "MessageBody": json.dumps(b)} for n, b in enumerate(bodies[i : i + 10])]
        sqs.send_message_batch(QueueUrl=settings.ingest_queue_url, Entries=entries)


def deadline_from(context: Any, margin_seconds: float = 60.0) -> float | None:
    """The wall-clock time to stop starting new work, from a Lambda context (None without one).

    The margin leaves time for the chunk in flight: 60 s, or a quarter of a shorter budget.
    """
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    seconds = remaining() / 1000.0
    return time.time() + seconds - min(margin_seconds, seconds / 4)
