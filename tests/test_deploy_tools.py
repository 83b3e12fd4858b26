"""The deploy tools against moto: a stage's resources from zero (key, bucket, queue with its dead-letter
queue, SecureStrings), a chunk message the stage cannot place ending in the dead-letter queue, and the
gateway responses `chalice deploy` cannot set."""

from __future__ import annotations

import json

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID

from chalicelib import secrets
from chalicelib.errors import UnknownIngestion
from chalicelib.settings import Settings
from tools import bootstrap, gateway_responses, stages


@pytest.fixture
def stage(aws):
    """The dev stage's names, in moto's account and region."""
    real = stages.stage("dev")
    return stages.Stage("dev", real.app, DEFAULT_ACCOUNT_ID, "us-east-1", real.spec)


def test_bootstrap_creates_the_stage_resources_idempotently(stage):
    kms, s3, sqs = boto3.client("kms"), boto3.client("s3"), boto3.client("sqs")
    for _ in range(2):
        key = bootstrap.ensure_key(kms, stage)
        bootstrap.ensure_bucket(s3, stage)
        urls = bootstrap.ensure_queues(sqs, stage)
    assert [a["TargetKeyId"] for a in kms.list_aliases()["Aliases"] if a["AliasName"] == stage.kms_alias] == [key]
    assert s3.get_bucket_encryption(Bucket=stage.upload_bucket)["ServerSideEncryptionConfiguration"]["Rules"][0][
        "ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert all(s3.get_public_access_block(Bucket=stage.upload_bucket)["PublicAccessBlockConfiguration"].values())

    attributes = sqs.get_queue_attributes(QueueUrl=urls["queue"], AttributeNames=["All"])["Attributes"]
    assert int(attributes["VisibilityTimeout"]) == stages.VISIBILITY_TIMEOUT
    assert int(attributes["VisibilityTimeout"]) > stages.FUNCTIONS["on_chunk_message"]["lambda_timeout"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive == {"deadLetterTargetArn": stage.queue_arn(stage.dead_letter_queue),
                       "maxReceiveCount": stages.MAX_RECEIVE_COUNT}
    assert urls["queue"].endswith("/sluice-dev-chunks") and urls["dead_letter_queue"].endswith("-dlq")


def test_a_message_the_stage_cannot_place_ends_in_the_dead_letter_queue(stage, client):
    """Lambda's SQS event source, played by hand: receive, invoke, delete only on success."""
    sqs = boto3.client("sqs")
    urls = bootstrap.ensure_queues(sqs, stage)
    sqs.send_message(QueueUrl=urls["queue"], MessageBody=json.dumps({"ingestion_id": 424242, "seq": 0}))
    failures = 0
    for _ in range(stages.MAX_RECEIVE_COUNT + 1):
        messages = sqs.receive_message(QueueUrl=urls["queue"], VisibilityTimeout=0).get("Messages", [])
        for message in messages:
            event = client.events.generate_sqs_event(message_bodies=[message["Body"]], queue_name=stage.queue)
            with pytest.raises(UnknownIngestion):
                client.lambda_.invoke("on_chunk_message", event)
            failures += 1  # not deleted: SQS counts the receive
    assert failures == stages.MAX_RECEIVE_COUNT
    [dead] = sqs.receive_message(QueueUrl=urls["dead_letter_queue"])["Messages"]
    assert json.loads(dead["Body"]) == {"ingestion_id": 424242, "seq": 0}


def test_secrets_go_to_ssm_under_the_stages_key_and_are_read_back(stage, monkeypatch):
    ssm = boto3.client("ssm")
    bootstrap.ensure_key(boto3.client("kms"), stage)
    written = bootstrap.put_secrets(ssm, stage, {"database-url": "sqlite:///from-ssm.sqlite", "websocket-token": "t0ken"})
    assert written == ["/sluice/dev/database-url", "/sluice/dev/websocket-token"]
    described = ssm.describe_parameters()["Parameters"]
    assert {p["Name"]: (p["Type"], p["KeyId"]) for p in described} == {
        name: ("SecureString", stage.kms_alias) for name in written}
    env = stages.stage("dev").environment()
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL_PARAMETER", env["DATABASE_URL_PARAMETER"])
    secrets.clear_cache()
    assert Settings.from_env().database_url == "sqlite:///from-ssm.sqlite"
    secrets.clear_cache()
    with pytest.raises(ValueError, match="unknown secret"):
        bootstrap.put_secrets(ssm, stage, {"password": "x"})


def test_gateway_responses_are_put_on_the_rest_api_and_redeployed(aws):
    apigateway = boto3.client("apigateway")
    api = apigateway.create_rest_api(name="sluice")["id"]
    root = apigateway.get_resources(restApiId=api)["items"][0]["id"]
    apigateway.put_method(restApiId=api, resourceId=root, httpMethod="GET", authorizationType="NONE",
                          apiKeyRequired=True)
    apigateway.put_integration(restApiId=api, resourceId=root, httpMethod="GET", type="MOCK")
    kinds = gateway_responses.apply(apigateway, api, "dev")
    assert kinds == list(gateway_responses.RESPONSES)
    stored = {r["responseType"]: r for r in apigateway.get_gateway_responses(restApiId=api)["items"]}
    missing = stored["MISSING_AUTHENTICATION_TOKEN"]
    assert missing["statusCode"] == "404"
    assert json.loads(missing["responseTemplates"]["application/json"])["error"].startswith("There is no such route")
    assert stored["INVALID_API_KEY"]["statusCode"] == "403" and stored["THROTTLED"]["statusCode"] == "429"
    assert [d["description"] for d in apigateway.get_deployments(restApiId=api)["items"]] == [
        "sluice gateway responses"]


def test_the_rest_api_is_found_in_chalices_deployed_record(tmp_path):
    deployed = tmp_path / ".chalice" / "deployed"
    deployed.mkdir(parents=True)
    (deployed / "prod.json").write_text(json.dumps({"resources": [
        {"name": "api_handler", "resource_type": "lambda_function"},
        {"name": "rest_api", "resource_type": "rest_api", "rest_api_id": "a1b2c3",
         "rest_api_url": "https://a1b2c3.execute-api.eu-west-1.amazonaws.com/prod/"},
    ]}))
    assert gateway_responses.deployed_rest_api("prod", tmp_path) == ("a1b2c3", "prod")
    with pytest.raises(SystemExit, match="chalice deploy --stage dev"):
        gateway_responses.deployed_rest_api("dev", tmp_path)
