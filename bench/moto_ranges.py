"""`moto_server` whose ranged GETs read only the range, as S3 does.

moto answers `GET` with `Range: bytes=a-b` by reading the whole stored object and slicing it: for a
1.1 GB object that is a gigabyte read per 4 MiB chunk (164 CPU-seconds per run of bench.plays, on
the same two cores as the pipeline), a cost real S3 does not have. Run as
`python -m bench.moto_ranges -H 127.0.0.1 -p PORT` (moto_server's own arguments): the same server,
with `FakeKey.value` handing a ranged GET a window that reads its slice from the stored bytes.
Every other request is served by moto unchanged.
"""

from __future__ import annotations

import re
import sys
import threading
from typing import Any

_RANGE = re.compile(r"bytes=\d+-\d+")
_local = threading.local()


class _Window:
    """The stored bytes of a key, read only where sliced (len() and [a:b] are all moto's range code uses)."""

    def __init__(self, key: Any) -> None:
        self.key = key

    def __len__(self) -> int:
        return int(self.key.size)

    def __getitem__(self, part: slice) -> bytes:
        with self.key.lock:
            self.key._value_buffer.seek(part.start)
            return self.key._value_buffer.read(min(part.stop, len(self)) - part.start)


def patch() -> None:
    from moto.s3.models import FakeKey
    from moto.s3.responses import S3Response

    stored = FakeKey.value
    get_object = S3Response.get_object

    def value(self: Any) -> Any:
        return _Window(self) if getattr(_local, "ranged", False) else stored.fget(self)

    def ranged_get_object(self: Any) -> Any:
        _local.ranged = bool(_RANGE.fullmatch(self.headers.get("range") or ""))
        try:
            return get_object(self)
        finally:
            _local.ranged = False

    FakeKey.value = property(value, stored.fset)
    S3Response.get_object = ranged_get_object


if __name__ == "__main__":
    from moto.server import main

    patch()
    sys.exit(main(sys.argv[1:]))
