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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from chalicelib import chunks, csvblock, datasets, ingestions, logs, notify, s3objects
from chalicelib.db import get_engine, is_postgres
from chalicelib.errors import FileRejected, UnknownIngestion
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

    @property
    def plan(self) -> list[chunks.Chunk]:
        return chunks.plan(self.obj.size, self.chunk_bytes)


# --- entry points -----------------------------------------------------------------------------


def ingest_object(bucket: str, key: str, settings: Settings, deadline: float | None = None) -> int | None:
    """Handle one S3 ObjectCreated event; return the ingestion id (None if the object is gone).

    Without a queue the whole file is loaded before this returns; with INGEST_QUEUE_URL the chunks
    are handed to SQS workers (`load_from_message`).
    """
    engine = get_engine(settings.database_url)
    s3 = s3objects.client()
    try:
        obj = s3objects.head(s3, bucket, key)
    except s3objects.ObjectGone:
        log.warning("s3://%s/%s is gone; nothing to ingest", bucket, key)
        return None
    dataset = datasets.for_key(key)
    row, created = register(engine, dataset.PREFIX if dataset else _prefix(key), obj)
    logs.bind(ingestion_id=row["id"])  # on every later log line of this invocation
    if created:
        notify.changed(engine, settings, row["id"], status_changed=True)
    if row["status"] in ("done", "failed"):
        return row["id"]
    try:
        job = prepare(engine, s3, settings, row, dataset, obj)
        if settings.ingest_queue_url:
            enqueue(settings, job)
        else:
            run(engine, s3, settings, job, deadline)
    except FileRejected as exc:
        fail(engine, settings, row["id"], dataset, str(exc))
    return row["id"]


def load_from_message(message: dict[str, Any], settings: Settings, deadline: float | None = None) -> None:
    """An SQS worker's share: one chunk (or, for gzip, the stream from where it stopped)."""
    engine = get_engine(settings.database_url)
    ingestion_id = int(message["ingestion_id"])
    with engine.connect() as conn:
        row = ingestions.get(conn, ingestion_id)
    if row is None:
        # Another stage's message, or a database restored to before the ingestion: never drop it
        # silently. Raising leaves it to SQS, which moves it to the dead-letter queue after
        # maxReceiveCount deliveries.
        log.error("chunk message for ingestion %s, which stage %s does not know: left for the dead-letter "
                  "queue", ingestion_id, settings.stage, extra={"ingestion_id": ingestion_id})
        raise UnknownIngestion(f"Ingestion {ingestion_id} does not exist in stage {settings.stage}'s database.")
    if row["status"] != "running":
        return
    job = job_from_row(row)
    s3 = s3objects.client()
    try:
        if job.gzip:
            run(engine, s3, settings, job, deadline)
            return
        chunk = job.plan[int(message["seq"])]
        load_chunk(engine, s3, settings, job, chunk)
        finalize(engine, settings, job)
    except FileRejected as exc:
        fail(engine, settings, ingestion_id, job.dataset, str(exc))


# --- registering ------------------------------------------------------------------------------


def _prefix(key: str) -> str:
    return key.split("/", 1)[0][:32] if "/" in key else "(none)"


def register(engine: Engine, dataset: str, obj: ObjectInfo) -> tuple[dict[str, Any], bool]:
    """The ingestion of this exact object, created if new; (row, created)."""
    with engine.begin() as conn:
        if is_postgres(conn):  # one registration per content at a time, so duplicates are seen
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:etag))"), {"etag": obj.etag})
        row = ingestions.find_object(conn, obj.bucket, obj.key, obj.etag)
        if row is not None:
            return row, False
        ingestion_id = ingestions.create(conn, dataset, obj.bucket, obj.key, obj.etag, obj.size)
        first = ingestions.find_same_content(conn, obj.etag, obj.size, ingestion_id)
        if first is not None:
            now = ingestions.utcnow()
            ingestions.update(
                conn, ingestion_id, status="done", duplicate_of=first, started_at=now, finished_at=now
            )
        return ingestions.get(conn, ingestion_id), True


# --- planning ---------------------------------------------------------------------------------


def prepare(
    engine: Engine, s3: Any, settings: Settings, row: dict[str, Any], dataset: ModuleType | None, obj: ObjectInfo
) -> Job:
    """Check the key and the header, fix the chunk plan, and move the ingestion to running."""
    if row["header"]:
        return job_from_row(row)
    if dataset is None:
        raise FileRejected(
            f"No dataset matches the key {obj.key!r}: the first folder must be one of "
            f"{', '.join(n + '/' for n in datasets.names())} (for example trips/2018-05.csv)."
        )
    if not obj.key.lower().endswith(SUFFIXES):
        raise FileRejected(f"{obj.key!r} is not a CSV file: sluice ingests keys ending in .csv or .csv.gz.")
    if obj.size == 0:
        raise FileRejected("The file is empty.")
    gz = obj.key.lower().endswith(".gz")
    header = read_header(s3, obj, gz) if dataset.HAS_HEADER else list(dataset.COLUMNS)
    columns = column_names(dataset, header)
    plan = {"columns": columns, "header": header, "gzip": gz, "chunk_bytes": settings.chunk_bytes}
    total = None if gz else len(chunks.plan(obj.size, settings.chunk_bytes))
    with engine.begin() as conn:
        dataset.context(conn, settings)
        ingestions.start(conn, row["id"], plan, total)
        row = ingestions.get(conn, row["id"])
    notify.changed(engine, settings, row["id"], status_changed=True)
    return job_from_row(row)


def job_from_row(row: dict[str, Any]) -> Job:
    plan = json.loads(row["header"])
    obj = ObjectInfo(row["bucket"], row["key"], int(row["bytes_total"]), row["etag"])
    return Job(row["id"], datasets.DATASETS[row["dataset"]], obj, plan["columns"], plan["gzip"], plan["chunk_bytes"])


def read_header(s3: Any, obj: ObjectInfo, gz: bool) -> list[str]:
    """The field names on the first line, with clear errors for files that are not CSV text."""
    sample = s3objects.read_range(s3, obj, 0, min(obj.size, HEADER_SAMPLE_BYTES))
    if gz:
        try:
            sample = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(sample, HEADER_SAMPLE_BYTES)
        except zlib.error:
            raise FileRejected("The file ends in .gz but is not valid gzip data.") from None
    sample = sample[len(chunks.BOM):] if sample.startswith(chunks.BOM) else sample
    if b"\x00" in sample:
        raise FileRejected("The file is not CSV text: it holds binary data.")
    line = sample.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise FileRejected(
            "The file is not UTF-8 text; save it as UTF-8 (with or without a BOM) and upload it again."
        ) from None
    if not text.strip():
        raise FileRejected("The first line is empty; it must be the header naming the columns.")
    return [name.strip() for name in next(csv.reader([text]))]


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


def run(engine: Engine, s3: Any, settings: Settings, job: Job, deadline: float | None) -> None:
    """Load every chunk not yet committed, then finish; stop early (resumably) at the deadline.

    The deadline only applies with a queue to continue on: without one, the file is loaded whole.
    """
    if not settings.ingest_queue_url:
        deadline = None
    if job.gzip:
        if not _run_gzip(engine, s3, settings, job, deadline):
            return
    else:
        with engine.connect() as conn:
            done = ingestions.done_chunks(conn, job.ingestion_id)
        todo = [c for c in job.plan if c.seq not in done]
        workers = min(settings.ingest_workers, len(todo))
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda c: load_chunk(engine, s3, settings, job, c), todo))
        else:
            for chunk in todo:
                load_chunk(engine, s3, settings, job, chunk)
    finalize(engine, settings, job)


def _run_gzip(engine: Engine, s3: Any, settings: Settings, job: Job, deadline: float | None) -> bool:
    """Stream a gzip object block by block; False if stopped by the deadline (to be continued)."""
    with engine.connect() as conn:
        done = ingestions.done_chunks(conn, job.ingestion_id)
    stream = s3objects.open_stream(s3, job.obj)
    last, loaded = -1, 0
    for chunk, data in chunks.gzip_blocks(stream, job.chunk_bytes):
        last = chunk.seq
        if chunk.seq in done:
            continue
        if loaded and deadline is not None and time.time() > deadline:  # always make some progress
            stream.close()
            enqueue(settings, job)
            return False
        loaded += load_chunk(engine, s3, settings, job, chunk, data)
    with engine.begin() as conn:
        ingestions.update(conn, job.ingestion_id, chunks_total=last + 1)
    return True


def load_chunk(
    engine: Engine, s3: Any, settings: Settings, job: Job, chunk: chunks.Chunk, data: bytes | None = None
) -> bool:
    """Parse and commit one chunk with its marker and counters; False if it was already committed."""
    if data is None:
        data = chunks.read_lines(lambda a, b: s3objects.read_range(s3, job.obj, a, b), chunk, job.obj.size)
    block = csvblock.parse(data, job.columns, skip_header=chunk.seq == 0 and job.dataset.HAS_HEADER)
    del data  # memory: from here on only the parsed columns are needed
    try:
        with engine.begin() as conn:
            ingestions.claim_chunk(conn, job.ingestion_id, chunk.seq, chunk.start, chunk.end)
            ctx = job.dataset.context(conn, settings)
            parsed = job.dataset.parse(block, ctx, settings.max_errors_kept)
            line_count, block_rejects = block.line_count, block.rejects
            del block  # memory: free the raw text columns before the bulk load
            loaded = job.dataset.load(conn, parsed.table, job.ingestion_id)
            rejects = sorted(block_rejects + parsed.rejects)
            ingestions.complete_chunk(
                conn, job.ingestion_id, chunk.seq, line_count, loaded, rejects,
                parsed.rejected + len(block_rejects), settings.max_errors_kept,
            )
    except IntegrityError:
        log.info("chunk %s of ingestion %s was already committed", chunk.seq, job.ingestion_id)
        return False
    except ingestions.IngestionStopped:
        log.info("ingestion %s stopped; chunk %s rolled back", job.ingestion_id, chunk.seq)
        return False
    finally:
        csvblock.release_memory()
    notify.changed(engine, settings, job.ingestion_id, status_changed=False)
    return True


# --- finishing --------------------------------------------------------------------------------


def finalize(engine: Engine, settings: Settings, job: Job) -> None:
    """When every chunk is in: apply the reject rule, run the dataset's finishing steps (in parallel,
    each once), then its finishing step and mark the ingestion done, under a row lock."""
    with engine.begin() as conn:
        row = _lock(conn, job.ingestion_id)
        if row["status"] != "running" or row["chunks_total"] is None:
            return
        if len(ingestions.done_chunks(conn, job.ingestion_id)) < row["chunks_total"]:
            return
        problem = _file_problem(row, settings.max_reject_share)
        if problem:
            ingestions.fail(conn, job.ingestion_id, problem)
            job.dataset.discard(conn, job.ingestion_id, ingestions.done_steps(conn, job.ingestion_id))
    if not problem:
        if not _run_steps(engine, settings, job):
            return
        with engine.begin() as conn:
            row = _lock(conn, job.ingestion_id)
            steps = len(ingestions.done_steps(conn, job.ingestion_id))
            if row["status"] != "running" or steps < job.dataset.FINISH_STEPS:
                return
            job.dataset.finish(conn, row, settings)
            ingestions.finish(conn, job.ingestion_id)
    notify.changed(engine, settings, job.ingestion_id, status_changed=True)


def _run_steps(engine: Engine, settings: Settings, job: Job) -> bool:
    """Run the finishing steps not yet committed, in parallel; False if the ingestion stopped."""
    with engine.connect() as conn:
        done = ingestions.done_steps(conn, job.ingestion_id)
    todo = [step for step in range(job.dataset.FINISH_STEPS) if step not in done]

    def run_step(step: int) -> bool:
        try:
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
        return all(list(pool.map(run_step, todo)))


def _lock(conn: Any, ingestion_id: int) -> dict[str, Any]:
    query = sa.select(ingestions.ingestions).where(ingestions.ingestions.c.id == ingestion_id)
    if is_postgres(conn):
        query = query.with_for_update()
    return dict(conn.execute(query).mappings().one())


def _file_problem(row: dict[str, Any], max_share: float) -> str | None:
    loaded, rejected = int(row["rows_loaded"]), int(row["rows_rejected"])
    total = loaded + rejected
    if total == 0:
        return "The file has a header but no data rows."
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
            dataset.discard(conn, ingestion_id, ingestions.done_steps(conn, ingestion_id))
    if changed:
        notify.changed(engine, settings, ingestion_id, status_changed=True)


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
