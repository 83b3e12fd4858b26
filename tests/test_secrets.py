"""Secrets come from the environment locally and from SSM SecureStrings in deployed stages."""

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
