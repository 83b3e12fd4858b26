"""The one interface every dataset implements, and what the pipeline promises in return.

A dataset is a module (or a package whose `__init__` re-exports these names) registered in
`chalicelib/datasets/__init__.py`. The pipeline (`chalicelib/pipeline.py`) reads only the members of
`Dataset` below; everything else in the module (its routes' queries, its helpers) is its own.

What the pipeline does for every dataset, so a dataset does not:
- picks the dataset by the key's first folder (`PREFIX`), rejects keys that are not `.csv`/`.csv.gz`,
  empty files, binary or non-UTF-8 text and unreadable headers with a sentence;
- finds the columns by header name (`COLUMNS`, any order, extra columns ignored), or, for a
  headerless dataset, takes them in `COLUMNS` order and skips a first line that names them;
- cuts the object into chunks of whole lines (byte ranges, or gzip blocks), and rejects with their
  line numbers the lines it cannot hand over: wrong field count, over MAX_LINE_BYTES, part of a
  quoted field that spans lines;
- runs, per chunk and in one transaction: `context` -> `parse` -> `load`, with the chunk's marker and
  counters, so a chunk is loaded exactly once;
- when every chunk is in: the reject-share rule, then the `FINISH_STEPS` (each once, in parallel),
  then `finish` in the transaction that marks the ingestion done;
- takes a file back out with `discard` when it fails as a whole, is superseded by a new version of
  its key, or is deleted; and then deletes its result files under `results.prefix(PREFIX, id)`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from chalicelib.csvblock import Block


@dataclass
class Parsed:
    """What `parse` returns: the typed rows to load, and the rejected ones.

    `rejects` holds (line within the block, sentence) for at most `keep_errors` rejected rows;
    `rejected` counts them all.
    """

    table: pa.Table
    rejects: list[tuple[int, str]] = field(default_factory=list)
    rejected: int = 0


class Dataset(Protocol):
    """The members the pipeline reads from a dataset module (each contract in one line)."""

    #: The key's first folder that selects this dataset: `trips` for `trips/2018-05.csv`.
    PREFIX: str
    #: True if files start with a header line; False if the columns are in COLUMNS order.
    HAS_HEADER: bool
    #: Column name -> the header spellings accepted for it (lower case), in file order if headerless.
    COLUMNS: dict[str, tuple[str, ...]]
    #: Every table holding the dataset's rows or rollups (each row of a file is found by ingestion_id).
    TABLES: tuple[sa.Table, ...]
    #: How many independent finishing steps run when every chunk is in (0: none).
    FINISH_STEPS: int

    def context(self, conn: Connection, settings: Any) -> Any:
        """Whatever `parse` needs beyond the rows (e.g. the trips grid); read in the chunk's transaction."""

    def parse(self, block: Block, ctx: Any, keep_errors: int) -> Parsed:
        """Type and validate a block of string columns, vectorised; bad rows become rejects."""

    def load(self, conn: Connection, table: pa.Table, ingestion_id: int) -> int:
        """Store typed rows and their per-chunk rollups in the caller's transaction; return the
        number newly stored (the others count as `rows_duplicate`)."""

    def finish_step(self, conn: Connection, ingestion_id: int, step: int, steps: int, sign: int = 1) -> None:
        """Run finishing step `step` of `steps` over the file's rows; sign -1 takes it back."""

    def finish(self, conn: Connection, ingestion: dict[str, Any], settings: Any) -> None:
        """The last work on a complete file (reports, result files), in the transaction marking it done."""

    def discard(self, conn: Connection, ingestion_id: int, steps_done: Iterable[int]) -> None:
        """Take the ingestion's rows out of every table and rollup (the steps in `steps_done` had run)."""
