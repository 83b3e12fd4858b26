"""The deployment configuration stays deployable and least-privilege."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_policy_names_resources_and_never_stars_a_write():
    policy = json.loads((ROOT / ".chalice" / "policy.json").read_text())
    read_only = {"kms:Decrypt", "ssm:GetParameter", "s3:GetObject", "s3:ListBucket"}
    for statement in policy["Statement"]:
        actions = statement["Action"]
        assert all("*" not in a for a in actions), statement
        if statement["Resource"] == "*":
            assert set(actions) <= read_only and "Condition" in statement, statement


def test_config_stages_and_layer():
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert {"local", "dev", "prod"} <= set(config["stages"])
    assert config["autogen_policy"] is False and config["iam_policy_file"] == "policy.json"
    assert any("AWSSDKPandas" in layer for layer in config["layers"])
    for stage in ("dev", "prod"):
        env = config["stages"][stage]["environment_variables"]
        assert "DATABASE_URL" not in env and "GITHUB_TOKEN" not in env  # secrets come from SSM
        assert env["DATABASE_URL_PARAMETER"].startswith(f"/sluice/{stage}/")


def test_requirements_leave_the_layer_packages_out():
    lambda_requirements = (ROOT / "requirements.txt").read_text().lower()
    for heavy in ("pandas", "pyarrow", "numpy"):
        assert f"\n{heavy}" not in "\n" + lambda_requirements


def test_every_route_needs_an_api_key_when_deployed():
    from app import app

    methods = [view for path in app.routes.values() for view in path.values()]
    assert methods, "the app has routes"
    open_routes = [f"{v.method} {v.uri_pattern}" for v in methods if not v.api_key_required]
    assert open_routes == []
