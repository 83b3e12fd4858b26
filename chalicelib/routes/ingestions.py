"""GET /ingestions and GET /ingestions/{id}."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib import ingestions
from chalicelib.errors import NotFound
from chalicelib.routes import params as p
from chalicelib.routes.common import engine, settings
from chalicelib.routes.http import AUTH, endpoint, page, query_params

ingestion_routes = Blueprint(__name__)

INGESTION_ID = p.Id("ingestion_id", "an ingestion id")
LIST = p.Query(
    p.Limit(), p.Id("after", "the 'next' of the previous page"),
    p.Choice("status", "only ingestions in this status", choices=ingestions.STATUSES),
    p.Text("dataset", "only this dataset (trips, events, ...)", max_len=32),
)


def _query(spec: p.Query) -> dict[str, Any]:
    return spec.parse(query_params(ingestion_routes.current_request))


@ingestion_routes.route("/ingestions", methods=["GET"], **AUTH)
@endpoint("Ingestions, newest first", LIST)
def list_ingestions() -> dict:
    q = _query(LIST)
    current = settings()
    with engine(current).connect() as conn:
        rows = ingestions.page(conn, q["limit"] + 1, q["after"], q["status"], q["dataset"])
        items = [ingestions.to_json(conn, r, current.max_errors_kept) for r in rows]
    return page(items, q["limit"], lambda item: item["id"])


@ingestion_routes.route("/ingestions/{ingestion_id}", methods=["GET"], **AUTH)
@endpoint("One ingestion: status, counts, progress and the first rejected lines", path=(INGESTION_ID,),
          errors=(400, 404))
def get_ingestion(ingestion_id: str) -> dict:
    _query(p.Query())
    return load(p.path_value(INGESTION_ID, ingestion_id))


def load(ingestion_id: int) -> dict:
    current = settings()
    with engine(current).connect() as conn:
        row = ingestions.get(conn, ingestion_id)
        if row is None:
            raise NotFound(f"Ingestion {ingestion_id} not found.")
        return ingestions.to_json(conn, row, current.max_errors_kept)
