"""Binary COPY (chalicelib.pgcopy through db.bulk_insert): every encoded type survives the trip exactly."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
import sqlalchemy as sa

from chalicelib import pgcopy
from chalicelib.db import bulk_insert

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

shapes = sa.MetaData()
sample = sa.Table(
    "pgcopy_sample",
    shapes,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("small", sa.SmallInteger, nullable=False),
    sa.Column("big", sa.BigInteger, nullable=False),
    sa.Column("x", sa.Float(53), nullable=False),
    sa.Column("label", sa.String(64), nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
)

ROWS = {
    "id": [1, 2, 3, 4],
    "small": [0, -32768, 32767, 7],
    "big": [0, -(2**63), 2**63 - 1, 1234567890123],
    "x": [0.0, -179.99999999999997, 45.071234567891, 1e-300],
    "label": ["Turin", "", "Zürich, \"quoted\"", "line\nbreak"],
    "day": [dt.date(2018, 4, 30), dt.date(1970, 1, 1), dt.date(1999, 12, 31), dt.date(2400, 2, 29)],
    "at": [dt.datetime(2018, 5, 21, 2, 54, 4), dt.datetime(1969, 12, 31, 23, 59, 59),
           dt.datetime(2000, 1, 1), dt.datetime(2038, 1, 19, 3, 14, 8)],
    "note": ["日本語", "tab\there", "back\\slash", "x" * 5000],
}


def arrow_rows() -> pa.Table:
    return pa.table({
        "id": pa.array(ROWS["id"], pa.int32()),
        "small": pa.array(ROWS["small"], pa.int16()),
        "big": pa.array(ROWS["big"], pa.int64()),
        "x": pa.array(ROWS["x"], pa.float64()),
        "label": pa.array(ROWS["label"]),
        "day": pa.array(ROWS["day"], pa.date32()),
        "at": pa.array(ROWS["at"], pa.timestamp("s")),
        "note": pa.array(ROWS["note"]),
    })


def test_every_type_round_trips_through_binary_copy(postgres_url):
    engine = sa.create_engine(postgres_url)
    data = arrow_rows()
    assert pgcopy.encodable(sample, data.column_names, data) is not None, "the sample must take the binary path"
    with engine.begin() as conn:
        sample.drop(conn, checkfirst=True)
        sample.create(conn)
        assert bulk_insert(conn, sample, data.column_names, data) == 4
        got = conn.execute(sa.select(sample).order_by(sample.c.id)).all()
        sample.drop(conn)
    engine.dispose()
    expected = list(zip(*ROWS.values(), strict=True))
    assert [tuple(r) for r in got] == expected


nullable = sa.Table(
    "pgcopy_nullable",
    shapes,
    sa.Column("id", sa.Integer, primary_key=True),
    *[sa.Column(c.name, c.type, nullable=True) for c in sample.columns if c.name != "id"],
)


def test_nulls_of_every_type_round_trip_through_binary_copy(postgres_url):
    """A null is a field of length -1; every column here holds one, in a different row."""
    data = arrow_rows()
    for i, name in enumerate(data.column_names[1:], start=1):
        values = data.column(name).to_pylist()
        values[i % 4] = None
        data = data.set_column(i, name, pa.array(values, data.schema.field(name).type))
    assert pgcopy.encodable(nullable, data.column_names, data) is not None
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        nullable.drop(conn, checkfirst=True)
        nullable.create(conn)
        bulk_insert(conn, nullable, data.column_names, data)
        got = [tuple(r) for r in conn.execute(sa.select(nullable).order_by(nullable.c.id)).all()]
        nullable.drop(conn)
    engine.dispose()
    assert got == [tuple(row.values()) for row in data.to_pylist()]


def test_unknown_types_are_left_to_csv():
    odd = sa.Table("odd", sa.MetaData(), sa.Column("flag", sa.Boolean))
    assert pgcopy.encodable(odd, ["flag"], pa.table({"flag": [True]})) is None


def test_wire_layout_of_one_row():
    batch = pa.record_batch({"a": pa.array([1], pa.int32()), "b": pa.array(["hé"])})
    assert bytes(pgcopy.encode(batch, ["int4", "text"])) == (
        b"\x00\x02" + b"\x00\x00\x00\x04" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x03" + "hé".encode()
    )
