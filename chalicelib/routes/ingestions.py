"""GET /ingestions and GET /ingestions/{id}."""

from __future__ import annotations

from chalice import Blueprint

from chalicelib import ingestions
from chalicelib.errors import BadRequest, NotFound
from chalicelib.routes.common import engine, settings
from chalicelib.routes.http import (
    AUTH,
    choice_param,
    int_param,
    json_errors,
    limit_param,
    page,
    query_params,
    text_param,
)

ingestion_routes = Blueprint(__name__)


@ingestion_routes.route("/ingestions", methods=["GET"], **AUTH)
@json_errors
def list_ingestions() -> dict:
    params = query_params(ingestion_routes.current_request)
    limit = limit_param(params)
    after = int_param(params, "after", None, 1)
    status = choice_param(params, "status", ingestions.STATUSES)
    dataset = text_param(params, "dataset", 32)
    current = settings()
    with engine(current).connect() as conn:
        rows = ingestions.page(conn, limit + 1, after, status, dataset)
        items = [ingestions.to_json(conn, r, current.max_errors_kept) for r in rows]
    return page(items, limit, lambda item: item["id"])


@ingestion_routes.route("/ingestions/{ingestion_id}", methods=["GET"], **AUTH)
@json_errors
def get_ingestion(ingestion_id: str) -> dict:
    return load(ingestion_id)


def parse_id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 12:
        raise BadRequest(f"An ingestion id is a whole number, got {raw!r}.")
    return int(raw)


def load(raw_id: str) -> dict:
    ingestion_id = parse_id(raw_id)
    current = settings()
    with engine(current).connect() as conn:
        row = ingestions.get(conn, ingestion_id)
        if row is None:
            raise NotFound(f"Ingestion {ingestion_id} not found.")
        return ingestions.to_json(conn, row, current.max_errors_kept)
