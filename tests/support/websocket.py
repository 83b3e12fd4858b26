"""Test helpers for the WebSocket handlers: hand-built API Gateway events, and what moto received.

moto's API Gateway management API appends every PostToConnection body to the connection's `data`;
`sent()` splits that back into the JSON messages, in order. moto never answers 410 or fails a send,
so `fail_sends()` adds a botocore `before-call` hook that answers like API Gateway would for the
chosen connections (at the HTTP boundary: our code still runs in full).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

API_ID = "sluicews01"
STAGE = "api"
REGION = "us-east-1"


def ws_event(
    route_key: str,
    connection_id: str,
    body: str | None = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway WebSocket event as Lambda receives it."""
    event_type = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route_key, "MESSAGE")
    event: dict[str, Any] = {
        "requestContext": {
            "routeKey": route_key,
            "eventType": event_type,
            "messageId": uuid.uuid4().hex,
            "extendedRequestId": uuid.uuid4().hex,
            "requestTime": "22/Nov/2026:06:00:00 +0000",
            "messageDirection": "IN",
            "stage": STAGE,
            "connectedAt": int(time.time() * 1000),
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": "127.0.0.1"},
            "requestId": uuid.uuid4().hex,
            "domainName": f"{API_ID}.execute-api.{REGION}.amazonaws.com",
            "connectionId": connection_id,
            "apiId": API_ID,
        },
        "isBase64Encoded": False,
    }
    if body is not None:
        event["body"] = body
    if route_key == "$connect":
        event["headers"] = headers or {}
        event["queryStringParameters"] = query
    return event


def connect(client: Any, connection_id: str, **kwargs: Any) -> Any:
    return client.lambda_.invoke("on_ws_connect", ws_event("$connect", connection_id, **kwargs)).payload


def send(client: Any, connection_id: str, message: Any) -> Any:
    body = message if isinstance(message, str) else json.dumps(message)
    return client.lambda_.invoke("on_ws_message", ws_event("$default", connection_id, body)).payload


def disconnect(client: Any, connection_id: str) -> Any:
    return client.lambda_.invoke("on_ws_disconnect", ws_event("$disconnect", connection_id)).payload


def subscribe(client: Any, connection_id: str, target: str) -> None:
    connect(client, connection_id)
    send(client, connection_id, {"action": "subscribe", "ingestion_id": target})


def sent(connection_id: str) -> list[dict[str, Any]]:
    """Every message moto received for a connection, in order."""
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    backend = apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID][REGION]
    connection = backend.connections.get(connection_id)
    text = connection.data.decode() if connection else ""
    decoder, messages, pos = json.JSONDecoder(), [], 0
    while pos < len(text):
        message, pos = decoder.raw_decode(text, pos)
        messages.append(message)
    return messages


def ingestion_messages(connection_id: str) -> list[dict[str, Any]]:
    return [m["ingestion"] for m in sent(connection_id) if m["type"] == "ingestion"]


def statuses(connection_id: str) -> list[str]:
    """The statuses received, consecutive repeats (progress) collapsed: the order of the changes."""
    out: list[str] = []
    for ingestion in ingestion_messages(connection_id):
        if not out or out[-1] != ingestion["status"]:
            out.append(ingestion["status"])
    return out


def every_status(connection_id: str) -> list[str]:
    """The status of every ingestion message received, repeats included: counts progress messages."""
    return [ingestion["status"] for ingestion in ingestion_messages(connection_id)]


def _error_response(status: int, code: str) -> tuple[Any, dict[str, Any]]:
    from botocore.awsrequest import AWSResponse

    parsed = {
        "Error": {"Code": code, "Message": f"{code} (test)"},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
    }
    return AWSResponse("https://example.invalid", status, {}, None), parsed


@dataclass
class SendHook:
    """What the hook saw: connections whose send it entered, and those it has answered."""

    entered: list[str] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)


def fail_sends(
    session: Any, answers: dict[str, tuple[int, str]], block: threading.Event | None = None
) -> SendHook:
    """Make PostToConnection answer (status, error code) for some connections; status 0 hangs
    until `block` is set. Register before the session's management API client is created."""
    hook = SendHook()

    def before_call(params: dict[str, Any], **_: Any) -> Any:
        connection_id = params.get("url_path", "").rsplit("/", 1)[-1]
        if connection_id not in answers:
            return None
        hook.entered.append(connection_id)
        status, code = answers[connection_id]
        if block is not None and status == 0:
            block.wait(30)
            status, code = 504, "GatewayTimeout"
        hook.answered.append(connection_id)
        return _error_response(status, code)

    session.events.register("before-call.apigatewaymanagementapi.PostToConnection", before_call)
    return hook
