"""What a stage needs before its first `chalice deploy`, created idempotently with boto3:

    python -m tools.bootstrap --stage prod            the KMS key, upload bucket, chunk queue and DLQ
    python -m tools.bootstrap --stage prod secrets    the SSM SecureStrings (asked for, never echoed)

Names come from .chalice/stages.json through tools/stages.py. The key's id is printed: record it as
the stage's kms_key_id in .chalice/stages.json and run `python -m tools.stages` (the policy names it).
Secrets are read from SLUICE_DATABASE_URL / SLUICE_GITHUB_TOKEN / SLUICE_WEBSOCKET_TOKEN when set,
else asked for; an empty WebSocket token is generated.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import sys
from typing import Any

from tools import stages
from tools.stages import Stage


def ensure_key(kms: Any, stage: Stage) -> str:
    """The id of the stage's KMS key for its SecureStrings (created with its alias if missing)."""
    for alias in kms.get_paginator("list_aliases").paginate().build_full_result()["Aliases"]:
        if alias["AliasName"] == stage.kms_alias and alias.get("TargetKeyId"):
            return alias["TargetKeyId"]
    key = kms.create_key(
        Description=f"{stage.app} {stage.name}: SSM SecureStrings",
        Tags=[{"TagKey": "app", "TagValue": stage.app}, {"TagKey": "stage", "TagValue": stage.name}],
    )["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=stage.kms_alias, TargetKeyId=key)
    return key


def ensure_bucket(s3: Any, stage: Stage) -> str:
    """The upload bucket: private, encrypted at rest (SSE-S3), tagged."""
    from botocore.exceptions import ClientError

    name = stage.upload_bucket
    try:
        s3.head_bucket(Bucket=name)
    except ClientError:
        options = {} if stage.region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": stage.region}}
        s3.create_bucket(Bucket=name, **options)
    s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [
        {"Key": "app", "Value": stage.app}, {"Key": "stage", "Value": stage.name}]})
    return name


def ensure_queues(sqs: Any, stage: Stage) -> dict[str, str]:
    """The chunk queue and its dead-letter queue; returns their URLs."""
    dlq = sqs.create_queue(QueueName=stage.dead_letter_queue, Attributes={
        "MessageRetentionPeriod": str(stages.DLQ_RETENTION_SECONDS), "SqsManagedSseEnabled": "true"})["QueueUrl"]
    attributes = {
        "VisibilityTimeout": str(stages.VISIBILITY_TIMEOUT),
        "MessageRetentionPeriod": str(stages.RETENTION_SECONDS),
        "SqsManagedSseEnabled": "true",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": stage.queue_arn(stage.dead_letter_queue),
                                     "maxReceiveCount": stages.MAX_RECEIVE_COUNT}),
    }
    try:
        queue = sqs.get_queue_url(QueueName=stage.queue)["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=queue, Attributes=attributes)
    except sqs.exceptions.QueueDoesNotExist:
        queue = sqs.create_queue(QueueName=stage.queue, Attributes=attributes)["QueueUrl"]
    return {"queue": queue, "dead_letter_queue": dlq}


def put_secrets(ssm: Any, stage: Stage, values: dict[str, str]) -> list[str]:
    """Write the stage's SecureStrings under its own key; returns the parameter names written."""
    written = []
    for secret, value in values.items():
        if secret not in stages.SSM_SECRETS:
            raise ValueError(f"unknown secret {secret!r}; expected one of {', '.join(stages.SSM_SECRETS)}")
        name = stage.parameter(secret)
        ssm.put_parameter(Name=name, Value=value, Type="SecureString", KeyId=stage.kms_alias, Overwrite=True)
        written.append(name)
    return written


def _ask(secret: str) -> str:
    value = os.environ.get("SLUICE_" + secret.upper().replace("-", "_"), "")
    if not value and sys.stdin.isatty():
        value = getpass.getpass(f"{secret} (not echoed): ")
    if not value and secret == "websocket-token":
        value = secrets.token_urlsafe(32)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("what", nargs="?", choices=["resources", "secrets"], default="resources")
    args = parser.parse_args(argv)
    import boto3

    stage = stages.stage(args.stage)
    session = boto3.session.Session(region_name=stage.region)
    if args.what == "secrets":
        values = {s: v for s in stages.SSM_SECRETS if (v := _ask(s))}
        for name in put_secrets(session.client("ssm"), stage, values):
            print(f"wrote {name}")
        return 0
    key = ensure_key(session.client("kms"), stage)
    print(f"KMS key {key} ({stage.kms_alias})")
    if key != stage.spec["kms_key_id"]:
        print(f"  record it: .chalice/stages.json stages.{stage.name}.kms_key_id = {key!r}; "
              "then python -m tools.stages")
    print(f"bucket s3://{ensure_bucket(session.client('s3'), stage)}")
    for role, url in ensure_queues(session.client("sqs"), stage).items():
        print(f"{role}: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
