"""Progress bars for the local run (`tools/local.py`) and `backfill.py`, drawn by tqdm.

On a terminal a bar is tqdm's: redrawn in place at the terminal's width, with its rate and ETA. Lines
written with `say()`, and log records while `logs_above_bars()` is active, are printed above the bars
instead of through them. When the output is not a terminal (a pipe, a file, CI) nothing is redrawn: a
bar writes one plain line at most every `PLAIN_EVERY` seconds, and one when it closes.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

PLAIN_EVERY = 10.0  # seconds between two plain progress lines
# <N> and <T> stand for the unit after each count ("B" for bytes; other units say theirs after the total).
PLAIN_FORMAT = "{desc}: {percentage:.1f}% ({n_fmt}<N> of {total_fmt}<T>) in {elapsed}, {rate_fmt}{postfix}"
PLAIN_FORMAT_NO_TOTAL = "{desc}: {n_fmt}<T> in {elapsed}, {rate_fmt}{postfix}"


def is_terminal(out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    return bool(isatty and isatty())


def say(text: str, out: TextIO | None = None) -> None:
    """Print a line above any bar being drawn (a plain print when there is none)."""
    tqdm.write(text, file=out or sys.stderr)


@contextmanager
def logs_above_bars(*logger_names: str) -> Iterator[None]:
    """Send console log records (the root logger's and those of `logger_names`) through tqdm meanwhile."""
    loggers = [logging.root, *(logging.getLogger(name) for name in logger_names)]
    with logging_redirect_tqdm(loggers=loggers):
        yield


class Bar:
    """One progress bar: `update(n, total, note)` as progress comes in (from any thread), then `close()`."""

    def __init__(self, desc: str, total: float | None = None, *, unit: str = "B", out: TextIO | None = None,
                 plain_every: float = PLAIN_EVERY) -> None:
        self.out = out or sys.stderr
        self.terminal = is_terminal(self.out)
        self.plain_every = plain_every
        self._lock = threading.Lock()
        self._started = self._plain_at = time.monotonic()
        scale = {"unit_scale": True, "unit_divisor": 1024} if unit == "B" else {}
        self._bar = tqdm(desc=desc, total=total, unit=unit, file=self.out, dynamic_ncols=True, leave=True,
                         mininterval=0.2, disable=not self.terminal, **scale)
        # A disabled tqdm keeps no state: these are the plain lines' own.
        self.desc, self.total, self.n, self.note, self.unit, self.scale = desc, total, 0.0, "", unit, scale

    def update(self, n: float, total: float | None = None, note: str = "") -> None:
        with self._lock:
            self.n, self.note = n, note
            if total is not None:
                self.total = total
            if self.terminal:
                if total is not None and self._bar.total != total:
                    self._bar.total = total
                self._bar.set_postfix_str(note, refresh=False)
                self._bar.update(n - self._bar.n)
            elif time.monotonic() - self._plain_at >= self.plain_every:
                self._plain_at = time.monotonic()
                say(self.plain_line(), self.out)

    def close(self, note: str | None = None) -> None:
        with self._lock:
            if note is not None:
                self.note = note
            if self.terminal:
                self._bar.set_postfix_str(self.note, refresh=False)
                self._bar.close()
            else:
                say(self.plain_line(), self.out)

    def plain_line(self) -> str:
        """What the bar says, as one line of text without the bar itself."""
        elapsed = time.monotonic() - self._started
        total = self.total if self.total else None
        units = ("B", "B") if self.unit == "B" else ("", self.unit)
        fmt = (PLAIN_FORMAT if total else PLAIN_FORMAT_NO_TOTAL).replace("<N>", units[0]).replace("<T>", units[1])
        return tqdm.format_meter(self.n, total, elapsed, prefix=self.desc, unit=self.unit,
                                 postfix=self.note or None, bar_format=fmt, **self.scale)

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
