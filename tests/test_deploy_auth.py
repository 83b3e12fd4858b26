"""Authentication in deployed stages: every HTTP route needs an API key, and the WebSocket's $connect
needs a token unless the process is the local runner or the test client with no token configured.

Whether a token is checked is decided by what a deploy cannot get wrong: the Lambda runtime's own
AWS_LAMBDA_FUNCTION_NAME (Chalice's test client and local server never set it), or a token being
configured at all. The STAGE name plays no part: `chalice deploy --stage local` is still checked.
"""

from __future__ import annotations

import boto3
import pytest

from chalicelib import secrets, websocket
from chalicelib.settings import Settings
from tests.support.websocket import connect, ws_event

TOKEN = "s3cret-token"
PARAMETER = "/sluice/dev/websocket-token"


@pytest.fixture
def token_in_ssm(aws, monkeypatch):
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=TOKEN, Type="SecureString")
    for name in ("WEBSOCKET_TOKEN", "WEBSOCKET_TOKEN_PARAMETER", "STAGE", "AWS_LAMBDA_FUNCTION_NAME"):
        monkeypatch.delenv(name, raising=False)
    secrets.clear_cache()
    yield
    secrets.clear_cache()


def _refusal(monkeypatch, query=None, headers=None, **env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    event = ws_event("$connect", "c1", query=query, headers=headers)
    return websocket.authorize(event, Settings.from_env())


@pytest.mark.parametrize("stage", ["", " local ", "local", "LOCAL", "prod"])
def test_a_configured_token_is_checked_whatever_the_stage_is_called(token_in_ssm, monkeypatch, stage):
    refusal = _refusal(monkeypatch, STAGE=stage, WEBSOCKET_TOKEN_PARAMETER=PARAMETER)
    assert refusal is not None and refusal[0] == 401
    assert _refusal(monkeypatch, query={"token": TOKEN}) is None


def test_in_lambda_without_a_token_configured_connect_is_refused(token_in_ssm, monkeypatch):
    refusal = _refusal(monkeypatch, STAGE="local", AWS_LAMBDA_FUNCTION_NAME="sluice-local-websocket_connect")
    assert refusal == (500, "The WebSocket API has no token configured (WEBSOCKET_TOKEN_PARAMETER).")


def test_in_lambda_with_a_token_it_is_checked(token_in_ssm, monkeypatch):
    env = {"STAGE": "local", "AWS_LAMBDA_FUNCTION_NAME": "f", "WEBSOCKET_TOKEN_PARAMETER": PARAMETER}
    assert _refusal(monkeypatch, **env)[0] == 401
    assert _refusal(monkeypatch, query={"token": "guess"})[0] == 403
    assert _refusal(monkeypatch, headers={"Authorization": f"Bearer {TOKEN}"}) is None


def test_the_local_runner_and_test_client_stay_open_without_a_token(token_in_ssm, monkeypatch):
    assert _refusal(monkeypatch, STAGE="local") is None
    assert _refusal(monkeypatch, STAGE="dev") is None  # no token anywhere and not in Lambda


@pytest.mark.parametrize("given", ["\udc80", "s3cret-\ud800token", "tök€n", "x" * 10_000])
def test_odd_tokens_get_403_not_a_crash(token_in_ssm, monkeypatch, given):
    refusal = _refusal(monkeypatch, query={"token": given}, WEBSOCKET_TOKEN_PARAMETER=PARAMETER)
    assert refusal is not None and refusal[0] == 403
    assert TOKEN not in refusal[1]


def test_connect_through_the_handler_with_the_deployed_stage_config(token_in_ssm, app_env, monkeypatch):
    """The dev stage's config (a token parameter) through Chalice's test client, as API Gateway calls it."""
    from chalice.test import Client

    from app import app

    monkeypatch.setenv("WEBSOCKET_TOKEN_PARAMETER", PARAMETER)
    with Client(app, stage_name="local") as client:
        assert connect(client, "c0")["statusCode"] == 401
        assert connect(client, "c1", query={"token": "\udc80"})["statusCode"] == 403
        assert connect(client, "c2", query={"token": TOKEN})["statusCode"] == 200


# --- HTTP routes ------------------------------------------------------------------------------


def _routes():
    from app import app

    return sorted(
        (view.uri_pattern, method, view) for path in app.routes.values() for method, view in path.items()
    )


@pytest.mark.parametrize("path,method,view", _routes(), ids=[f"{m} {p}" for p, m, _ in _routes()])
def test_every_route_needs_an_api_key_when_deployed(path, method, view):
    assert view.api_key_required, f"{method} {path} is open in deployed stages"
    assert view.authorizer is None or view.authorizer.name, f"{method} {path}"


def test_there_are_routes_to_check():
    assert len(_routes()) >= 10
