"""Any split of a file into chunks gives every line to exactly one chunk."""

import gzip
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib import chunks

lines_strategy = st.lists(st.text(alphabet="ab,\r\"é", max_size=30), min_size=0, max_size=40)


def _read(data: bytes):
    return lambda a, b: data[a:b]


@settings(max_examples=300, deadline=None)
@given(lines=lines_strategy, chunk_bytes=st.integers(1, 64), final_newline=st.booleans(), bom=st.booleans(),
       tail=st.integers(0, 70))
def test_chunks_partition_lines(lines, chunk_bytes, final_newline, bom, tail):
    body = "\n".join(lines).encode() + (b"\n" if final_newline and lines else b"")
    data = (chunks.BOM if bom else b"") + body
    plan = chunks.plan(len(data), chunk_bytes)
    assert [c.seq for c in plan] == list(range(len(plan)))
    assert not plan or (plan[0].start == 0 and plan[-1].end == len(data))
    assert all(a.end == b.start for a, b in zip(plan, plan[1:], strict=False))
    joined = b"".join(chunks.read_lines(_read(data), c, len(data), tail) for c in plan)
    assert joined == body


def test_a_chunk_is_one_read_when_its_last_line_ends_within_the_tail():
    data = b"".join(b"line %03d,x,y\n" % i for i in range(300))
    reads = []

    def read(a: int, b: int) -> bytes:
        reads.append((a, b))
        return data[a:b]

    plan = chunks.plan(len(data), 500)
    parts = [chunks.read_lines(read, c, len(data), tail=64) for c in plan]
    assert b"".join(parts) == data
    assert len(reads) == len(plan)


def test_chunk_owning_no_line_is_empty():
    data = b"x" * 100 + b"\nshort\n"
    plan = [chunks.Chunk(0, 0, 10), chunks.Chunk(1, 10, 20), chunks.Chunk(2, 20, len(data))]
    parts = [chunks.read_lines(_read(data), c, len(data)) for c in plan]
    assert parts == [b"x" * 100 + b"\n", b"", b"short\n"]


@settings(max_examples=100, deadline=None)
@given(lines=lines_strategy, block=st.integers(1, 50), bom=st.booleans())
def test_gzip_blocks_are_whole_lines_and_deterministic(lines, block, bom):
    body = "\n".join(lines).encode()
    raw = gzip.compress((chunks.BOM if bom else b"") + body)
    first = list(chunks.gzip_blocks(io.BytesIO(raw), block, read_size=7))
    second = list(chunks.gzip_blocks(io.BytesIO(raw), block, read_size=13))
    assert b"".join(d for _, d in first) == body
    assert [d for _, d in first] == [d for _, d in second]  # cut by content, not by read size
    assert all(d.endswith(b"\n") for _, d in first[:-1])
    assert first == [] or first[-1][0].end == len(raw)


def test_gzip_blocks_end_at_the_last_newline_before_the_block_size():
    lines = [b"%d,%s\n" % (i, b"x" * (i % 13)) for i in range(400)]
    body = b"".join(lines)
    blocks = [d for _, d in chunks.gzip_blocks(io.BytesIO(gzip.compress(body)), 100, read_size=17)]
    assert b"".join(blocks) == body
    for block, following in zip(blocks, blocks[1:], strict=False):
        assert len(block) <= 100  # no line here is longer than a block
        next_line = following[: following.index(b"\n") + 1]
        assert len(block) + len(next_line) > 100  # as full as whole lines allow: cut at the LAST newline


def test_a_truncated_gzip_stream_is_rejected_before_its_last_block():
    import pytest

    from chalicelib.errors import FileRejected

    raw = gzip.compress(b"".join(b"line %d\n" % i for i in range(5000)))
    got = []
    with pytest.raises(FileRejected, match="corrupt or truncated"):
        for block in chunks.gzip_blocks(io.BytesIO(raw[: len(raw) // 2]), 1000):
            got.append(block)
    assert got  # blocks before the cut came out; the pipeline then fails the file and takes them back
