"""Result files that finishing steps write to S3 (plots, CSV parts), and the URLs users open.

Every result of an ingestion lives under `results/<dataset>/<ingestion id>/` in RESULTS_BUCKET (by
default the bucket the file was uploaded to; the upload handler ignores keys under `results/`). So
taking an ingestion back out deletes one prefix, and a rerun of a finishing step overwrites the same
keys. In deployed stages the URLs are presigned GETs; locally they point at the API's own
`/results/...` route, so they open in a browser.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ROOT = "results/"
#: S3's smallest multipart part (but the last); parts are sent when this much is buffered.
MIN_PART_BYTES = 5 * 1024 * 1024


def is_result_key(key: str) -> bool:
    return key.startswith(ROOT)


def prefix(dataset: str, ingestion_id: int) -> str:
    return f"{ROOT}{dataset}/{int(ingestion_id)}/"


def bucket_for(settings: Any, upload_bucket: str) -> str:
    """Where results go: RESULTS_BUCKET, else the bucket the file came from."""
    return getattr(settings, "results_bucket", "") or upload_bucket


def client() -> Any:
    import boto3

    return boto3.client("s3")


def put(s3: Any, bucket: str, key: str, body: bytes, content_type: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


class _PartWriter:
    """Collects bytes and sends them as multipart parts of at least MIN_PART_BYTES."""

    def __init__(self, s3: Any, bucket: str, key: str, content_type: str) -> None:
        self.s3, self.bucket, self.key, self.content_type = s3, bucket, key, content_type
        self.buffer = bytearray()
        self.parts: list[dict[str, Any]] = []
        self.upload_id: str | None = None
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.buffer += data
        self.bytes += len(data)
        if len(self.buffer) >= MIN_PART_BYTES:
            self._send_part()

    def _send_part(self) -> None:
        if self.upload_id is None:
            created = self.s3.create_multipart_upload(Bucket=self.bucket, Key=self.key, ContentType=self.content_type)
            self.upload_id = created["UploadId"]
        number = len(self.parts) + 1
        response = self.s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=bytes(self.buffer)
        )
        self.parts.append({"PartNumber": number, "ETag": response["ETag"]})
        self.buffer.clear()

    def close(self) -> None:
        if self.upload_id is None:  # small: one PUT
            put(self.s3, self.bucket, self.key, bytes(self.buffer), self.content_type)
            return
        if self.buffer:
            self._send_part()
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}
        )

    def abort(self) -> None:
        if self.upload_id is not None:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)


@contextmanager
def writer(s3: Any, bucket: str, key: str, content_type: str) -> Iterator[_PartWriter]:
    """A streaming writer for one object: `with writer(...) as w: w.write(b"...")`.

    Memory holds at most one part. The object appears only when the block ends without an error
    (a multipart upload is aborted otherwise), so a crash never leaves a partial object behind.
    """
    out = _PartWriter(s3, bucket, key, content_type)
    try:
        yield out
    except BaseException:
        out.abort()
        raise
    out.close()


def read(s3: Any, bucket: str, key: str) -> bytes | None:
    """A result file's bytes, or None if there is no such object."""
    from botocore.exceptions import ClientError

    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise


def list_prefix(s3: Any, bucket: str, key_prefix: str) -> list[dict[str, Any]]:
    """[{"key", "bytes"}] of the objects under a prefix, in key order."""
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix):
        found += [{"key": o["Key"], "bytes": int(o["Size"])} for o in page.get("Contents", [])]
    return sorted(found, key=lambda o: o["key"])


def delete_prefix(s3: Any, bucket: str, key_prefix: str, keep: frozenset[str] = frozenset()) -> int:
    """Delete every object under a prefix except `keep`; return how many were deleted."""
    keys = [o["key"] for o in list_prefix(s3, bucket, key_prefix) if o["key"] not in keep]
    for i in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True})
    return len(keys)


def deployed() -> bool:
    """True inside AWS Lambda (its runtime sets AWS_LAMBDA_FUNCTION_NAME; the local run and tests do not)."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


#: How long a presigned result URL stays valid.
URL_SECONDS = 3600


def url(s3: Any, bucket: str, key: str, base_url: str = "") -> str:
    """A URL that opens the result: presigned in deployed stages, the local `/results/...` route otherwise."""
    if deployed():
        return s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=URL_SECONDS)
    return f"{base_url.rstrip('/')}/{key}"
