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

from chalicelib.csvblock import MAX_LINE_BYTES
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


def read_lines(
    read: Callable[[int, int], bytes], chunk: Chunk, size: int, tail: int = EXTEND_STEP,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> bytes:
    """The complete lines that start in [chunk.start, chunk.end); `read(a, b)` returns bytes [a, b).

    One read covers the chunk and `tail` bytes past its end, where its last line almost always ends
    (one request per chunk, not two); a longer last line is finished with further reads, but never
    past `max_line_bytes` + 1 bytes of it: an over-long line is returned cut (csvblock rejects it).
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
        line_start = data.rfind(b"\n") + 1
        budget = max_line_bytes + 1 - (len(data) - line_start)
        if budget > 0:
            data += _rest_of_line(read, base + len(data), size, budget)
    if chunk.start == 0 and data.startswith(BOM):
        data = data[len(BOM):]
    return data


def _rest_of_line(read: Callable[[int, int], bytes], pos: int, size: int, budget: int) -> bytes:
    """Bytes from `pos` to the end of the line (its newline included), or `budget` bytes at most."""
    parts: list[bytes] = []
    while pos < size and budget > 0:
        piece = read(pos, min(size, pos + min(EXTEND_STEP, budget)))
        newline = piece.find(b"\n")
        if newline >= 0:
            parts.append(piece[: newline + 1])
            break
        parts.append(piece)
        pos += len(piece)
        budget -= len(piece)
    return b"".join(parts)


TRUNCATED = (
    "The file ends in .gz but is not valid gzip data (corrupt or truncated); nothing from it was kept. "
    "Check the upload (gzip -t FILE) and upload it again."
)
#: Decompressed bytes produced per step: a gzip bomb is read in bounded pieces.
INFLATE_STEP = 1024 * 1024


class _Inflater:
    """gzip decompression in bounded steps, across concatenated members, that knows a cut stream."""

    def __init__(self) -> None:
        self.d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.started = False

    def feed(self, raw: bytes) -> Iterator[bytes]:
        data = raw
        while data:
            if self.d.eof:  # a new member follows (gzip files may be concatenations)
                self.d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self.started = True
            try:
                out = self.d.decompress(data, INFLATE_STEP)
            except zlib.error:
                raise FileRejected(TRUNCATED) from None
            if out:
                yield out
            data = self.d.unused_data if self.d.eof else self.d.unconsumed_tail

    def check_complete(self) -> None:
        """The stream must end at the end of a member (its CRC and length checked by zlib)."""
        if not self.started or not self.d.eof:
            raise FileRejected(TRUNCATED)


def gzip_blocks(
    stream, block_bytes: int, read_size: int = 1024 * 1024, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[Chunk, bytes]]:
    """(chunk, lines) blocks of a gzip stream; chunk offsets are compressed bytes consumed (progress).

    Each block is held back until the next one is cut, so the last one can end at the true end of the
    compressed stream (its trailer included) and progress reaches bytes_total exactly; a stream that
    ends early (or fails its CRC) raises FileRejected before that last block is handed out. Memory
    stays bounded: decompression runs in INFLATE_STEP pieces, and a line longer than
    `max_line_bytes` keeps only its first max_line_bytes + 1 bytes (csvblock rejects it).
    """
    inflater = _Inflater()
    lines = _LineBuffer(max_line_bytes)
    pending: tuple[Chunk, bytes] | None = None
    consumed = start = seq = 0
    for raw in iter(lambda: stream.read(read_size), b""):
        consumed += len(raw)
        for piece in inflater.feed(raw):
            lines.add(piece)
            while (block := lines.cut(block_bytes)) is not None:
                if pending:
                    yield pending
                pending = (Chunk(seq, start, consumed), block)
                seq, start = seq + 1, consumed
    inflater.check_complete()
    rest = lines.rest()
    if rest:
        if pending:
            yield pending
        pending = (Chunk(seq, start, consumed), rest)
    if pending:
        yield Chunk(pending[0].seq, pending[0].start, consumed), pending[1]


class _LineBuffer:
    """Decompressed text waiting to be cut into blocks of whole lines; drops a BOM at the start and
    the part of an over-long line beyond max_line_bytes + 1 bytes."""

    def __init__(self, max_line_bytes: int) -> None:
        self.buffer = bytearray()
        self.max_line = max_line_bytes
        self.line_start = 0  # where the last (unfinished) line starts in the buffer
        self.skipping = False  # dropping the rest of an over-long line
        self.bom_checked = False

    def add(self, piece: bytes) -> None:
        if self.skipping:
            newline = piece.find(b"\n")
            if newline < 0:
                return
            piece, self.skipping = piece[newline:], False
        offset = len(self.buffer)
        self.buffer += piece
        if not self.bom_checked and len(self.buffer) >= len(BOM):
            self.bom_checked = True
            if self.buffer.startswith(BOM):
                del self.buffer[: len(BOM)]
                offset = max(0, offset - len(BOM))
        newline = self.buffer.rfind(b"\n", offset)
        if newline >= 0:
            self.line_start = newline + 1
        if len(self.buffer) - self.line_start > self.max_line + 1:
            del self.buffer[self.line_start + self.max_line + 1:]
            self.skipping = True

    def cut(self, block_bytes: int) -> bytes | None:
        if len(self.buffer) < block_bytes or (cut := _cut_point(self.buffer, block_bytes)) is None:
            return None
        block = bytes(self.buffer[:cut])
        del self.buffer[:cut]
        self.line_start = max(0, self.line_start - cut)
        return block

    def rest(self) -> bytes:
        if not self.bom_checked and self.buffer.startswith(BOM):
            del self.buffer[: len(BOM)]
        return bytes(self.buffer)


def _cut_point(buffer: bytearray, block_bytes: int) -> int | None:
    newline = buffer.rfind(b"\n", 0, block_bytes)
    if newline < 0:
        newline = buffer.find(b"\n", block_bytes)
    return None if newline < 0 else newline + 1
