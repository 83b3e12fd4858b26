"""Logging: one JSON object per line in deployed stages, plain text locally.

Inside Lambda (AWS_LAMBDA_FUNCTION_NAME is set by the runtime, never by Chalice's test client or local
server) every line is a JSON object carrying the stage, the function, the request id and, where known,
the ingestion id and chunk, so that CloudWatch Logs Insights can filter on them:

    {"time": "2026-11-22T06:00:01.123Z", "level": "ERROR", "logger": "sluice.pipeline",
     "message": "...", "stage": "prod", "function": "sluice-prod-on_chunk_message",
     "request_id": "8f5c...", "ingestion_id": 42, "chunk": 7}

Those fields come from a per-invocation context (`bind`, `invocation`), or from a record's `extra`.
Known secret values (the ones chalicelib.secrets has read) are masked in every formatted line.
Nothing is configured at import: `invocation` configures logging on a Lambda's first call.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

FIELDS = ("stage", "function", "request_id", "ingestion_id", "chunk")
_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("sluice_log_context", default=None)
_CONFIGURED = False
APP_LOGGER = "sluice"  # Chalice's app logger (app_name), parent of every sluice.* logger
QUIET = ("botocore", "boto3", "s3transfer", "urllib3")

log = logging.getLogger("sluice.logs")


def current() -> dict[str, Any]:
    """The fields bound for this invocation (a copy)."""
    return dict(_CONTEXT.get() or {})


def bind(**fields: Any) -> None:
    """Add fields (ingestion_id=..., chunk=...) to every later line of this invocation."""
    _CONTEXT.set({**current(), **{k: v for k, v in fields.items() if v is not None}})


@contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Fields for the lines logged inside the block; the previous fields come back after it."""
    token = _CONTEXT.set({**current(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class ContextFilter(logging.Filter):
    """Puts the bound fields on each record (a record's own `extra` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with every field of FIELDS present (null when unknown)."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context_fields = current()
        for name in FIELDS:
            payload[name] = getattr(record, name, context_fields.get(name))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, default=str, ensure_ascii=False))


def redact(text: str) -> str:
    """`text` with every secret value chalicelib.secrets holds replaced by ***."""
    from chalicelib import secrets

    for value in secrets.known_values():
        if value and value in text:
            text = text.replace(value, "***")
    return text


class RedactingFormatter(logging.Formatter):
    """The plain-text format, secrets masked (the local runner and `chalice local`)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def in_lambda() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def configure(json_lines: bool | None = None, level: str | None = None) -> None:
    """Install the formatter on the handlers of the root logger (the Lambda runtime's) and of the
    "sluice" logger, which Chalice gives its own stdout handler, no propagation and level ERROR: that
    level would drop every warning, so it becomes LOG_LEVEL (default INFO) too.

    json_lines defaults to "inside Lambda".
    """
    global _CONFIGURED
    json_lines = in_lambda() if json_lines is None else json_lines
    formatter = JsonFormatter() if json_lines else RedactingFormatter("%(levelname)s %(name)s: %(message)s")
    level_name = (level or os.environ.get("LOG_LEVEL", "") or "INFO").upper()
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for logger in (root, logging.getLogger(APP_LOGGER)):
        for handler in logger.handlers:
            handler.setFormatter(formatter)
            if not any(isinstance(f, ContextFilter) for f in handler.filters):
                handler.addFilter(ContextFilter())
        logger.setLevel(level_name)
    # botocore logs whole response bodies at DEBUG, SecureString values included, before sluice has
    # read (and can mask) them: the AWS libraries never log below WARNING here, whatever LOG_LEVEL says.
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level_name)))
    _CONFIGURED = True


def invocation_fields(event: Any) -> dict[str, Any]:
    """stage, function, request id, and for a chunk message its ingestion id and chunk, from an event."""
    lambda_context = getattr(event, "lambda_context", None) or getattr(event, "context", None)
    fields: dict[str, Any] = {
        "stage": os.environ.get("STAGE", "").strip() or "local",
        "function": getattr(lambda_context, "function_name", None),
        "request_id": getattr(lambda_context, "aws_request_id", None),
    }
    records = event.to_dict().get("Records") if hasattr(event, "to_dict") else None
    if isinstance(records, list) and len(records) == 1 and "body" in records[0]:
        try:
            message = json.loads(records[0]["body"])
        except (TypeError, ValueError):
            message = None
        if isinstance(message, dict):
            fields["ingestion_id"] = message.get("ingestion_id")
            fields["chunk"] = message.get("seq")
    return fields


def invocation(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Chalice middleware: configure logging once (Lambda), bind the invocation's fields, and check,
    once the handler is done, that it returned every database connection to its pool."""
    if not _CONFIGURED and in_lambda():
        configure()
    with context(**invocation_fields(event)):
        try:
            return get_response(event)
        finally:
            _check_connections()


def _check_connections() -> None:
    from chalicelib.db import checked_out_connections

    leaked = checked_out_connections()
    if leaked:
        log.error("%d database connection(s) still checked out after the handler returned", leaked)
