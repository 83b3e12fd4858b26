"""Telling watchers that an ingestion changed: on every status change, and as throttled progress.

Progress is throttled through the database (`ingestions.notified_at`), so parallel workers on one
ingestion send about one progress message a second between them, not one per chunk. Delivery never
fails an ingestion: any error here is logged and dropped.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from chalicelib import ingestions

log = logging.getLogger("sluice.notify")

PROGRESS_INTERVAL = dt.timedelta(seconds=1)

Listener = Callable[[dict[str, Any]], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


def add_listener(listener: Listener) -> None:
    """Receive every message in this process too (the local runner's progress bar uses this)."""
    with _lock:
        _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def changed(engine: Engine, settings: Any, ingestion_id: int, status_changed: bool) -> None:
    """Send the ingestion's current state to its watchers, unless it is progress sent too recently."""
    try:
        message = _claim_message(engine, ingestion_id, status_changed)
        if message is None:
            return
        with _lock:
            listeners = list(_listeners)
        for listener in listeners:
            listener(message)
        deliver(engine, settings, message)
    except Exception:  # noqa: BLE001 - a failing notification must never fail an ingestion
        log.exception("could not notify watchers of ingestion %s", ingestion_id)


def _claim_message(engine: Engine, ingestion_id: int, status_changed: bool) -> dict[str, Any] | None:
    """Stamp notified_at (only if a second has passed, for progress) and build the message."""
    table = ingestions.ingestions
    now = ingestions.utcnow()
    with engine.begin() as conn:
        query = table.update().where(table.c.id == ingestion_id).values(notified_at=now)
        if not status_changed:
            query = query.where(
                sa.or_(table.c.notified_at.is_(None), table.c.notified_at <= now - PROGRESS_INTERVAL),
                table.c.status == "running",
            )
        if conn.execute(query).rowcount != 1:
            return None
        row = ingestions.get(conn, ingestion_id)
        return {"type": "ingestion", "ingestion": ingestions.to_json(conn, row)}


def deliver(engine: Engine, settings: Any, message: dict[str, Any]) -> None:
    """Push a message to the WebSocket clients subscribed to its ingestion (or to "*").

    Bounded: `websocket.Sender` spends at most SEND_BUDGET_SECONDS per message, forgets gone
    clients and never raises for a failed send.
    """
    from chalicelib import websocket

    websocket.publish(engine, settings, message)
