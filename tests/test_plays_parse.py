"""The plays parser on its own: each value rule, the sentences of rejected rows, names kept byte for byte."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from chalicelib import csvblock
from chalicelib.datasets import plays

NAMES = list(plays.COLUMNS)


def _parse(lines: list[str]) -> plays.Parsed:
    block = csvblock.parse(("\n".join(lines) + "\n").encode(), NAMES, skip_header=False)
    return plays.parse(block, None, keep_errors=100)


def _single(line: str) -> tuple[dict | None, str | None]:
    parsed = _parse([line])
    if parsed.table.num_rows:
        return parsed.table.to_pylist()[0], None
    return None, parsed.rejects[0][1]


@pytest.mark.parametrize(("text", "expected"), [
    ("2021-03-01", dt.date(2021, 3, 1)),
    (" 2020-02-29 ", dt.date(2020, 2, 29)),
    ("1970-01-01", dt.date(1970, 1, 1)),
    ("2099-12-31", dt.date(2099, 12, 31)),
    ("2021-02-29", None),
    ("2021-02-30", None),
    ("2021-04-31", None),
    ("2021-13-01", None),
    ("2021-00-10", None),
    ("2021-3-1", None),
    ("21-03-01", None),
    ("2021/03/01", None),
    ("2021-03-01 10:00:00", None),
    ("２０２１-03-01", None),  # full-width digits are not ASCII digits
    ("", None),
])
def test_dates(text, expected):
    row, _ = _single(f"A,{text},1")
    assert (row["date"] if row else None) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("0", 0), ("12", 12), (" 7 ", 7), ("007", 7), (str(plays.MAX_PLAYS), plays.MAX_PLAYS),
    (str(plays.MAX_PLAYS + 1), None), ("99999999999999999999999", None), ("-1", None), ("-0", None),
    ("+5", None), ("12.5", None), ("1e3", None), ("", None), ("five", None), ("3 plays", None), ("١٢", None),
])
def test_play_counts(text, expected):
    row, _ = _single(f"A,2021-03-01,{text}")
    assert (row["plays"] if row else None) == expected


@pytest.mark.parametrize("name", [
    "Plain", " leading space", "trailing space ", "in  between", "Comma, inside", 'Quote "inside"',
    "Tab\there", "Ça plane pour moi", "Любовь", "東京", "사랑", "🎵 emoji", "lower", "LOWER",
    "x" * plays.SONG_CHARS, "🎵" * plays.SONG_CHARS,
])
def test_song_names_are_kept_byte_for_byte(name):
    field = '"' + name.replace('"', '""') + '"' if ("," in name or '"' in name) else name
    row, reason = _single(f"{field},2021-03-01,1")
    assert reason is None and row["song"].encode() == name.encode()


@pytest.mark.parametrize(("line", "sentence"), [
    (",2021-03-01,1", "Song is empty"),
    ("   ,2021-03-01,1", "Song is empty"),
    (f"{'y' * (plays.SONG_CHARS + 1)},2021-03-01,1", f"is longer than {plays.SONG_CHARS} characters"),
    ("Bell\x07,2021-03-01,1", "Song 'Bell\\x07' holds a control character"),
    ("A,2021-02-30,1", "Date '2021-02-30' is not a real date like '2021-03-01' (YYYY-MM-DD)"),
    ("A,1969-12-31,1", "Date '1969-12-31' is outside the accepted dates (between 1970-01-01 and 2099-12-31)"),
    ("A,2021-03-01,12.5", "Number of Plays '12.5' is not a whole number of plays like 12"),
    ("A,2021-03-01,-3", "Number of Plays '-3' is negative; a play count is 0 or more"),
    ("A,2021-03-01,5000000000", "Number of Plays '5000000000' is more than 1,000,000,000"),
    ("A,2021-03-01,", "Number of Plays '' is not a whole number"),
])
def test_rejects_name_the_column_the_value_and_what_was_expected(line, sentence):
    row, reason = _single(line)
    assert row is None and sentence in reason


def test_rejects_keep_their_line_numbers_and_the_good_rows_load():
    lines = ["A,2021-03-01,1", "B,2021-02-30,2", "", "C,2021-03-01,x", "D,2021-03-02,4", ",2021-03-01,1"]
    parsed = _parse(lines)
    assert [line for line, _ in parsed.rejects] == [2, 4, 6] and parsed.rejected == 3
    assert parsed.table.column("song").to_pylist() == ["A", "D"]
    assert parsed.table.column("plays").to_pylist() == [1, 4]


def test_rejected_counts_all_but_sentences_are_capped():
    block = csvblock.parse(b"".join(b"A,2021-02-30,1\n" for _ in range(50)), NAMES, skip_header=False)
    parsed = plays.parse(block, None, keep_errors=5)
    assert parsed.rejected == 50 and len(parsed.rejects) == 5


def test_types_of_the_loaded_columns():
    parsed = _parse(["A,2021-03-01,1"])
    assert parsed.table.schema == pa.schema([("song", pa.string()), ("date", pa.date32()), ("plays", pa.int64())])


def test_csv_lines_quote_what_needs_quoting_and_count_bytes_exactly():
    batch = pa.table({
        "song": ["plain", "a, b", 'say "hi"', " spaced ", "東京"],
        "date": pa.array([dt.date(2021, 3, d) for d in range(1, 6)], pa.date32()),
        "plays": pa.array([0, 1, 22, 333, 10**18], pa.int64()),
    })
    lines = plays.csv_lines(batch).to_pylist()
    assert lines == [
        "plain,2021-03-01,0\n", '"a, b",2021-03-02,1\n', '"say ""hi""",2021-03-03,22\n',
        " spaced ,2021-03-04,333\n", "東京,2021-03-05,1000000000000000000\n",
    ]
