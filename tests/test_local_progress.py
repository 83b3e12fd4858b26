"""The progress bars of the local run and backfill.py (tools/progress.py): tqdm on a terminal, plain
lines elsewhere, and other output (the HTTP access log, log records) printed above a bar, not into it."""

from __future__ import annotations

import io
import logging
import re

from tools.progress import Bar, logs_above_bars, say

MB = 1024 * 1024


class Terminal(io.StringIO):
    """What a bar writes to a terminal."""

    def isatty(self) -> bool:
        return True


def screen_lines(text: str) -> list[str]:
    """What a terminal shows at the end: each line as left by its last carriage return."""
    return [line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]


def test_on_a_terminal_the_bar_is_redrawn_with_rate_and_eta():
    out = Terminal()
    bar = Bar("trips/big.csv", 24 * MB, out=out)
    for done in range(1, 25):
        bar.update(done * MB, 24 * MB, f"{done * 1000:,} rows, running")
    bar.close()
    text = out.getvalue()
    assert text.count("\r") > 1  # redrawn in place
    last = [line for line in screen_lines(text) if line][-1]
    assert re.search(r"trips/big\.csv: 100%.*24\.0M/24\.0M \[\d\d:\d\d<00:00, .*B/s, 24,000 rows, running\]", last), last


def test_elsewhere_plain_lines_at_most_every_interval_and_at_the_end():
    out = io.StringIO()
    bar = Bar("trips/big.csv", 24 * MB, out=out, plain_every=3600)
    for done in range(1, 25):
        bar.update(done * MB, 24 * MB, f"{done * 1000:,} rows, running")
    bar.close("24,000 rows, done")
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 1  # nothing in between: the interval had not passed
    assert re.fullmatch(r"trips/big\.csv: 100\.0% \(24\.0MB of 24\.0MB\) in \d\d:\d\d, .*B/s, 24,000 rows, done",
                        lines[0]), lines


def test_other_output_is_printed_above_the_bar_not_into_it(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)  # where say() and the log handler write
    logger = logging.getLogger("sluice.test-progress")  # its own level: Chalice sets "sluice" to ERROR
    logger.addHandler(logging.StreamHandler(terminal))
    monkeypatch.setattr(logger, "propagate", False)
    logger.setLevel(logging.INFO)
    try:
        with logs_above_bars("sluice.test-progress"):
            bar = Bar("trips/big.csv", 10 * MB, out=terminal)
            bar.update(3 * MB, 10 * MB, "3,000 rows, running")
            say("http: GET /trips/weekly-average?region=Turin 200")
            logger.warning("github: waiting 60s for the core rate limit until its reset")
            bar.update(10 * MB, 10 * MB, "10,000 rows, running")
            bar.close()
    finally:
        logger.handlers.clear()
        logger.setLevel(logging.NOTSET)
    shown = screen_lines(terminal.getvalue())
    assert "http: GET /trips/weekly-average?region=Turin 200" in shown
    assert "github: waiting 60s for the core rate limit until its reset" in shown
    assert shown.index("http: GET /trips/weekly-average?region=Turin 200") < len(shown) - 2
