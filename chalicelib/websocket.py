"""Live ingestion status over WebSocket: the connection registry, the handlers' logic, and one Sender.

Protocol (see DESIGN.md, "The contract"). A client sends
    {"action": "subscribe", "ingestion_id": "<id>" | "*"}    -> {"type": "subscribed", "ingestion_id": ...}
                                                                then, for one id, its current state at once
    {"action": "unsubscribe", "ingestion_id": "<id>" | "*"}  -> {"type": "unsubscribed", "ingestion_id": ...}
    {"action": "ping"}                                        -> {"type": "pong"}
and receives {"type": "ingestion", "ingestion": {...as GET /ingestions/{id}...}} on every status change
and as throttled progress. Anything else gets {"type": "error", "error": "<sentence>"} back.

Sending goes through Chalice's `WebsocketAPI` (API Gateway's management API, PostToConnection). In
deployed stages it is configured from the API id; locally (`tools/local_ws.py`) the very same class
points at the local server, which speaks the same management API over http. One `Sender` serves both:
it sends in parallel within a small time budget, forgets gone connections (410) and never raises.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from chalice import Response
from chalice.app import WebsocketAPI, WebsocketDisconnectedError
from sqlalchemy.engine import Connection, Engine

from chalicelib import ingestions
from chalicelib.db import get_engine, is_postgres, metadata
from chalicelib.errors import SluiceError
from chalicelib.settings import Settings

log = logging.getLogger("sluice.websocket")

ALL = "*"
# Total wall time one notification may spend sending, whatever the number of clients.
SEND_BUDGET_SECONDS = 2.0
SEND_WORKERS = 8
# API Gateway closes a WebSocket after 10 minutes without traffic and after 2 hours in any case.
IDLE_LIMIT = dt.timedelta(minutes=10)
MAX_LIFETIME = dt.timedelta(hours=2)

connections = sa.Table(
    "websocket_connections",
    metadata,
    sa.Column("connection_id", sa.String(128), primary_key=True),
    sa.Column("connected_at", sa.DateTime, nullable=False),
    sa.Column("last_seen_at", sa.DateTime, nullable=False),
    sa.Index("ix_websocket_connections_last_seen", "last_seen_at"),
)

subscriptions = sa.Table(
    "websocket_subscriptions",
    metadata,
    sa.Column(
        "connection_id",
        sa.String(128),
        sa.ForeignKey("websocket_connections.connection_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # An ingestion id as text, or "*" for every ingestion.
    sa.Column("ingestion_id", sa.String(20), primary_key=True),
    sa.Index("ix_websocket_subscriptions_ingestion", "ingestion_id"),
)


class BadMessage(SluiceError):
    """A client's message is not one the protocol knows; the text goes back to the client."""

    status = 400


# --- the registry -----------------------------------------------------------------------------


def _insert(conn: Connection) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (both PostgreSQL and SQLite speak it)."""
    if is_postgres(conn):
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def register(conn: Connection, connection_id: str, now: dt.datetime) -> None:
    """Remember a connection (a repeated $connect just refreshes last_seen_at)."""
    query = _insert(conn)(connections).values(connection_id=connection_id, connected_at=now, last_seen_at=now)
    conn.execute(query.on_conflict_do_update(index_elements=["connection_id"], set_={"last_seen_at": now}))


def touch(conn: Connection, connection_ids: Sequence[str], now: dt.datetime) -> None:
    if connection_ids:
        conn.execute(
            connections.update()
            .where(connections.c.connection_id.in_(list(connection_ids)))
            .values(last_seen_at=now)
        )


def forget(conn: Connection, connection_ids: Sequence[str]) -> None:
    """Delete connections and their subscriptions."""
    if connection_ids:
        ids = list(connection_ids)
        conn.execute(subscriptions.delete().where(subscriptions.c.connection_id.in_(ids)))
        conn.execute(connections.delete().where(connections.c.connection_id.in_(ids)))


def subscribe(conn: Connection, connection_id: str, target: str, now: dt.datetime) -> None:
    """Subscribe idempotently; registers the connection too, should its $connect row be missing."""
    register(conn, connection_id, now)
    query = _insert(conn)(subscriptions).values(connection_id=connection_id, ingestion_id=target)
    conn.execute(query.on_conflict_do_nothing(index_elements=["connection_id", "ingestion_id"]))


def unsubscribe(conn: Connection, connection_id: str, target: str) -> None:
    conn.execute(
        subscriptions.delete().where(
            subscriptions.c.connection_id == connection_id, subscriptions.c.ingestion_id == target
        )
    )


def subscribers(conn: Connection, ingestion_id: int) -> list[str]:
    """Connections watching this ingestion, directly or through "*"."""
    query = (
        sa.select(subscriptions.c.connection_id)
        .where(subscriptions.c.ingestion_id.in_((str(ingestion_id), ALL)))
        .distinct()
        .order_by(subscriptions.c.connection_id)
    )
    return list(conn.execute(query).scalars())


def prune(conn: Connection, now: dt.datetime) -> int:
    """Forget connections API Gateway has certainly closed: idle too long, or open too long."""
    stale = sa.select(connections.c.connection_id).where(
        sa.or_(connections.c.last_seen_at < now - IDLE_LIMIT, connections.c.connected_at < now - MAX_LIFETIME)
    )
    ids = list(conn.execute(stale).scalars())
    forget(conn, ids)
    return len(ids)


# --- sending ----------------------------------------------------------------------------------

_LOCK = threading.Lock()
_SESSION: Any = None
_APIS: dict[tuple[str, ...], WebsocketAPI] = {}


class EndpointWebsocketAPI(WebsocketAPI):
    """Chalice's WebsocketAPI aimed at an explicit management endpoint URL (the local server's)."""

    _WEBSOCKET_ENDPOINT_TEMPLATE = "{domain_name}"


def _botocore_session() -> Any:
    """A botocore session whose clients time out quickly and do not retry (the budget is small)."""
    import botocore.session
    from botocore.config import Config

    core = botocore.session.get_session()
    core.set_default_client_config(Config(connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 1}))
    return core


def boto_session() -> Any:
    """The boto3 session every AWS management API client comes from (created on first use)."""
    global _SESSION
    with _LOCK:
        if _SESSION is None:
            import boto3

            _SESSION = boto3.session.Session(botocore_session=_botocore_session())
        return _SESSION


def reset() -> None:
    """Drop cached sessions and clients (tests, and the local server between runs)."""
    global _SESSION
    with _LOCK:
        _SESSION = None
        _APIS.clear()


def _cached_api(key: tuple[str, ...], build: Any) -> WebsocketAPI:
    with _LOCK:
        api = _APIS.get(key)
    if api is None:
        api = build()
        # Create the boto3 client now, in one thread: the Sender's threads then only share it.
        api._get_client()
        with _LOCK:
            api = _APIS.setdefault(key, api)
    return api


def local_api(endpoint_url: str) -> WebsocketAPI:
    """The management API of the local server (plain http, dummy credentials, no AWS account)."""

    def build() -> WebsocketAPI:
        import boto3

        session = boto3.session.Session(
            botocore_session=_botocore_session(),
            aws_access_key_id="local",
            aws_secret_access_key="local",  # the local server checks no signature
            region_name="us-east-1",
        )
        api = EndpointWebsocketAPI()
        api.session = session
        api.configure(endpoint_url.rstrip("/"), "")
        return api

    return _cached_api(("local", endpoint_url), build)


def deployed_api(api_id: str, stage: str) -> WebsocketAPI:
    """Chalice's WebsocketAPI for WEBSOCKET_API_ID, as `app.websocket_api` is configured in handlers.

    notify runs in chalicelib (no `app` at hand) and in Lambdas that are not WebSocket handlers, so it
    keeps its own instance, configured with `configure_from_api_id` exactly as Chalice documents.
    """

    def build() -> WebsocketAPI:
        api = WebsocketAPI()
        api.session = boto_session()
        api.configure_from_api_id(api_id, stage)
        return api

    return _cached_api(("aws", api_id, stage), build)


def notifier_api(settings: Settings) -> WebsocketAPI | None:
    """Where pipeline notifications go: the local server, the deployed API, or nowhere."""
    if settings.websocket_endpoint_url:
        return local_api(settings.websocket_endpoint_url)
    if settings.websocket_api_id:
        return deployed_api(settings.websocket_api_id, settings.websocket_stage)
    return None


def handler_api(app_api: WebsocketAPI, settings: Settings) -> WebsocketAPI:
    """Where a WebSocket handler replies: `app.websocket_api` (configured by Chalice from the event),
    or the local server when this process runs one."""
    if settings.websocket_endpoint_url:
        return local_api(settings.websocket_endpoint_url)
    if app_api.session is None:
        app_api.session = boto_session()
    return app_api


@dataclass
class SendReport:
    delivered: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    late: list[str] = field(default_factory=list)


def _is_gone(exc: Exception) -> bool:
    if isinstance(exc, WebsocketDisconnectedError):
        return True
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status == 410


class Sender:
    """Sends one message to many connections, in parallel, within a time budget; never raises.

    Gone connections (WebsocketDisconnectedError, 410) are forgotten; failures are logged and kept
    (the next message may get through); sends still running when the budget is spent are left to
    finish on their own, bounded by the client's timeouts, and the caller moves on.
    """

    def __init__(self, api: WebsocketAPI, engine: Engine, budget: float | None = None) -> None:
        self.api = api
        self.engine = engine
        self.budget = SEND_BUDGET_SECONDS if budget is None else budget

    def send(self, connection_ids: Sequence[str], message: dict[str, Any]) -> SendReport:
        report = SendReport()
        if not connection_ids:
            return report
        data = json.dumps(message, separators=(",", ":"))
        pool = ThreadPoolExecutor(max_workers=min(SEND_WORKERS, len(connection_ids)))
        futures = {pool.submit(self.api.send, cid, data): cid for cid in connection_ids}
        done, _ = wait(futures, timeout=self.budget)
        pool.shutdown(wait=False, cancel_futures=True)
        for future, cid in futures.items():
            self._classify(report, cid, future if future in done else None)
        self._record(report)
        return report

    @staticmethod
    def _classify(report: SendReport, cid: str, future: Any) -> None:
        if future is None:
            log.warning("sending to WebSocket connection %s took longer than the budget", cid)
            report.late.append(cid)
            return
        exc = future.exception()
        if exc is None:
            report.delivered.append(cid)
        elif _is_gone(exc):
            report.gone.append(cid)
        else:
            log.warning("could not send to WebSocket connection %s: %s", cid, type(exc).__name__)
            report.failed.append(cid)

    def _record(self, report: SendReport) -> None:
        if not (report.gone or report.delivered):
            return
        try:
            with self.engine.begin() as conn:
                forget(conn, report.gone)
                touch(conn, report.delivered, ingestions.utcnow())
        except Exception:  # noqa: BLE001 - bookkeeping must not fail the caller
            log.exception("could not update the WebSocket registry after sending")


def publish(engine: Engine, settings: Settings, message: dict[str, Any]) -> SendReport | None:
    """Send an ingestion message to its subscribers (None when no WebSocket API is configured)."""
    api = notifier_api(settings)
    if api is None:
        return None
    with engine.connect() as conn:
        ids = subscribers(conn, message["ingestion"]["id"])
    return Sender(api, engine).send(ids, message)


# --- the handlers' logic ----------------------------------------------------------------------


def connect(event: Any, settings: Settings) -> Response | None:
    """$connect: check the token (deployed stages), then register; a Response rejects the client."""
    refusal = authorize(event.to_dict(), settings)
    if refusal is not None:
        status, sentence = refusal
        return Response(body={"error": sentence}, status_code=status)
    with get_engine(settings.database_url).begin() as conn:
        register(conn, event.connection_id, ingestions.utcnow())
    return None


def authorize(event: dict[str, Any], settings: Settings) -> tuple[int, str] | None:
    """None if the client may connect, else (HTTP status, sentence). The local stage is open."""
    if settings.stage == "local":
        return None
    try:
        expected = _expected_token(settings)
    except SluiceError:
        log.exception("could not read the WebSocket token")
        return 500, "The server could not read its WebSocket token; try again later."
    if not expected:
        return 500, "The WebSocket API has no token configured (WEBSOCKET_TOKEN_PARAMETER)."
    given = presented_token(event)
    if not given:
        return 401, "A token is required: connect with ?token=<token> or 'Authorization: Bearer <token>'."
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return 403, "The token is not valid for this WebSocket API."
    return None


def _expected_token(settings: Settings) -> str:
    from chalicelib.secrets import value_or_parameter

    return value_or_parameter(settings.websocket_token, settings.websocket_token_parameter)


def presented_token(event: dict[str, Any]) -> str:
    """The token from the query string (browsers cannot set headers) or a Bearer header."""
    query = event.get("queryStringParameters") or {}
    if query.get("token"):
        return str(query["token"])
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def disconnect(event: Any, settings: Settings) -> None:
    with get_engine(settings.database_url).begin() as conn:
        forget(conn, [event.connection_id])


def message(event: Any, app_api: WebsocketAPI, settings: Settings) -> None:
    """$default: answer one client message. Every message gets a reply: a bad one an error saying what
    is wrong, and one we fail on (database down, say) an error saying so; the handler never raises."""
    engine = get_engine(settings.database_url)
    try:
        replies = answer(engine, event.connection_id, parse_request(event.body))
    except BadMessage as exc:
        replies = [{"type": "error", "error": str(exc)}]
    except Exception:  # noqa: BLE001 - the client still gets an answer; the cause goes to the log
        log.exception("could not answer a message from WebSocket connection %s", event.connection_id)
        replies = [{"type": "error", "error": "The server could not handle that message; try again later."}]
    sender = Sender(handler_api(app_api, settings), engine)
    for reply in replies:
        sender.send([event.connection_id], reply)


@dataclass(frozen=True)
class Request:
    """A parsed client message: `action` is subscribe, unsubscribe or ping; `target` an id or "*"."""

    action: str
    target: str = ""


EXAMPLE = '{"action": "subscribe", "ingestion_id": "<id>"} (or "*" for every ingestion)'
# A request is a few dozen bytes; API Gateway lets frames of up to 128 KB through. Anything longer is
# refused before it is parsed, and parsing itself is bounded (see `_decode`).
MAX_MESSAGE_BYTES = 4096
# Ingestion ids are PostgreSQL `integer`s: a larger number names no ingestion and must never reach a query.
MAX_INGESTION_ID = 2**31 - 1
_ID = re.compile(r"[0-9]{1,10}")


def parse_request(body: str | None) -> Request:
    """The request in a client's text frame, or BadMessage saying what is wrong with it."""
    request = _decode(body)
    if not isinstance(request, dict):
        raise BadMessage(f"Messages must be JSON objects like {EXAMPLE}; got {_clip(body)}.")
    action = request.get("action")
    if action == "ping":
        return Request("ping")
    if action not in ("subscribe", "unsubscribe"):
        raise BadMessage(
            f"Unknown action {_clip(_show(action))}: use subscribe, unsubscribe or ping, as in {EXAMPLE}."
        )
    if "ingestion_id" not in request:
        raise BadMessage(f"{action} needs an ingestion_id, as in {EXAMPLE}.")
    return Request(action, parse_target(request["ingestion_id"]))


def _decode(body: str | None) -> Any:
    """JSON from a frame of at most MAX_MESSAGE_BYTES; None when it is not JSON. Nesting deeper than
    Python's recursion limit (a 4 KiB frame can hold 4,096 levels) is not JSON we accept either."""
    text = body or ""
    if len(text) > MAX_MESSAGE_BYTES or len(text.encode("utf-8", "replace")) > MAX_MESSAGE_BYTES:
        raise BadMessage(f"Messages must be at most {MAX_MESSAGE_BYTES} bytes, like {EXAMPLE}; "
                         f"got {len(text.encode('utf-8', 'replace')):,} bytes.")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def parse_target(raw: Any) -> str:
    """An ingestion id as canonical text (ASCII digits or a JSON whole number, 1..2147483647), or "*"."""
    if raw == ALL:
        return ALL
    if isinstance(raw, int) and not isinstance(raw, bool):
        number = raw
    elif isinstance(raw, str) and _ID.fullmatch(raw):
        number = int(raw)
    else:
        number = 0
    if not 1 <= number <= MAX_INGESTION_ID:
        raise BadMessage(
            f'ingestion_id must be an ingestion\'s id (a whole number from 1 to {MAX_INGESTION_ID}, as text '
            f'or a number) or "*" for every ingestion, got {_clip(_show(raw))}.'
        )
    return str(number)


def _show(value: Any) -> str:
    """A client's value as JSON, for an error message (values from JSON always serialise)."""
    try:
        return json.dumps(value)
    except (ValueError, RecursionError):
        return "an unreadable value"


def _clip(text: str | None, limit: int = 80) -> str:
    text = "nothing" if not text else text
    return text if len(text) <= limit else text[:limit] + "..."


def answer(engine: Engine, connection_id: str, request: Request) -> list[dict[str, Any]]:
    """Apply a request to the registry and return the replies, in order."""
    now = ingestions.utcnow()
    with engine.begin() as conn:
        if request.action == "ping":
            touch(conn, [connection_id], now)
            return [{"type": "pong"}]
        if request.action == "unsubscribe":
            unsubscribe(conn, connection_id, request.target)
            touch(conn, [connection_id], now)
            return [{"type": "unsubscribed", "ingestion_id": request.target}]
        current = None if request.target == ALL else _current(conn, int(request.target))
        subscribe(conn, connection_id, request.target, now)
    replies: list[dict[str, Any]] = [{"type": "subscribed", "ingestion_id": request.target}]
    return replies + ([current] if current else [])


def _current(conn: Connection, ingestion_id: int) -> dict[str, Any]:
    """The ingestion's message as it stands, so a late subscriber is not blind until the next change."""
    row = ingestions.get(conn, ingestion_id)
    if row is None:
        raise BadMessage(f"There is no ingestion {ingestion_id}; GET /ingestions lists them.")
    return {"type": "ingestion", "ingestion": ingestions.to_json(conn, row)}


def prune_idle(settings: Settings) -> int:
    """The schedule's work: forget connections API Gateway has closed without telling us."""
    with get_engine(settings.database_url).begin() as conn:
        return prune(conn, ingestions.utcnow())
