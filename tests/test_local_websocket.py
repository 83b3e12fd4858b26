"""A real WebSocket client against the local server, while a local ingestion runs through on_csv_upload."""

from __future__ import annotations

import asyncio
import json

import pytest
import sqlalchemy as sa

from chalicelib import ingestions, websocket
from tests.support.ingest import get, ingest

HEADER = b"region,origin_coord,destination_coord,datetime,datasource\n"
ROW = b"Prague,POINT (14.4973794438195 50.00136875782316),POINT (14.43109483523328 50.04052930943246),2018-05-28 09:03:40,cheap_mobile\n"
WAIT = 30  # seconds: a bound on every wait, never an expectation


@pytest.fixture
def local_ws(client, monkeypatch):
    """The local server on a free port; this process's notifications go to it."""
    from app import app
    from tools.local_ws import LocalWebSocketServer

    monkeypatch.delenv("WEBSOCKET_API_ID", raising=False)
    server = LocalWebSocketServer(app, port=0)
    url = server.start()
    yield url
    server.stop()


async def _recv(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), WAIT))


async def _watch_ingestion(url: str, run_ingestion) -> tuple[list[dict], list[dict], dict]:
    """Subscribe to "*", run the ingestion in a thread, collect messages up to the final status."""
    from websockets.asyncio.client import connect

    async with connect(url) as ws:
        await ws.send("this is not json")
        error = await _recv(ws)
        await ws.send(json.dumps({"action": "subscribe", "ingestion_id": "*"}))
        ack = await _recv(ws)
        ingestion_task = asyncio.create_task(asyncio.to_thread(run_ingestion))
        received: list[dict] = []
        while not received or received[-1]["ingestion"]["status"] not in ("done", "failed"):
            received.append(await _recv(ws))
        result = await asyncio.wait_for(ingestion_task, WAIT)
    return [error, ack], received, result


def _registry(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(websocket.connections.c.connection_id)).scalars())


def test_a_real_client_watches_a_local_ingestion(local_ws, client, aws, engine, monkeypatch):
    monkeypatch.setenv("CHUNK_BYTES", "1024")
    with engine.begin() as conn:  # a client whose socket died without a $disconnect
        websocket.subscribe(conn, "ghost", "*", ingestions.utcnow())

    def run_ingestion() -> dict:
        return ingest(client, aws, "trips/local-live.csv", HEADER + ROW * 60)

    (error, ack), received, final = asyncio.run(_watch_ingestion(local_ws, run_ingestion))

    assert error["type"] == "error" and error["error"].startswith("Messages must be JSON objects")
    assert ack == {"type": "subscribed", "ingestion_id": "*"}
    assert all(m["type"] == "ingestion" for m in received)
    states = [m["ingestion"] for m in received]
    statuses = [s["status"] for s in states]
    assert statuses[:2] == ["queued", "running"]
    assert statuses[-1] == "done"
    assert set(statuses[2:-1]) <= {"running"}  # progress, however many the throttle let through
    bytes_done = [s["bytes_done"] for s in states]
    assert bytes_done == sorted(bytes_done)
    assert final["status"] == "done" and final["rows_loaded"] == 60
    assert states[-1] == get(client, f"/ingestions/{final['id']}")

    # The ghost's sends were answered 410 by the local management API, so it is forgotten; and the
    # real client's close ran $disconnect through the same handlers.
    for _ in range(WAIT * 10):
        if not _registry(engine):
            break
        asyncio.run(asyncio.sleep(0.1))
    assert _registry(engine) == []


def test_a_bad_local_subscription_is_answered_not_fatal(local_ws):
    from websockets.asyncio.client import connect

    async def scenario() -> list[dict]:
        async with connect(local_ws) as ws:
            replies = []
            for frame in (json.dumps({"action": "subscribe", "ingestion_id": "12345"}),
                          json.dumps({"action": "subscribe", "ingestion_id": "\u00b2"}),
                          "[" * 100_000,
                          json.dumps({"action": "subscribe", "ingestion_id": "99999999999"}),
                          json.dumps({"action": "ping"})):
                await ws.send(frame)
                replies.append(await _recv(ws))
            return replies

    missing, superscript, deep, too_large, pong = asyncio.run(scenario())
    assert missing == {"type": "error", "error": "There is no ingestion 12345; GET /ingestions lists them."}
    assert superscript["type"] == too_large["type"] == "error"
    assert superscript["error"].startswith("ingestion_id must be") and too_large["error"].startswith("ingestion_id must be")
    assert deep["type"] == "error" and deep["error"].startswith("Messages must be at most 4096 bytes")
    assert pong == {"type": "pong"}
