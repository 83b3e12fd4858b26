"""Test helpers: put bytes in the moto bucket and run them through `on_csv_upload`."""

from __future__ import annotations

import json
from typing import Any

BUCKET = "sluice-test-uploads"


def upload(s3: Any, key: str, body: bytes, bucket: str = BUCKET) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def invoke(client: Any, key: str, bucket: str = BUCKET) -> Any:
    return client.lambda_.invoke("on_csv_upload", client.events.generate_s3_event(bucket, key))


def ingest(client: Any, s3: Any, key: str, body: bytes) -> dict[str, Any]:
    """Upload, invoke the handler, and return the newest ingestion of that key."""
    upload(s3, key, body)
    invoke(client, key)
    return ingestion_for(client, key)


def ingestion_for(client: Any, key: str) -> dict[str, Any]:
    items = get(client, "/ingestions?limit=1000")["items"]
    return next(item for item in items if item["key"] == key)


def get(client: Any, path: str, status: int = 200) -> Any:
    response = client.http.get(path)
    assert response.status_code == status, (path, response.status_code, response.body)
    return json.loads(response.body)
