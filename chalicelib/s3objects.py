"""S3, seen as the pipeline needs it: an object's identity, byte ranges of it, and a stream of it.

Every read after the first names the ETag it planned with (`IfMatch`), so an object overwritten in the
middle of an ingestion fails that ingestion clearly instead of mixing two files.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import FileRejected


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str
    last_modified: dt.datetime | None = None  # naive UTC; orders the versions of one key


class ObjectGone(Exception):
    """The object no longer exists (deleted after the event was sent)."""


class ShortRead(OSError):
    """S3 returned fewer bytes than asked for: a transient read error, never an end of file."""


def client() -> Any:
    import boto3

    return boto3.client("s3")


def head(s3: Any, bucket: str, key: str) -> ObjectInfo:
    from botocore.exceptions import ClientError

    try:
        response = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            raise ObjectGone(f"s3://{bucket}/{key} no longer exists") from None
        raise
    modified = response.get("LastModified")
    if isinstance(modified, dt.datetime) and modified.tzinfo is not None:
        modified = modified.astimezone(dt.UTC).replace(tzinfo=None)
    return ObjectInfo(bucket, key, int(response["ContentLength"]), response["ETag"].strip('"'), modified)


def read_range(s3: Any, obj: ObjectInfo, start: int, end: int) -> bytes:
    """Bytes [start, end) of the object."""
    if end <= start:
        return b""
    from botocore.exceptions import ClientError

    try:
        response = s3.get_object(
            Bucket=obj.bucket, Key=obj.key, Range=f"bytes={start}-{end - 1}", IfMatch=f'"{obj.etag}"'
        )
    except ClientError as exc:
        raise _read_error(exc, obj) from None
    body = response["Body"].read()
    if len(body) != end - start:
        raise ShortRead(
            f"s3://{obj.bucket}/{obj.key}: asked for bytes {start}-{end - 1}, got {len(body)} bytes"
        )
    return body


def open_stream(s3: Any, obj: ObjectInfo) -> Any:
    """The whole object as a readable stream (for gzip, which cannot be read in ranges)."""
    from botocore.exceptions import ClientError

    try:
        return s3.get_object(Bucket=obj.bucket, Key=obj.key, IfMatch=f'"{obj.etag}"')["Body"]
    except ClientError as exc:
        raise _read_error(exc, obj) from None


def _read_error(exc: Exception, obj: ObjectInfo) -> Exception:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    if code in ("PreconditionFailed", "412"):
        return FileRejected(
            f"s3://{obj.bucket}/{obj.key} was overwritten while it was being ingested; "
            "the new version is ingested on its own event."
        )
    if code in ("NoSuchKey", "404"):
        return FileRejected(f"s3://{obj.bucket}/{obj.key} was deleted while it was being ingested.")
    return exc
