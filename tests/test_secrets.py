"""Secrets come from the environment locally and from SSM SecureStrings in deployed stages."""

import json

import boto3
import pytest

from chalicelib import secrets
from chalicelib.settings import Settings


@pytest.fixture(autouse=True)
def fresh_cache():
    secrets.clear_cache()
    yield
    secrets.clear_cache()


def test_value_wins_then_parameter_then_nothing(aws):
    boto3.client("ssm").put_parameter(Name="/sluice/dev/x", Value="from-ssm", Type="SecureString")
    assert secrets.value_or_parameter("local", "/sluice/dev/x") == "local"
    assert secrets.value_or_parameter("", "/sluice/dev/x") == "from-ssm"
    assert secrets.value_or_parameter("", "") == ""


def test_database_url_from_ssm_and_cached(aws, monkeypatch):
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/sluice/dev/database-url", Value="postgresql://u:p@db/sluice", Type="SecureString")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL_PARAMETER", "/sluice/dev/database-url")
    assert Settings.from_env().database_url == "postgresql://u:p@db/sluice"
    ssm.delete_parameter(Name="/sluice/dev/database-url")
    assert Settings.from_env().database_url == "postgresql://u:p@db/sluice"  # per container, not per call


def test_a_missing_parameter_is_named_and_its_value_never_shown(aws):
    with pytest.raises(secrets.SecretUnavailable, match="/sluice/dev/missing") as caught:
        secrets.parameter("/sluice/dev/missing")
    assert "exists" in str(caught.value)


def test_secrets_are_never_in_a_response_or_a_log_line(aws, app_env, monkeypatch, caplog):
    """$connect with a wrong and a right token read from SSM: the token is in no response and in none
    of sluice's log lines (botocore's own DEBUG lines are kept at WARNING in Lambda, see test_deploy_runtime)."""
    import logging

    from chalice.test import Client

    from app import app
    from chalicelib import logs
    from tests.support.websocket import connect

    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/sluice/dev/websocket-token", Value="tok-3f9a8b7c", Type="SecureString")
    monkeypatch.setenv("WEBSOCKET_TOKEN_PARAMETER", "/sluice/dev/websocket-token")
    ours = logging.getLogger(logs.APP_LOGGER)  # Chalice's app logger: no propagation to caplog's root
    saved_level = ours.level
    ours.addHandler(caplog.handler)
    ours.setLevel(logging.DEBUG)
    try:
        with Client(app, stage_name="local") as client:
            refused = connect(client, "c1", query={"token": "tok-3f9a8b7x"})
            accepted = connect(client, "c2", query={"token": "tok-3f9a8b7c"})
            # A secret that cannot be read is named, never shown.
            monkeypatch.setenv("WEBSOCKET_TOKEN_PARAMETER", "/sluice/dev/missing")
            unreadable = connect(client, "c3", query={"token": "tok-3f9a8b7c"})
    finally:
        ours.removeHandler(caplog.handler)
        ours.setLevel(saved_level)
    assert unreadable["statusCode"] == 500
    assert refused["statusCode"] == 403 and accepted["statusCode"] == 200
    assert "tok-3f9a8b7c" not in json.dumps([refused, accepted, unreadable])
    lines = [caplog.handler.format(r) for r in caplog.records if r.name.startswith("sluice")]
    assert any("/sluice/dev/missing" in line for line in lines)  # the failure was logged, by name
    assert not [line for line in lines if "tok-3f9a8b7c" in line]
    assert "tok-3f9a8b7c" in secrets.known_values()
    assert logs.redact("token=tok-3f9a8b7c") == "token=***"
