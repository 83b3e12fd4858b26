"""sluice's exceptions. Every message is a sentence a person can act on."""

from __future__ import annotations


class SluiceError(Exception):
    """Base class: the message is safe to show to a user."""

    status = 500


class BadRequest(SluiceError):
    """A request parameter is missing or malformed."""

    status = 400


class NotFound(SluiceError):
    """The thing asked for does not exist."""

    status = 404


class Conflict(SluiceError):
    """The request conflicts with the current state."""

    status = 409


class TooEarly(SluiceError):
    """The result is not ready yet (the ingestion is still running)."""

    status = 425


class Unprocessable(SluiceError):
    """The request is understood but its subject failed (e.g. the ingestion failed)."""

    status = 422


class FileRejected(SluiceError):
    """An uploaded file cannot be ingested as a whole (wrong header, not CSV, ...)."""

    status = 422


class UnknownIngestion(SluiceError):
    """A chunk message names an ingestion this stage's database does not hold."""

    status = 404
