"""Cutting a CSV object into chunks that end on line boundaries.

A chunk is a nominal byte range [start, end) of the object; it owns every line that *starts* inside
it. Reading a chunk therefore skips the partial line at its start (the previous chunk owns it) and
reads past its end to finish its last line. Any split of a file gives each line to exactly one chunk,
so chunks can be loaded in any order, in parallel, and retried one at a time.

Gzip files cannot be read in ranges; they are cut into blocks while decompressing, at the last
newline before each `block_bytes` mark, which depends only on the content, so a rerun cuts them the
same way and can skip the blocks already committed.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from chalicelib.errors import FileRejected

BOM = b"\xef\xbb\xbf"
EXTEND_STEP = 64 * 1024


@dataclass(frozen=True)
class Chunk:
    seq: int
    start: int
    end: int


def plan(size: int, chunk_bytes: int) -> list[Chunk]:
    """Nominal ranges covering [0, size); the last one absorbs a small remainder."""
    if size <= 0:
        return []
    count = max(1, round(size / chunk_bytes))
    step = -(-size // count)
    return [Chunk(i, i * step, min(size, (i + 1) * step)) for i in range(count) if i * step < size]


def read_lines(read: Callable[[int, int], bytes], chunk: Chunk, size: int, tail: int = EXTEND_STEP) -> bytes:
    """The complete lines that start in [chunk.start, chunk.end); `read(a, b)` returns bytes [a, b).

    One read covers the chunk and `tail` bytes past its end, where its last line almost always ends
    (one request per chunk, not two); a longer last line is finished with further reads.
    """
    base = max(0, chunk.start - 1)
    data = read(base, min(size, chunk.end + tail))
    if chunk.start > 0:
        first = data.find(b"\n")
        if first < 0 or base + first + 1 >= chunk.end:
            return b""  # the line running through this chunk started in an earlier one, which owns it
        data, base = data[first + 1:], base + first + 1
    last = data.find(b"\n", max(0, chunk.end - 1 - base))  # the newline ending the last owned line
    if last >= 0:
        data = data[: last + 1]
    elif base + len(data) < size:
        data += _rest_of_line(read, base + len(data), size)
    if chunk.start == 0 and data.startswith(BOM):
        data = data[len(BOM):]
    return data


def _rest_of_line(read: Callable[[int, int], bytes], pos: int, size: int) -> bytes:
    parts = []
    while pos < size:
        piece = read(pos, min(size, pos + EXTEND_STEP))
        newline = piece.find(b"\n")
        if newline >= 0:
            parts.append(piece[: newline + 1])
            break
        parts.append(piece)
        pos += len(piece)
    return b"".join(parts)


def gzip_blocks(stream, block_bytes: int, read_size: int = 1024 * 1024) -> Iterator[tuple[Chunk, bytes]]:
    """(chunk, lines) blocks of a gzip stream; chunk offsets are compressed bytes consumed (progress).

    Each block is held back until the next one is cut, so the last one can end at the true end of the
    compressed stream (its trailer included) and progress reaches bytes_total exactly.
    """
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    buffer = bytearray()
    pending: tuple[Chunk, bytes] | None = None
    consumed = start = seq = 0
    bom_checked = False
    for raw in iter(lambda: stream.read(read_size), b""):
        consumed += len(raw)
        buffer += _inflate(inflater, raw)
        if not bom_checked and len(buffer) >= len(BOM):
            bom_checked = True
            if buffer.startswith(BOM):
                del buffer[: len(BOM)]
        while len(buffer) >= block_bytes and (cut := _cut_point(buffer, block_bytes)) is not None:
            if pending:
                yield pending
            pending = (Chunk(seq, start, consumed), bytes(buffer[:cut]))
            del buffer[:cut]
            seq, start = seq + 1, consumed
    buffer += _inflate(inflater, None)
    if not bom_checked and buffer.startswith(BOM):
        del buffer[: len(BOM)]
    if buffer:
        if pending:
            yield pending
        pending = (Chunk(seq, start, consumed), bytes(buffer))
    if pending:
        yield Chunk(pending[0].seq, pending[0].start, consumed), pending[1]


def _inflate(inflater, raw: bytes | None) -> bytes:
    try:
        return inflater.decompress(raw) if raw is not None else inflater.flush()
    except zlib.error:
        raise FileRejected("The file ends in .gz but is not valid gzip data (corrupt or truncated).") from None


def _cut_point(buffer: bytearray, block_bytes: int) -> int | None:
    newline = buffer.rfind(b"\n", 0, block_bytes)
    if newline < 0:
        newline = buffer.find(b"\n", block_bytes)
    return None if newline < 0 else newline + 1
