"""The OpenAPI 3.1 description of the HTTP API, built from the app's own routes.

Each view is declared with `chalicelib.routes.http.endpoint(...)`, which records its summary, its
`Query` and path parameters and its error statuses on the function. `spec(app)` walks the routes
Chalice knows, so a route without a description, or a description without a route, cannot exist
(tests/test_openapi.py checks both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chalicelib.routes.params import Param, Query

ERROR_TEXT = {
    400: "A parameter is missing or malformed; the sentence names it.",
    404: "The thing asked for does not exist.",
    409: "The request conflicts with the current state (e.g. retrying a finished ingestion).",
    422: "The ingestion this result belongs to failed; the sentence says why.",
    425: "The result is not ready yet: the ingestion is still running.",
}


@dataclass(frozen=True)
class Operation:
    """What a view declares about itself (see `endpoint`)."""

    summary: str
    query: Query = field(default_factory=Query)
    path: tuple[Param, ...] = ()
    errors: tuple[int, ...] = (400,)
    ok_status: int = 200
    ok_type: str = "application/json"
    description: str = ""


def spec(app: Any) -> dict[str, Any]:
    """The OpenAPI document for every route of `app`."""
    paths: dict[str, Any] = {}
    for uri, methods in sorted(app.routes.items()):
        for method, view in sorted(methods.items()):
            operation: Operation | None = getattr(view.view_function, "__openapi__", None)
            if operation is None:
                raise LookupError(f"{method} {uri} has no OpenAPI description (declare it with endpoint()).")
            paths.setdefault(uri, {})[method.lower()] = _operation(view, operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sluice",
            "version": "1",
            "description": "CSV ingestion into PostgreSQL and the aggregate questions over it. "
            "Every error is {\"error\": sentence}. Deployed stages require an API key (x-api-key).",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string", "description": "a sentence a person can act on"}},
                }
            },
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        },
        "security": [{"apiKey": []}],
    }


def _operation(view: Any, op: Operation) -> dict[str, Any]:
    parameters = [_parameter(p, "path", True) for p in op.path]
    parameters += [_parameter(p, "query", p.required) for p in op.query.params]
    responses: dict[str, Any] = {
        str(op.ok_status): {"description": "OK", "content": {op.ok_type: {"schema": {}}}},
    }
    for status in op.errors:
        responses[str(status)] = {
            "description": ERROR_TEXT.get(status, "An error."),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    doc = (view.view_function.__doc__ or "").strip()
    return {
        "operationId": view.view_name,
        "summary": op.summary,
        "description": op.description or doc,
        "parameters": parameters,
        "responses": responses,
    }


def _parameter(param: Param, where: str, required: bool) -> dict[str, Any]:
    return {
        "name": param.name,
        "in": where,
        "required": required,
        "description": param.description,
        "schema": param.schema(),
    }
