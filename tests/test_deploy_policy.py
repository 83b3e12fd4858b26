"""Each stage's IAM policy grants exactly what the code calls (plus what Lambda itself does with the
role), on that stage's resources only, and parliament finds nothing in it.

The code's AWS calls are read statically from app.py and chalicelib/: every method call whose name is
an operation of a service the code makes clients for (boto3.client("s3"), ...), mapped to the IAM
actions it needs. New calls (result files, re-drives) are picked up as they land.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import json
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name

from tools import stages

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "app.py", *sorted((ROOT / "chalicelib").rglob("*.py"))]

# Operations whose IAM action is not "<prefix>:<OperationName>".
S3_ACTIONS = {
    "HeadObject": {"s3:GetObject", "s3:ListBucket"},  # ListBucket: a missing key is 404, not 403
    "GetObject": {"s3:GetObject"},
    "ListObjectsV2": {"s3:ListBucket"},
    "ListObjects": {"s3:ListBucket"},
    "HeadBucket": {"s3:ListBucket"},
    "CreateMultipartUpload": {"s3:PutObject"},
    "UploadPart": {"s3:PutObject"},
    "CompleteMultipartUpload": {"s3:PutObject"},
    "AbortMultipartUpload": {"s3:AbortMultipartUpload"},
    "ListMultipartUploads": {"s3:ListBucketMultipartUploads"},
    "ListParts": {"s3:ListMultipartUploadParts"},
    "DeleteObjects": {"s3:DeleteObject"},
    "CopyObject": {"s3:GetObject", "s3:PutObject"},
    "UploadPartCopy": {"s3:GetObject", "s3:PutObject"},
}
BATCH = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
         "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}
# boto3's managed transfers and presigning, by the operations they perform or sign.
TRANSFERS = {
    "upload_file": {"s3:PutObject", "s3:AbortMultipartUpload"},
    "upload_fileobj": {"s3:PutObject", "s3:AbortMultipartUpload"},
    "download_file": {"s3:GetObject"},
    "download_fileobj": {"s3:GetObject"},
}
# What Lambda does with the function's role, whatever the code calls.
PLATFORM = {
    "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",  # the runtime's log lines
    "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",  # the SQS event source
    "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",  # VPC
    "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
}


@functools.cache
def _model(service: str):
    return botocore.session.get_session().get_service_model(service)


def _iam_actions(service: str, operation: str) -> set[str]:
    if service == "s3":
        return S3_ACTIONS.get(operation, {f"s3:{operation}"})
    if service == "apigatewaymanagementapi":
        return {"execute-api:ManageConnections"}
    return {f"{_model(service).signing_name}:{BATCH.get(operation, operation)}"}


def _operations(service: str) -> dict[str, str]:
    return {xform_name(op): op for op in _model(service).operation_names}


def _client_services(trees: list[ast.AST]) -> set[str]:
    """Services named in `<x>.client("name")` calls, and Chalice's WebSocket management API."""
    found = set()
    for tree in trees:
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("client", "resource") and node.args
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                found.add(node.args[0].value)
            if isinstance(node, ast.Name) and node.id == "WebsocketAPI":
                found.add("apigatewaymanagementapi")
    return found


def code_actions(sources: list[tuple[str, str]]) -> dict[str, set[str]]:
    """IAM action -> where the code calls it ("path:line"), from (path, source text) pairs."""
    trees = [ast.parse(text, filename=path) for path, text in sources]
    services = _client_services(trees)
    by_method: dict[str, set[str]] = {}
    for service in services:
        for method, operation in _operations(service).items():
            by_method.setdefault(method, set()).update(_iam_actions(service, operation))
    if "apigatewaymanagementapi" in services:  # chalice.app.WebsocketAPI.send (PostToConnection)
        by_method.setdefault("send", set()).add("execute-api:ManageConnections")
    if "s3" in services:
        for method, actions in TRANSFERS.items():
            by_method.setdefault(method, set()).update(actions)
    found: dict[str, set[str]] = {}
    for (path, _), tree in zip(sources, trees, strict=True):
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            where = f"{Path(path).name}:{node.lineno}"
            actions = set(by_method.get(node.func.attr, ()))
            if node.func.attr in ("generate_presigned_url", "get_paginator") and node.args:
                named = node.args[0].value if isinstance(node.args[0], ast.Constant) else None
                actions |= set(by_method.get(named, ()))
            if node.func.attr == "get_parameter" and any(
                k.arg == "WithDecryption" and getattr(k.value, "value", False) for k in node.keywords
            ):
                actions.add("kms:Decrypt")
            for action in actions:
                found.setdefault(action, set()).add(where)
    return found


@functools.cache
def _repo_actions() -> dict[str, set[str]]:
    return code_actions([(str(p), p.read_text()) for p in SOURCES])


def _policy(name: str) -> dict:
    return json.loads((ROOT / ".chalice" / f"policy-{name}.json").read_text())


def _granted(policy: dict) -> set[str]:
    return {a for s in policy["Statement"] for a in s["Action"]}


def allows(policy: dict, action: str, resource: str) -> bool:
    """Whether an Allow statement names this action and resource (conditions only narrow further)."""
    return any(
        s["Effect"] == "Allow"
        and any(fnmatch.fnmatchcase(action, a) for a in s["Action"])
        and any(fnmatch.fnmatchcase(resource, r) for r in s["Resource"])
        for s in policy["Statement"]
    )


# --- the scanner itself ---------------------------------------------------------------------------


def test_the_scanner_maps_calls_to_actions():
    snippet = '''
import boto3
s3 = boto3.client("s3")
sqs = boto3.client("sqs")
s3.put_object(Bucket="b", Key="results/x", Body=b"")
s3.generate_presigned_url("get_object", Params={})
s3.delete_objects(Bucket="b", Delete={})
s3.get_paginator("list_objects_v2")
s3.upload_fileobj(f, "b", "k")
sqs.send_message(QueueUrl="u", MessageBody="{}")
boto3.client("ssm").get_parameter(Name="/x", WithDecryption=True)
'''
    assert set(code_actions([("snippet.py", snippet)])) == {
        "s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:ListBucket", "s3:AbortMultipartUpload",
        "sqs:SendMessage", "ssm:GetParameter", "kms:Decrypt",
    }


def test_the_scanner_finds_what_the_code_calls_today():
    found = _repo_actions()
    for action in ("s3:GetObject", "s3:ListBucket", "sqs:SendMessage", "ssm:GetParameter", "kms:Decrypt",
                   "execute-api:ManageConnections"):
        assert action in found, action


# --- the policies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_the_policy_grants_every_call_the_code_makes(name):
    missing = {a: sorted(w) for a, w in _repo_actions().items() if a not in _granted(_policy(name))}
    assert missing == {}, f"policy-{name}.json lacks actions the code calls (add them in tools/stages.py)"


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_the_policy_grants_nothing_the_code_and_lambda_never_use(name):
    unused = _granted(_policy(name)) - set(_repo_actions()) - PLATFORM
    assert unused == set()


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_no_wildcard_actions_and_star_resources_only_where_iam_has_no_other(name):
    for statement in _policy(name)["Statement"]:
        assert all("*" not in a for a in statement["Action"]), statement
        if "*" in statement["Resource"]:
            assert set(statement["Action"]) <= {"ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"}


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_parliament_finds_nothing(name):
    import parliament

    text = (ROOT / ".chalice" / f"policy-{name}.json").read_text()
    for community in (False, True):
        findings = parliament.analyze_policy_string(text, include_community_auditors=community).findings
        assert [(f.issue, f.detail) for f in findings] == []


@pytest.mark.parametrize("name,other", [("dev", "prod"), ("prod", "dev")])
def test_a_stage_reaches_its_own_resources_and_never_the_other_stages(name, other):
    own, them = stages.stage(name), stages.stage(other)
    policy = _policy(name)

    def upload(stage, key):
        return f"arn:aws:s3:::{stage.upload_bucket}/{key}"

    def result(stage, key):
        return f"arn:aws:s3:::{stage.results_bucket}/results/{key}"

    def connections(stage):
        return stage.arn("execute-api", f"a1b2c3/{stage.api_stage}/POST/@connections/Zx0=")

    expected = [
        ("s3:GetObject", upload, "trips/2018-05.csv"),
        ("s3:ListBucket", lambda s, _: f"arn:aws:s3:::{s.upload_bucket}", None),
        ("s3:GetObject", result, "pr-reviews/7/review_times.png"),
        ("s3:PutObject", result, "plays/9/part-00000.csv"),
        ("s3:DeleteObject", result, "plays/9/part-00000.csv"),
        ("s3:AbortMultipartUpload", result, "plays/9/part-00001.csv"),
        ("sqs:SendMessage", lambda s, _: s.queue_arn(), None),
        ("sqs:ReceiveMessage", lambda s, _: s.queue_arn(), None),
        ("ssm:GetParameter", lambda s, _: s.arn("ssm", f"parameter{s.parameter('database-url')}"), None),
        ("kms:Decrypt", lambda s, _: s.kms_key_arn, None),
        ("execute-api:ManageConnections", lambda s, _: connections(s), None),
        ("logs:PutLogEvents", lambda s, _: s.arn("logs", f"log-group:{s.api_log_group}:log-stream:x"), None),
        ("logs:PutLogEvents", lambda s, _: s.arn("logs", f"log-group:{s.log_group_prefix}daily:log-stream:x"), None),
    ]
    for action, arn, key in expected:
        assert allows(policy, action, arn(own, key)), (action, arn(own, key))
        assert not allows(policy, action, arn(them, key)), (action, arn(them, key))
    # The uploads are read-only: nothing outside results/ can be written or deleted.
    for action in ("s3:PutObject", "s3:DeleteObject"):
        assert not allows(policy, action, upload(own, "trips/2018-05.csv"))
    assert not allows(policy, "ssm:GetParameter", f"arn:aws:ssm:{own.region}:{own.account}:parameter/other/x")
