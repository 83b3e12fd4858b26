"""The API about itself: the index, the OpenAPI description and its docs page; and result files.

`/results/{dataset}/{ingestion_id}/{name}` serves a result file (a plot, a CSV part) from S3, so the
URLs in answers open in a browser in the local run; deployed stages hand out presigned S3 URLs.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from chalice import Blueprint, Response

from chalicelib import ingestions, openapi, results
from chalicelib.errors import NotFound
from chalicelib.routes import params as p
from chalicelib.routes.common import engine
from chalicelib.routes.http import AUTH, base_url, endpoint, query_params

meta_routes = Blueprint(__name__)

DATASET = p.Text("dataset", "the dataset's folder, e.g. plays", max_len=32)
INGESTION_ID = p.Id("ingestion_id", "the ingestion the file belongs to")
NAME = p.Text("name", "the file's name, e.g. part-00001.csv", max_len=200)
CONTENT_TYPES = {".png": "image/png", ".csv": "text/csv; charset=utf-8", ".json": "application/json"}


def _request() -> Any:
    return meta_routes.current_request


@meta_routes.route("/", methods=["GET"], **AUTH)
@endpoint("Where to start: links to the API description and its docs page")
def index() -> dict[str, Any]:
    p.Query().parse(query_params(_request()))
    base = base_url(_request())
    return {
        "name": "sluice",
        "docs": f"{base}/docs",
        "openapi": f"{base}/openapi.json",
        "routes": sorted(meta_routes.current_app.routes),
    }


@meta_routes.route("/openapi.json", methods=["GET"], **AUTH)
@endpoint("This API's OpenAPI 3.1 description")
def openapi_json() -> dict[str, Any]:
    p.Query().parse(query_params(_request()))
    return openapi.spec(meta_routes.current_app)


@meta_routes.route("/docs", methods=["GET"], **AUTH)
@endpoint("A readable page of every route, its parameters and errors (no JavaScript, works offline)",
          ok_type="text/html")
def docs() -> Response:
    p.Query().parse(query_params(_request()))
    body = render_docs(openapi.spec(meta_routes.current_app))
    return Response(body=body, status_code=200, headers={"Content-Type": "text/html; charset=utf-8"})


def render_docs(spec: dict[str, Any]) -> str:
    """The OpenAPI document as one self-contained HTML page."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>sluice API</title><style>"
        "body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em}"
        "code{background:#f3f3f3;padding:0 .2em}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}"
        "h2{margin-top:2em;font-size:1.1em}.m{font-weight:bold;color:#06c}</style></head><body>",
        f"<h1>{e(spec['info']['title'])} API</h1><p>{e(spec['info']['description'])}</p>",
        "<p>The machine-readable description: <a href='openapi.json'>openapi.json</a>.</p>",
    ]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            parts.append(f"<h2 id='{e(op['operationId'])}'><span class='m'>{method.upper()}</span> "
                         f"<code>{e(path)}</code></h2><p>{e(op['summary'])}</p>")
            if op["parameters"]:
                parts.append("<table><tr><th>parameter</th><th>in</th><th>type</th><th>meaning</th></tr>")
                for prm in op["parameters"]:
                    kind = json.dumps(prm["schema"])
                    required = " (required)" if prm["required"] else ""
                    parts.append(f"<tr><td><code>{e(prm['name'])}</code>{required}</td><td>{e(prm['in'])}</td>"
                                 f"<td><code>{e(kind)}</code></td><td>{e(prm['description'])}</td></tr>")
                parts.append("</table>")
            statuses = ", ".join(f"{s}: {e(r['description'])}" for s, r in op["responses"].items())
            parts.append(f"<p><small>Responses: {statuses}</small></p>")
    parts.append("</body></html>")
    return "".join(parts)


@meta_routes.route("/results/{dataset}/{ingestion_id}/{name}", methods=["GET"], **AUTH)
@endpoint("A result file of an ingestion (a plot or a CSV part), as the URLs in answers link to it",
          path=(DATASET, INGESTION_ID, NAME), errors=(400, 404), ok_type="application/octet-stream")
def result_file(dataset: str, ingestion_id: str, name: str) -> Response:
    p.Query().parse(query_params(_request()))
    ingestion_id_value = p.path_value(INGESTION_ID, ingestion_id)
    if not re.fullmatch(r"[a-z0-9-]{1,32}", dataset) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,200}", name):
        raise NotFound(f"No result file {dataset}/{ingestion_id}/{name}.")
    with engine().connect() as conn:
        row = ingestions.get(conn, ingestion_id_value)
    if row is None or row["dataset"] != dataset:
        raise NotFound(f"Ingestion {ingestion_id_value} of {dataset} not found.")
    from chalicelib.settings import Settings

    bucket = results.bucket_for(Settings.from_env(), row["bucket"])
    key = results.prefix(dataset, ingestion_id_value) + name
    body = results.read(results.client(), bucket, key)
    if body is None:
        raise NotFound(f"No result file {key}.")
    suffix = name[name.rfind("."):] if "." in name else ""
    return Response(body=body, status_code=200,
                    headers={"Content-Type": CONTENT_TYPES.get(suffix, "application/octet-stream")})
