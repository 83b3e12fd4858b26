"""What the plays tests share: an independent reference (plain Python summing of a raw file), and
readers of the result part files and of the rows each table holds."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import re
from typing import Any

import boto3
import pytest
import sqlalchemy as sa

from chalicelib.datasets import plays
from chalicelib.db import get_engine
from tests.support.ingest import BUCKET, get

HEADER = "Song,Date,Number of Plays"


def python_totals(raw: bytes) -> dict[tuple[str, str], int]:
    """Plays per (song, date) by reading the file with the csv module and summing in a dict; rows
    that break the rules (empty song, a date that is not a real YYYY-MM-DD, a count that is not
    0..1e9 in digits) are skipped."""
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    reader = csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""))
    names = [name.strip().lower() for name in next(reader)]
    song_at, date_at, plays_at = names.index("song"), names.index("date"), names.index("number of plays")
    sums: dict[tuple[str, str], int] = {}
    for row in reader:
        if not row:
            continue
        song, day, count = row[song_at], row[date_at].strip(), row[plays_at].strip()
        if not song.strip() or not re.fullmatch(r"[0-9]+", count) or int(count) > plays.MAX_PLAYS:
            continue
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day) or not 1970 <= dt.date.fromisoformat(day).year <= 2099:
                continue
        except ValueError:
            continue
        sums[(song, day)] = sums.get((song, day), 0) + int(count)
    return sums


def sorted_rows(sums: dict[tuple[str, str], int]) -> list[tuple[str, str, int]]:
    """In the result files' order: song by its UTF-8 bytes (= code points), then date."""
    return [(song, day, total) for (song, day), total in sorted(sums.items(), key=lambda kv: (kv[0][0].encode(), kv[0][1]))]


def read_part(s3: Any, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def parse_part(body: bytes) -> list[tuple[str, str, int]]:
    """A part file read back with the csv module, checking its header."""
    reader = csv.reader(io.StringIO(body.decode("utf-8"), newline=""))
    assert next(reader) == ["Song", "Date", "Total Plays"]
    return [(song, day, int(total)) for song, day, total in reader]


def result_rows(client: Any, s3: Any, ingestion_id: int) -> tuple[dict[str, Any], list[tuple[str, str, int]]]:
    """GET /plays/results/{id} and every row of its part files, in file order."""
    answer = get(client, f"/plays/results/{ingestion_id}")
    rows: list[tuple[str, str, int]] = []
    for part in answer["files"]:
        rows += parse_part(read_part(s3, part["key"]))
    return answer, rows


def assert_results(client: Any, aws: Any, ingestion_id: int, raw: bytes) -> dict:
    """The result files and the summary of an ingestion equal plain Python summing of its raw file."""
    expected = sorted_rows(python_totals(raw))
    answer, rows = result_rows(client, aws, ingestion_id)
    assert rows == expected
    assert answer["rows"] == len(expected) == sum(f["rows"] for f in answer["files"])
    assert answer["total_plays"] == sum(total for _, _, total in expected)
    assert answer["songs"] == len({song for song, _, _ in expected})
    assert answer["dates"] == len({day for _, day, _ in expected})
    return answer


def keys_under(s3: Any, ingestion_id: int) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"results/plays/{ingestion_id}/")
    return sorted(o["Key"] for o in listed.get("Contents", []))


def table_rows(db_url: str, ingestion_id: int | None = None) -> dict[str, int]:
    """Rows per plays table (of one ingestion where the table has an ingestion_id)."""
    out = {}
    with get_engine(db_url).connect() as conn:
        for table in plays.TABLES:
            query = sa.select(sa.func.count()).select_from(table)
            if ingestion_id is not None and "ingestion_id" in table.c:
                query = query.where(table.c.ingestion_id == ingestion_id)
            out[table.name] = conn.execute(query).scalar()
    return out


def stage_tables(db_url: str) -> dict[str, int]:
    """The staging tables that exist, and the rows each holds."""
    with get_engine(db_url).connect() as conn:
        names = [n for n in sa.inspect(conn).get_table_names() if n.startswith(plays.STAGE_PREFIX)]
        return {n: conn.execute(sa.text(f'SELECT count(*) FROM "{n}"')).scalar() for n in names}  # noqa: S608


def rollup(db_url: str) -> dict[tuple[str, str], tuple[int, int]]:
    """play_totals as {(song, date): (plays, files)}."""
    with get_engine(db_url).connect() as conn:
        rows = conn.execute(sa.select(plays.totals)).all()
    return {(song, day.isoformat() if isinstance(day, dt.date) else str(day)): (int(p), int(n)) for song, day, p, n in rows}


def csv_file(rows: list[tuple[str, str, str]], header: str = HEADER, crlf: bool = False, bom: bool = False,
             final_newline: bool = True) -> bytes:
    """A plays file written by the csv module (it quotes what needs quoting)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n" if crlf else "\n")
    buffer.write(header + ("\r\n" if crlf else "\n"))
    writer.writerows(rows)
    text = buffer.getvalue()
    if not final_newline:
        text = text.rstrip("\r\n")
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


class S3Outage:
    """S3 refusing writes after the first `allowed` PutObject/UploadPart calls (a crash mid-finishing)."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed

    def __call__(self, **kwargs) -> None:
        if self.allowed <= 0:
            raise ConnectionError("S3 went away")
        self.allowed -= 1


@pytest.fixture
def s3_outage() -> Any:
    """start(allowed): S3 refuses PutObject and UploadPart after `allowed` more calls (tests' crashes)."""
    session = boto3._get_default_session()
    outages: list[S3Outage] = []

    def start(allowed: int) -> S3Outage:
        outage = S3Outage(allowed)
        for op in ("PutObject", "UploadPart"):
            session.events.register(f"before-call.s3.{op}", outage)
        outages.append(outage)
        return outage

    yield start
    for outage in outages:
        for op in ("PutObject", "UploadPart"):
            session.events.unregister(f"before-call.s3.{op}", outage)
