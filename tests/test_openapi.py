"""GET /openapi.json describes exactly the app's routes, validly, and the docs page renders it."""

from __future__ import annotations

import json

from openapi_spec_validator import validate

from app import app
from chalicelib import openapi


def test_every_route_is_described_and_nothing_else():
    spec = openapi.spec(app)
    described = {(path, method.upper()) for path, methods in spec["paths"].items() for method in methods}
    routes = {(path, method) for path, methods in app.routes.items() for method in methods}
    assert described == routes


def test_the_description_is_valid_openapi_and_names_path_parameters(client):
    response = client.http.get("/openapi.json")
    assert response.status_code == 200
    spec = json.loads(response.body)
    validate(spec)
    for path, methods in spec["paths"].items():
        for op in methods.values():
            in_path = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert in_path == {part[1:-1] for part in path.split("/") if part.startswith("{")}, path


def test_index_links_docs_and_the_docs_page_lists_every_route(client):
    index = json.loads(client.http.get("/").body)
    assert index["docs"].endswith("/docs") and index["openapi"].endswith("/openapi.json")
    page = client.http.get("/docs")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    text = page.body.decode()
    for path in app.routes:
        assert f"<code>{path}</code>" in text, path
    assert "<script" not in text and "http" not in text.split("</style>")[0]  # offline: nothing fetched
