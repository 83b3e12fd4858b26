"""The plays dataset: play logs (`Song,Date,Number of Plays`) summed per song and date.

A music-royalties team uploads logs of a terabyte a month under `plays/` and needs, per file, the
total plays of each song on each date, as CSV part files of at most PLAYS_PART_BYTES in S3; and the
totals of every done upload together (`GET /plays/totals`).

What is stored, and why (a terabyte a month of raw rows would be most of the database, and no
question asks for them):
- staging, `play_stage_<ingestion id>_<step>`: each chunk's rows summed per (song, date) in Arrow and
  bulk-loaded in the chunk's transaction, into the table of the finishing step that will sum the
  song. The database's work per chunk is its distinct (song, date) pairs, a plain append to a table
  with no index, so parallel chunks never wait on each other. Each step drops its table once summed.
- `play_file_totals`: the file's totals per (song, date), computed by the finishing steps from the
  staging rows (a song's rows may be anywhere in the file). Kept while the file counts: the
  result files are streamed from it in (song, date) order, and taking the file back out subtracts
  exactly these rows from the rollup.
- `play_totals`: the rollup over every done upload, per (song, date): plays and the number of files
  that hold the pair. It changes in the transaction that marks a file done, so it always equals the
  sum of the done files' totals.
- `play_files` and `play_result_files`: per done file, its summary and its part files (key, bytes,
  rows), written in that same transaction; GET /plays/results reads them, not S3.

Song names are kept byte for byte (no trimming or case folding); they compare and sort by their
UTF-8 bytes on both databases (collation "C" on PostgreSQL), the order of the result files.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from chalicelib import ingestions, results
from chalicelib.csvblock import Block
from chalicelib.datasets import checks
from chalicelib.datasets.base import Parsed
from chalicelib.db import bulk_insert, is_postgres, metadata, upsert
from chalicelib.errors import BadRequest, NotFound, TooEarly, Unprocessable

log = logging.getLogger("sluice.plays")

PREFIX = "plays"
HAS_HEADER = True
#: Each column's name is its header (matched in any case); `number_of_plays` is accepted too.
COLUMNS: dict[str, tuple[str, ...]] = {
    "song": ("song",),
    "date": ("date",),
    "number of plays": ("number of plays", "number_of_plays"),
}
#: How the columns are named in sentences (as the files' header names them).
SHOWN = {"song": "Song", "date": "Date", "number of plays": "Number of Plays"}

#: Longest song name, in characters. At 4 UTF-8 bytes each that is 2,000 bytes, within what a
#: PostgreSQL B-tree entry may hold (about 2,700), so every name fits the primary keys.
SONG_CHARS = 500
#: Most plays one row may count. A billion plays of one song on one day in one log is far beyond any
#: real count, and with it no file of fewer than nine billion rows can overflow a 64-bit total.
MAX_PLAYS = 1_000_000_000
#: The result files' header and line ending.
RESULT_HEADER = b"Song,Date,Total Plays\n"
#: Smallest accepted PLAYS_PART_BYTES: the header and the longest possible row (a 500-character name
#: of 4-byte characters, quoted, a date and a 19-digit total: 2,056 bytes) always fit one part.
MIN_PART_BYTES = 4096
#: Rows fetched from the database per batch while writing result files (the server-side cursor).
RESULT_BATCH_ROWS = 20_000

#: Song text compares by its UTF-8 bytes everywhere: SQLite's default, collation "C" on PostgreSQL.
_SONG = sa.String(SONG_CHARS).with_variant(sa.String(SONG_CHARS, collation="C"), "postgresql")

#: Staging tables are made per file and finishing step (see `stage_table`); their name starts so.
STAGE_PREFIX = "play_stage_"
_STAGE_NAME = re.compile(rf"^{STAGE_PREFIX}(\d+)_(\d+)$")
#: Advisory lock namespace of staging table creation (any constant int4 unique to this use): "play".
STAGE_LOCK = 0x706C_6179


def stage_table(ingestion_id: int, step: int) -> sa.Table:
    """The staging table of one file's finishing step: its chunks' sums of the step's songs.

    One table per file and step, with no index, so a chunk appends without index work and a step
    drops its table when it has summed it (deleting the rows of a 1.1 GB file cost 4.6 CPU-seconds,
    and an index on (ingestion, step) doubled the cost of every chunk's insert).
    """
    return sa.Table(
        f"{STAGE_PREFIX}{int(ingestion_id)}_{int(step)}", sa.MetaData(),
        sa.Column("song", _SONG, nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("plays", sa.BigInteger, nullable=False),
    )


file_totals = sa.Table(
    "play_file_totals",
    metadata,
    sa.Column("ingestion_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("song", _SONG, primary_key=True),
    sa.Column("date", sa.Date, primary_key=True),
    sa.Column("plays", sa.BigInteger, nullable=False),
    sa.Column("part", sa.SmallInteger, nullable=False),  # the finishing step that summed the row
)
totals = sa.Table(
    "play_totals",
    metadata,
    sa.Column("song", _SONG, primary_key=True),
    sa.Column("date", sa.Date, primary_key=True),
    sa.Column("plays", sa.BigInteger, nullable=False),
    sa.Column("files", sa.Integer, nullable=False),
)
files = sa.Table(
    "play_files",
    metadata,
    sa.Column("ingestion_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("songs", sa.BigInteger, nullable=False),
    sa.Column("dates", sa.Integer, nullable=False),
    sa.Column("total_plays", sa.BigInteger, nullable=False),
    sa.Column("part_bytes", sa.BigInteger, nullable=False),
    sa.Column("bucket", sa.String(255), nullable=False),
    sa.Column("write_seconds", sa.Float, nullable=False),
    sa.Column("written_at", sa.DateTime, nullable=False),
)
result_files = sa.Table(
    "play_result_files",
    metadata,
    sa.Column("ingestion_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("part", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("key", sa.String(1024), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
)

TABLES = (file_totals, totals, files, result_files)
LOAD_COLUMNS = ["ingestion_id", "song", "date", "plays"]
STAGE_COLUMNS = ["song", "date", "plays"]


def context(conn: Connection, settings: Any) -> None:
    """Plays need nothing beyond the rows."""
    return None


# --- parsing --------------------------------------------------------------------------------------


def parse(block: Block, ctx: Any = None, keep_errors: int = 20) -> Parsed:
    """Validate and type a block of plays, vectorised; bad rows become (line, sentence) rejects."""
    t = block.table
    song = t.column("song")
    _, song_checks = checks.text(song, SONG_CHARS, trim=False)
    song_checks["is empty"] = pc.invert(pc.match_substring_regex(song, r"^\s*$"))  # spaces only count as empty
    day = _dates(t.column("date"))
    plays, plays_checks = _plays(t.column("number of plays"))
    tests = [
        *[("song", mask, reason) for reason, mask in song_checks.items()],
        ("date", pc.is_valid(day), "is not a real date like '2021-03-01' (YYYY-MM-DD)"),
        ("date", checks.in_date_window(day), f"is outside the accepted dates ({checks.window_sentence()})"),
        *[("number of plays", mask, reason) for mask, reason in plays_checks],
    ]
    ok = checks.all_ok([mask for _, mask, _ in tests], t.num_rows)
    bad = np.flatnonzero(~ok)
    rejects = [(int(block.lines[i]), _reject_message(t, tests, i)) for i in bad[:keep_errors]]
    table = pa.table({"song": song, "date": day, "plays": plays})
    if len(bad):  # most chunks have no bad row: no filtered copy of their columns
        table = table.filter(pa.array(ok))
    return Parsed(table, rejects, len(bad))


def _dates(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Strict `YYYY-MM-DD` (spaces around allowed) as date32; null otherwise.

    Arrow's strptime rolls 02-30 over to 03-02 and takes `2021-3-1`, so a date only counts if
    writing the parsed date back (a cast, not the slower strftime) gives exactly the text read.
    Four arrays, where slicing and comparing each field took eight: chunk memory is what the
    256 MB bound is made of.
    """
    text = pc.utf8_trim_whitespace(column)
    day = pc.strptime(text, format="%Y-%m-%d", unit="s", error_is_null=True).cast(pa.date32())
    exact = pc.fill_null(pc.equal(day.cast(pa.string()), text), False)
    return pc.if_else(exact, day, pa.scalar(None, pa.date32()))


def _plays(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, list[tuple[Any, str]]]:
    """Play counts (ASCII digits, spaces around allowed) and their checks, in the order they are told."""
    text = pc.utf8_trim_whitespace(column)
    whole = pc.match_substring_regex(text, r"^-?[0-9]+$")
    digits = pc.match_substring_regex(text, r"^[0-9]{1,18}$")
    values = pc.cast(pc.if_else(digits, text, "0"), pa.int64())
    return values, [
        (whole, "is not a whole number of plays like 12"),
        (pc.invert(pc.starts_with(text, "-")), "is negative; a play count is 0 or more"),
        (pc.and_(digits, pc.less_equal(values, MAX_PLAYS)),
         f"is more than {MAX_PLAYS:,}, the most plays one row may count"),
    ]


def _reject_message(t: pa.Table, tests: list[tuple[str, Any, str]], i: int) -> str:
    """Why row i was rejected: the first failing column, its value and what was expected."""
    for name, mask, reason in tests:
        if not mask[i].as_py():
            if reason == "is empty":
                return f"{SHOWN[name]} is empty"
            return f"{SHOWN[name]} {checks.shown(t.column(name)[i].as_py())} {reason}"
    return "the row could not be read"


# --- loading --------------------------------------------------------------------------------------


def load(conn: Connection, table: pa.Table, ingestion_id: int) -> int:
    """Sum the chunk's rows per (song, date) in Arrow and append the sums to the staging table of the
    step that sums each song.

    Returns the number of rows taken (every valid row counts; none is a duplicate).
    """
    if table.num_rows == 0:
        return 0
    sums = table.group_by(["song", "date"], use_threads=False).aggregate([("plays", "sum")])
    sums = sums.select(["song", "date", "plays_sum"]).rename_columns(STAGE_COLUMNS)
    steps = step_of(sums.column("song").combine_chunks(), FINISH_STEPS)
    for step, stage in enumerate(_create_stages(conn, ingestion_id)):
        mine = steps == step
        if mine.any():
            bulk_insert(conn, stage, STAGE_COLUMNS, sums.filter(pa.array(mine)))
    return table.num_rows


def _create_stages(conn: Connection, ingestion_id: int) -> list[sa.Table]:
    """The file's staging tables, created by its first chunk.

    On PostgreSQL the creators of one file's tables take turns on an advisory lock: two chunks
    creating them at once would otherwise collide in the catalog. A chunk that finds them made (and
    committed) takes no lock.
    """
    stages = [stage_table(ingestion_id, step) for step in range(FINISH_STEPS)]
    inspector = sa.inspect(conn)
    if all(inspector.has_table(stage.name) for stage in stages):
        return stages
    if is_postgres(conn):
        lock = sa.text("SELECT pg_advisory_xact_lock(CAST(:space AS integer), CAST(:id AS integer))")
        conn.execute(lock, {"space": STAGE_LOCK, "id": ingestion_id})
    for stage in stages:
        stage.create(conn, checkfirst=True)
    return stages


def step_of(song: pa.StringArray, steps: int) -> np.ndarray:
    """The finishing step that sums each song's rows: the sum of its UTF-8 bytes modulo `steps`
    (fixed by the name alone, so every chunk sends a song to the same step; near even in practice)."""
    if len(song) == 0:
        return np.empty(0, dtype=np.int16)
    offsets = np.frombuffer(song.buffers()[1], dtype=np.int32, count=len(song) + 1, offset=song.offset * 4)
    data = np.frombuffer(song.buffers()[2], dtype=np.uint8)
    sums = np.add.reduceat(data.astype(np.int64), offsets[:-1]) if offsets[-1] > offsets[0] else np.zeros(len(song))
    sums[offsets[1:] == offsets[:-1]] = 0  # reduceat gives an empty string its next byte
    return (sums % steps).astype(np.int16)


# --- finishing ------------------------------------------------------------------------------------

#: The file's totals are summed from its staged chunk sums by two steps run in parallel, each over
#: the songs `step_of` gives it (one set-based statement each).
FINISH_STEPS = 2


def finish_step(conn: Connection, ingestion_id: int, step: int, steps: int, sign: int = 1) -> None:
    """Sum the file's staged chunk sums of this step's songs per (song, date) into play_file_totals
    and drop their staging table; sign -1 takes the step's totals back out."""
    if sign < 0:
        f = file_totals.c
        conn.execute(file_totals.delete().where(f.ingestion_id == ingestion_id, f.part == step))
        return
    _sweep_stages(conn, ingestion_id)
    stage = stage_table(ingestion_id, step)
    if not sa.inspect(conn).has_table(stage.name):
        return  # no chunk staged anything (a file with no valid rows fails before its steps)
    c = stage.c
    sums = (
        sa.select(
            sa.literal(ingestion_id, sa.Integer).label("ingestion_id"), c.song, c.date,
            sa.func.sum(c.plays).label("plays"), sa.literal(step, sa.SmallInteger).label("part"),
        )
        .group_by(c.song, c.date)
        .cte("sums")
    )
    if is_postgres(conn):
        _fix_aggregate_plan(conn)
        sums = sums.prefix_with("MATERIALIZED")  # hashed apart from the ORDER BY's sort
    in_order = sa.select(sums).order_by(sums.c.song, sums.c.date)
    conn.execute(file_totals.insert().from_select([*LOAD_COLUMNS, "part"], in_order))
    stage.drop(conn)


def _fix_aggregate_plan(conn: Connection) -> None:
    """Hash the staged rows into totals, then sort only the totals, for this transaction.

    The planner cannot know how many rows a just-loaded file staged (it guesses a few dozen), so it
    sorts them all to group them (an external sort of 290 MB for half of a 1.1 GB file). Hashing
    them and sorting the six times fewer totals took half the time; the totals then go into the
    primary key in order, which is cheaper than in hash order.
    """
    conn.exec_driver_sql("SET LOCAL work_mem = '128MB'")
    conn.exec_driver_sql("SET LOCAL enable_sort = off")  # the grouping; the ORDER BY sorts anyway


def finish(conn: Connection, ingestion: dict[str, Any], settings: Any) -> None:
    """In the transaction that marks the file done: add its totals to the cross-upload rollup, write
    its result files, and record them.

    The files are written before the transaction commits. A crash before the commit rolls the rows
    back and leaves the ingestion running; the rerun writes the same keys again and deletes any other
    key under the prefix (e.g. parts of a run with a smaller PLAYS_PART_BYTES), so no stray or
    partial part survives. A failed or removed ingestion's prefix is deleted by the pipeline.
    """
    ingestion_id = int(ingestion["id"])
    started = time.perf_counter()
    bucket = results.bucket_for(settings, ingestion["bucket"])
    cap = part_bytes(settings)
    s3 = results.client()
    prefix = results.prefix(PREFIX, ingestion_id)
    if is_postgres(conn):
        # The part files are read through a second connection while this one merges the rollup: the
        # file's totals were committed by the finishing steps, so both see the same rows.
        _read_in_key_order(conn)
        with ThreadPoolExecutor(1) as pool:
            writing = pool.submit(_write_apart, conn.engine, s3, bucket, prefix, ingestion_id, cap)
            _merge_totals(conn, ingestion_id, sign=1)
            written = writing.result()
    else:  # SQLite has one writer, and this transaction holds it: one thing after the other
        _merge_totals(conn, ingestion_id, sign=1)
        written = write_results(s3, bucket, prefix, result_batches(conn, ingestion_id), cap)
    conn.execute(files.insert().values(
        ingestion_id=ingestion_id, rows=written.rows, songs=written.songs, dates=len(written.dates),
        total_plays=written.total_plays, part_bytes=cap, bucket=bucket,
        write_seconds=round(time.perf_counter() - started, 3), written_at=ingestions.utcnow(),
    ))
    conn.execute(result_files.insert(), [
        {"ingestion_id": ingestion_id, "part": p.number, "key": p.key, "bytes": p.bytes, "rows": p.rows}
        for p in written.parts
    ])
    results.delete_prefix(s3, bucket, prefix, keep=frozenset(p.key for p in written.parts))


def _write_apart(engine: Any, s3: Any, bucket: str, prefix: str, ingestion_id: int, cap: int) -> Written:
    with engine.connect() as reader:
        _read_in_key_order(reader)
        return write_results(s3, bucket, prefix, result_batches(reader, ingestion_id), cap)


def _read_in_key_order(conn: Connection) -> None:
    """Read a file's totals along the primary key, which is their (song, date) order, for this
    transaction: the planner, guessing a few thousand rows, would sort them instead (an external
    sort of 87 MB for a 1.1 GB file)."""
    conn.exec_driver_sql("SET LOCAL enable_sort = off")


def part_bytes(settings: Any) -> int:
    """PLAYS_PART_BYTES, never below MIN_PART_BYTES."""
    return max(int(settings.plays_part_bytes), MIN_PART_BYTES)


def _merge_totals(conn: Connection, ingestion_id: int, sign: int) -> None:
    """Add (sign -1: subtract) the file's totals to play_totals, in key order.

    Every writer of play_totals goes in (song, date) order, so two files merging at once lock the
    rows they share in the same order and cannot deadlock.
    """
    f = file_totals.c
    rows = (
        sa.select(f.song, f.date, f.plays * sign, sa.literal(sign, sa.Integer))
        .where(f.ingestion_id == ingestion_id)
        .order_by(f.song, f.date)
    )
    insert = upsert(conn, totals).from_select(["song", "date", "plays", "files"], rows)
    conn.execute(insert.on_conflict_do_update(
        index_elements=["song", "date"],
        set_={"plays": totals.c.plays + insert.excluded.plays, "files": totals.c.files + insert.excluded.files},
    ))


def discard(conn: Connection, ingestion_id: int, steps_done: Iterable[int] = ()) -> None:
    """Take every row of the ingestion out of every table, and its totals out of the rollup if it
    was added (that happened in the same transaction as its play_files row)."""
    counted = conn.execute(sa.select(files.c.ingestion_id).where(files.c.ingestion_id == ingestion_id)).first()
    if counted is not None:
        if is_postgres(conn):
            _read_in_key_order(conn)
        _merge_totals(conn, ingestion_id, sign=-1)
        _delete_emptied(conn, ingestion_id)
    for table in (result_files, files, file_totals):
        conn.execute(table.delete().where(table.c.ingestion_id == ingestion_id))
    for step in range(FINISH_STEPS):
        _drop_stage(conn, stage_table(ingestion_id, step))


def _drop_stage(conn: Connection, stage: sa.Table) -> None:
    """Drop a staging table; if a chunk is still writing to it, delete its rows instead.

    A file is failed (or deleted, or replaced) while one of its chunks may be loading. That chunk
    holds a lock on the staging table and waits for the ingestion row, which the failing transaction
    has locked: waiting for the table there would deadlock. So on PostgreSQL the drop waits at most
    200 ms, and otherwise the rows go (the chunk's own, uncommitted, go with its rollback when it
    finds its file failed); the empty table is swept by a later finishing step.
    """
    if not sa.inspect(conn).has_table(stage.name):
        return
    if not is_postgres(conn):  # one writer: nothing else holds the table
        stage.drop(conn)
        return
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
            stage.drop(conn)
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        conn.execute(stage.delete())
    finally:
        conn.exec_driver_sql("SET LOCAL lock_timeout TO DEFAULT")


def _sweep_stages(conn: Connection, current: int) -> None:
    """Drop the staging tables left by files no longer loading (see `_drop_stage`)."""
    found = {}
    for name in sa.inspect(conn).get_table_names():
        match = _STAGE_NAME.match(name)
        if match and int(match.group(1)) != current:
            found.setdefault(int(match.group(1)), []).append(int(match.group(2)))
    if not found:
        return
    rows = conn.execute(sa.select(ingestions.ingestions.c.id, ingestions.ingestions.c.status)
                        .where(ingestions.ingestions.c.id.in_(sorted(found)))).all()
    loading = {row_id for row_id, status in rows if status in ("queued", "running")}
    for ingestion_id, steps in sorted(found.items()):
        if ingestion_id in loading:
            continue
        for step in steps:
            try:  # best effort: another step may be sweeping the same table
                with conn.begin_nested():
                    _drop_stage(conn, stage_table(ingestion_id, step))
            except sa.exc.DBAPIError:
                log.info("staging table of ingestion %s left for a later sweep", ingestion_id)


def _delete_emptied(conn: Connection, ingestion_id: int) -> None:
    """Delete the rollup rows no file holds any more, looked up by the file's own keys (an emptied
    pair can have 0 plays but not 0 files: a count of 0 plays is a valid row)."""
    t, f = totals.c, file_totals.c
    emptied = t.files <= 0
    if is_postgres(conn):
        conn.execute(totals.delete().where(
            emptied, f.ingestion_id == ingestion_id, t.song == f.song, t.date == f.date
        ))
        return
    keys = sa.select(f.song, f.date).where(f.ingestion_id == ingestion_id)
    conn.execute(totals.delete().where(emptied, sa.tuple_(t.song, t.date).in_(keys)))


# --- result files ---------------------------------------------------------------------------------


def result_batches(conn: Connection, ingestion_id: int, batch_rows: int = RESULT_BATCH_ROWS) -> Iterator[pa.Table]:
    """The file's totals in (song, date) order, `batch_rows` at a time, from a server-side cursor."""
    f = file_totals.c
    query = sa.select(f.song, f.date, f.plays).where(f.ingestion_id == ingestion_id).order_by(f.song, f.date)
    result = conn.execute(query.execution_options(stream_results=True, yield_per=batch_rows))
    for rows in result.partitions():
        song, day, plays = zip(*rows, strict=True)
        yield pa.table({
            "song": pa.array(song, pa.string()),
            "date": pa.array(day, pa.date32()),
            "plays": pa.array(plays, pa.int64()),
        })


def csv_lines(batch: pa.Table) -> pa.Array:
    """Each row as a CSV line ending in a newline; a song is quoted (inner quotes doubled) when it
    holds a comma or a quote, as Python's csv module and pyarrow read it back."""
    song = batch.column("song").combine_chunks()
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(song, '"', '""'), '"', "")
    field_ = pc.if_else(pc.match_substring_regex(song, r'[,"\r\n]'), quoted, song)
    line = pc.binary_join_element_wise(
        field_, batch.column("date").cast(pa.string()).combine_chunks(),
        batch.column("plays").cast(pa.string()).combine_chunks(), ",",
    )
    return pc.binary_join_element_wise(line, pa.scalar(""), "\n")


@dataclass
class Part:
    number: int
    key: str
    bytes: int
    rows: int


@dataclass
class Written:
    """What the result files hold: their parts, and the file's summary counted on the way."""

    parts: list[Part] = field(default_factory=list)
    rows: int = 0
    songs: int = 0
    dates: set[int] = field(default_factory=set)
    total_plays: int = 0
    last_song: str | None = None

    def count(self, batch: pa.Table) -> None:
        song = batch.column("song")
        n = batch.num_rows
        if n == 0:
            return
        changes = pc.sum(pc.not_equal(song.slice(1), song.slice(0, n - 1))).as_py() or 0
        self.songs += changes + (song[0].as_py() != self.last_song)
        self.last_song = song[n - 1].as_py()
        self.rows += n
        self.total_plays += int(pc.sum(batch.column("plays")).as_py() or 0)
        self.dates.update(np.unique(batch.column("date").cast(pa.int32()).to_numpy()).tolist())


class PartSink:
    """Result rows into part files of at most `cap` bytes each, header included, never splitting a
    row; each part streams through results.writer (multipart above 5 MiB, aborted on error)."""

    def __init__(self, s3: Any, bucket: str, prefix: str, cap: int) -> None:
        self.s3, self.bucket, self.prefix, self.cap = s3, bucket, prefix, cap
        self.parts: list[Part] = []
        self._context: Any = None
        self._out: Any = None
        self._bytes = self._rows = 0

    def write(self, lines: pa.Array) -> None:
        data = _buffer(lines)
        ends = np.cumsum(pc.binary_length(lines).to_numpy(zero_copy_only=False), dtype=np.int64)
        offsets = np.concatenate(([0], ends))
        i, n = 0, len(lines)
        while i < n:
            if self._out is None:
                self._open()
            room = self.cap - self._bytes
            j = int(np.searchsorted(offsets, offsets[i] + room, side="right")) - 1  # rows i..j-1 fit
            if j <= i:
                if self._rows:
                    self._close()
                    continue
                j = i + 1  # cannot happen with PLAYS_PART_BYTES >= MIN_PART_BYTES; a part holds a row
            self._out.write(data[offsets[i]:offsets[j]])
            self._bytes += int(offsets[j] - offsets[i])
            self._rows += j - i
            i = j
            if i < n:
                self._close()

    def close(self) -> list[Part]:
        if self._out is None and not self.parts:
            self._open()  # no rows at all: one part holding the header
        if self._out is not None:
            self._close()
        return self.parts

    def abort(self, exc: BaseException) -> None:
        if self._context is not None:
            self._context.__exit__(type(exc), exc, exc.__traceback__)
            self._context = self._out = None

    def _open(self) -> None:
        number = len(self.parts) + 1
        self._key = f"{self.prefix}part-{number:05d}.csv"
        self._context = results.writer(self.s3, self.bucket, self._key, "text/csv; charset=utf-8")
        self._out = self._context.__enter__()
        self._out.write(RESULT_HEADER)
        self._bytes, self._rows = len(RESULT_HEADER), 0

    def _close(self) -> None:
        self._context.__exit__(None, None, None)
        self.parts.append(Part(len(self.parts) + 1, self._key, self._bytes, self._rows))
        self._context = self._out = None


def write_results(s3: Any, bucket: str, prefix: str, batches: Iterable[pa.Table], cap: int) -> Written:
    """Stream sorted result batches into part files under `prefix`; return what was written."""
    written = Written()
    sink = PartSink(s3, bucket, prefix, cap)
    try:
        for batch in batches:
            written.count(batch)
            sink.write(csv_lines(batch))
        written.parts = sink.close()
    except BaseException as exc:
        sink.abort(exc)
        raise
    return written


def _buffer(lines: pa.Array) -> memoryview:
    """The concatenated bytes of a string array, straight from its data buffer (no copy)."""
    if len(lines) == 0:
        return memoryview(b"")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    return memoryview(lines.buffers()[2])[int(offsets[0]):int(offsets[-1])]


# --- queries --------------------------------------------------------------------------------------


def result_answer(conn: Connection, ingestion_id: int, s3: Any, base_url: str) -> dict[str, Any]:
    """GET /plays/results/{id}: the file's part files and summary; a duplicate answers with the
    results of the first upload of its bytes."""
    row = _plays_ingestion(conn, ingestion_id)
    subject = row
    if row["duplicate_of"] is not None:
        subject = ingestions.get(conn, row["duplicate_of"]) or row
    _check_ready(subject, ingestion_id)
    summary = conn.execute(sa.select(files).where(files.c.ingestion_id == subject["id"])).mappings().first()
    if summary is None:
        raise NotFound(f"Ingestion {subject['id']} has no result files recorded.")
    parts = conn.execute(
        sa.select(result_files).where(result_files.c.ingestion_id == subject["id"]).order_by(result_files.c.part)
    ).mappings()
    return {
        "ingestion_id": ingestion_id,
        "duplicate_of": row["duplicate_of"],
        "key": subject["key"],
        "bucket": summary["bucket"],
        "files": [
            {"key": p["key"], "bytes": int(p["bytes"]), "rows": int(p["rows"]),
             "url": results.url(s3, summary["bucket"], p["key"], base_url)}
            for p in parts
        ],
        "rows": int(summary["rows"]),
        "songs": int(summary["songs"]),
        "dates": int(summary["dates"]),
        "total_plays": int(summary["total_plays"]),
        "part_bytes": int(summary["part_bytes"]),
    }


def _plays_ingestion(conn: Connection, ingestion_id: int) -> dict[str, Any]:
    row = ingestions.get(conn, ingestion_id)
    if row is None:
        raise NotFound(f"Ingestion {ingestion_id} not found.")
    if row["dataset"] != PREFIX:
        raise NotFound(f"Ingestion {ingestion_id} is a {row['dataset']} file, not a plays file; it has no play totals.")
    return row


def _check_ready(row: dict[str, Any], asked: int) -> None:
    """425 while loading, 422 if it failed, 404 once taken back out."""
    which = f"Ingestion {asked}" + (f" (a duplicate of ingestion {row['id']})" if row["id"] != asked else "")
    if row.get("superseded_by") is not None:
        raise NotFound(
            f"{which} was replaced by a newer version of {row['key']!r} (ingestion {row['superseded_by']}); "
            f"see /plays/results/{row['superseded_by']}."
        )
    status = row["status"]
    if status in ("queued", "running"):
        share = int(row["bytes_done"] or 0) / int(row["bytes_total"]) if row["bytes_total"] else 0
        raise TooEarly(f"{which} is still {status} ({share:.0%} of the file loaded); its results appear when it is done.")
    if status == "failed":
        raise Unprocessable(f"{which} failed, so it has no results: {row['error']}")
    if status != "done":
        raise NotFound(f"{which} was {status}; its results were removed.")


def totals_page(
    conn: Connection, song: str | None, start: dt.date | None, end: dt.date | None, limit: int,
    after: tuple[str, dt.date] | None = None,
) -> list[dict[str, Any]]:
    """Totals over every done upload, in (song, date) order, after the keyset `after`; up to limit + 1."""
    t = totals.c
    query = sa.select(t.song, t.date, t.plays, t.files)
    if song is not None:
        query = query.where(t.song == song)
    if start is not None:
        query = query.where(t.date >= start)
    if end is not None:
        query = query.where(t.date <= end)
    if after is not None:
        query = query.where(sa.tuple_(t.song, t.date) > sa.tuple_(sa.literal(after[0], _SONG), sa.literal(after[1], sa.Date)))
    rows = conn.execute(query.order_by(t.song, t.date).limit(limit + 1)).all()
    return [
        {"song": s, "date": _day(d).isoformat(), "plays": int(p), "files": int(n)} for s, d, p, n in rows
    ]


def song_total(conn: Connection, song: str, start: dt.date | None, end: dt.date | None) -> int:
    """The song's plays over [start, end] across every done upload; 404 if no upload has the song."""
    t = totals.c
    if conn.execute(sa.select(t.song).where(t.song == song).limit(1)).first() is None:
        raise NotFound(
            f"No done upload has plays of the song {checks.shown(song)}; song names match exactly, "
            "byte for byte (case, spaces and accents included)."
        )
    query = sa.select(sa.func.coalesce(sa.func.sum(t.plays), 0)).where(t.song == song)
    if start is not None:
        query = query.where(t.date >= start)
    if end is not None:
        query = query.where(t.date <= end)
    return int(conn.execute(query).scalar() or 0)


def check_span(start: dt.date | None, end: dt.date | None) -> None:
    if start is not None and end is not None and start > end:
        raise BadRequest(f"'from' ({start}) must not be after 'to' ({end}).")


def _day(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
