"""Rows keep the line numbers a person sees in an editor, whatever the blank lines and bad rows."""

import pytest

from chalicelib import csvblock
from chalicelib.errors import FileRejected


def test_line_numbers_survive_blank_lines_and_bad_rows():
    data = b"a,b\r\n1,2\r\n\r\n3\r\n4,5\r\n\n6,7,8\n9,10"
    block = csvblock.parse(data, ["a", "b"], skip_header=True)
    assert block.table.column("a").to_pylist() == ["1", "4", "9"]
    assert block.lines.tolist() == [2, 5, 8]
    assert block.rejects == [(4, "expected 2 fields, found 1"), (7, "expected 2 fields, found 3")]
    assert block.line_count == 8


def test_quoted_commas_and_quotes():
    block = csvblock.parse(b'"x, y","say ""hi"""\n', ["a", "b"], skip_header=False)
    assert block.table.to_pylist() == [{"a": "x, y", "b": 'say "hi"'}]


def test_invalid_utf8_rejects_the_file():
    with pytest.raises(FileRejected, match="not UTF-8"):
        csvblock.parse(b"a,b\n\xff\xfe,1\n", ["a", "b"], skip_header=True)


def test_empty_block():
    block = csvblock.parse(b"", ["a"], skip_header=False)
    assert block.table.num_rows == 0 and block.line_count == 0
