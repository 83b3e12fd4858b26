"""Routes answer while a file loads (issue 15, item 13). In the local run the HTTP API and the
ingestion share one SQLite database; a route used to wait for each chunk's write transaction (up to 2 s
behind a 300,000-row load). `python -m bench.local_latency` measures it; this pins down the cause: a
read must not queue behind a writer that holds the database's write lock."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from chalicelib import websocket
from chalicelib.db import get_engine
from tests.support.ingest import get, ingest
from tools.generate_trips import canonical_sample

HOLD = 20.0  # seconds the writer holds its transaction at most: a bound, never an expectation


def test_a_route_answers_while_a_writer_holds_the_database(client, aws, app_env, tmp_path):
    sample = tmp_path / "canonical.csv"
    canonical_sample(sample)
    assert ingest(client, aws, "trips/canonical.csv", sample.read_bytes())["status"] == "done"
    expected = get(client, "/trips/weekly-average?region=Turin")

    engine = get_engine(app_env)
    locked, release = threading.Event(), threading.Event()

    def writer() -> None:
        with engine.begin() as conn:  # as a chunk's transaction does: the write lock until commit
            websocket.register(conn, "writer", websocket.ingestions.utcnow())
            locked.set()
            release.wait(HOLD)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert locked.wait(HOLD)
        answer = get(client, "/trips/weekly-average?region=Turin")
        with engine.connect() as conn:  # a plain read sees the last commit, not the open transaction
            seen = conn.execute(sa.select(sa.func.count()).select_from(websocket.connections)).scalar_one()
        still_open = not release.is_set() and thread.is_alive()
    finally:
        release.set()
        thread.join(HOLD)
    assert still_open  # both reads returned while the writer still held its transaction
    assert answer == expected and answer["trips"] == 38
    assert seen == 0
