"""The ingestions: list, get, retry (re-drive) and delete."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Response

from chalicelib import ingestions, pipeline
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


@ingestion_routes.route("/ingestions/{ingestion_id}/retry", methods=["POST"], **AUTH)
@endpoint("Load a failed or deleted ingestion again from its object, or resume a stuck one from its last "
          "committed chunk", path=(INGESTION_ID,), errors=(400, 404, 409), ok_status=202)
def retry_ingestion(ingestion_id: str) -> Response:
    _query(p.Query())
    current = settings()
    row = pipeline.retry(current, p.path_value(INGESTION_ID, ingestion_id))
    status = 202 if row["status"] in ("queued", "running") else 200
    return Response(body=_json(current, row), status_code=status, headers={"Content-Type": "application/json"})


@ingestion_routes.route("/ingestions/{ingestion_id}", methods=["DELETE"], **AUTH)
@endpoint("Take an ingestion's rows out of every table and rollup and mark it deleted (idempotent)",
          path=(INGESTION_ID,), errors=(400, 404))
def delete_ingestion(ingestion_id: str) -> dict:
    _query(p.Query())
    current = settings()
    return _json(current, pipeline.remove(current, p.path_value(INGESTION_ID, ingestion_id)))


def _json(current: Any, row: dict) -> dict:
    with engine(current).connect() as conn:
        return ingestions.to_json(conn, row, current.max_errors_kept)


def load(ingestion_id: int) -> dict:
    current = settings()
    with engine(current).connect() as conn:
        row = ingestions.get(conn, ingestion_id)
        if row is None:
            raise NotFound(f"Ingestion {ingestion_id} not found.")
        return ingestions.to_json(conn, row, current.max_errors_kept)
