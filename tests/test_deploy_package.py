"""`chalice package --pkg-format terraform` for dev and prod, inspected: every handler, its VPC, layer
and the stage's own policy, the stages apart, gateway responses in sluice's shape, and the sizes
within Lambda's limits with the layers."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tools import gateway_responses, package_sizes, stages

ROOT = Path(__file__).resolve().parent.parent
DEPLOYED = ("dev", "prod")
HANDLERS = {
    "on_csv_upload", "on_chunk_message",  # the S3 event and the SQS worker
    "every_30_min", "nrt_events", "daily", "prune_websockets",  # the schedules
    "websocket_connect", "websocket_message", "websocket_disconnect",  # the WebSocket routes
    "api_handler",  # the REST API
    "migrate",  # run once per deploy
}


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """stage -> (package directory, its Terraform resources)."""
    out = {}
    for name in DEPLOYED:
        directory = stages.package(name, tmp_path_factory.mktemp(f"pkg-{name}"))
        out[name] = (directory, json.loads((directory / "chalice.tf.json").read_text())["resource"])
    return out


@pytest.fixture(scope="module")
def plots_layer(tmp_path_factory):
    return package_sizes.build_plots_layer(tmp_path_factory.mktemp("layers"))


@pytest.mark.parametrize("name", DEPLOYED)
def test_every_handler_is_packaged_with_its_trigger(packages, name):
    _, resources = packages[name]
    stage = stages.stage(name)
    functions = resources["aws_lambda_function"]
    assert set(functions) == HANDLERS
    for key, function in functions.items():
        expected = f"sluice-{name}" if key == "api_handler" else f"sluice-{name}-{key}"
        assert function["function_name"] == expected

    [notification] = resources["aws_s3_bucket_notification"].values()
    assert notification["bucket"] == stage.upload_bucket
    assert notification["lambda_function"][0]["events"] == ["s3:ObjectCreated:*"]
    assert "on_csv_upload" in notification["lambda_function"][0]["lambda_function_arn"]

    [source] = resources["aws_lambda_event_source_mapping"].values()
    assert source["event_source_arn"].endswith(f":sqs:${{data.aws_region.chalice.name}}:"
                                               f"${{data.aws_caller_identity.chalice.account_id}}:{stage.queue}")
    assert source["batch_size"] == 1 and "on_chunk_message" in source["function_name"]
    workers = stage.reserved_concurrency()["on_chunk_message"]
    assert source["scaling_config"] == {"maximum_concurrency": workers}

    rules = {key.removesuffix("-event"): r["schedule_expression"]
             for key, r in resources["aws_cloudwatch_event_rule"].items()}
    assert rules == {"every_30_min": "rate(30 minutes)", "nrt_events": "rate(10 minutes)",
                     "daily": "cron(0 5 * * ? *)", "prune_websockets": "rate(1 hour)"}

    routes = {r["route_key"] for r in resources["aws_apigatewayv2_route"].values()}
    assert routes == {"$connect", "$default", "$disconnect"}
    assert resources["aws_apigatewayv2_stage"]["websocket_api_stage"]["name"] == stage.api_stage
    assert resources["aws_api_gateway_deployment"]["rest_api"]["stage_name"] == stage.api_stage


@pytest.mark.parametrize("name", DEPLOYED)
def test_every_function_runs_in_the_vpc_with_the_layer_sizes_and_concurrency(packages, name):
    _, resources = packages[name]
    stage = stages.stage(name)
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    for key, function in resources["aws_lambda_function"].items():
        assert function["vpc_config"] == {"subnet_ids": stage.spec["subnet_ids"],
                                          "security_group_ids": stage.spec["security_group_ids"]}, key
        assert function["layers"][0] == config["layers"][0], key
        assert function["memory_size"] == stages.FUNCTIONS[key]["lambda_memory_size"], key
        assert function["timeout"] == stages.FUNCTIONS[key]["lambda_timeout"], key
        assert function["reserved_concurrent_executions"] == stage.reserved_concurrency()[key], key
        assert function["environment"]["variables"]["STAGE"] == name


@pytest.mark.parametrize("name", DEPLOYED)
def test_every_role_carries_the_stages_own_policy(packages, name):
    _, resources = packages[name]
    expected = json.loads((ROOT / ".chalice" / f"policy-{name}.json").read_text())
    policies = resources["aws_iam_role_policy"]
    assert {p["role"] for p in policies.values()} == {
        f"${{aws_iam_role.{f}_role.id}}" for f in HANDLERS
    }
    for key, policy in policies.items():
        assert json.loads(policy["policy"]) == expected, key


def _strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def test_the_two_stages_share_no_bucket_queue_or_parameter_path(packages):
    for name, other in (("dev", "prod"), ("prod", "dev")):
        _, resources = packages[name]
        text = "\n".join(_strings(resources))
        them = stages.stage(other)
        for foreign in (them.upload_bucket, them.queue, them.ssm_path, f"sluice-{other}-", them.kms_key_arn):
            assert foreign not in text, f"stage {name} names {foreign}"
        own = stages.stage(name)
        for mine in (own.upload_bucket, own.queue, own.ssm_path, own.kms_key_arn):
            assert mine in text, f"stage {name} does not name {mine}"


@pytest.mark.parametrize("name", DEPLOYED)
def test_every_rest_route_requires_an_api_key_in_the_package(packages, name):
    directory, _ = packages[name]
    swagger = json.loads(json.loads((directory / "chalice.tf.json").read_text())["locals"]["chalice_api_swagger"])
    methods = [(path, verb, op) for path, ops in swagger["paths"].items() for verb, op in ops.items()]
    assert len(methods) >= 10
    for path, verb, op in methods:
        assert op.get("security") == [{"api_key": []}], f"{verb.upper()} {path}"
    assert swagger["securityDefinitions"]["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}


@pytest.mark.parametrize("name", DEPLOYED)
def test_gateway_responses_answer_in_sluices_shape(packages, name):
    directory, _ = packages[name]
    responses = json.loads((directory / "gateway_responses.tf.json").read_text())["resource"][
        "aws_api_gateway_gateway_response"]
    by_type = {r["response_type"]: r for r in responses.values()}
    expected = {"MISSING_AUTHENTICATION_TOKEN": "404", "INVALID_API_KEY": "403", "THROTTLED": "429",
                "QUOTA_EXCEEDED": "429", "INTEGRATION_TIMEOUT": "504", "DEFAULT_4XX": None, "DEFAULT_5XX": None}
    for kind, status in expected.items():
        response = by_type[kind]
        assert response.get("status_code") == status, kind
        assert response["rest_api_id"] == "${aws_api_gateway_rest_api.rest_api.id}"
        error = json.loads(response["response_templates"]["application/json"])
        assert set(error) == {"error"} and error["error"].endswith("."), kind
        assert "$" not in error["error"] and "#" not in error["error"]  # no template syntax
    override = json.loads((directory / "rest_api_override.tf.json").read_text())["resource"]
    description = override["aws_api_gateway_deployment"]["rest_api"]["stage_description"]
    assert all(f"aws_api_gateway_gateway_response.{key}" in description for key in responses)
    assert set(by_type) == set(gateway_responses.RESPONSES)


def test_sizes_fit_lambdas_limits_with_the_layers(packages, plots_layer):
    directory, _ = packages["prod"]
    sizes = package_sizes.budget(directory, package_sizes._recorded_pandas_layer(),
                                 package_sizes.unzipped_size(plots_layer))
    assert sizes["deployment_zip"] < package_sizes.ZIP_LIMIT
    assert sizes["function_with_pandas_layer"] < package_sizes.UNZIPPED_LIMIT
    assert sizes["chunk_worker_with_both_layers"] < package_sizes.UNZIPPED_LIMIT, sizes
    assert plots_layer.stat().st_size < package_sizes.ZIP_LIMIT


def test_the_package_holds_the_migrations_and_leaves_the_layers_packages_out(packages):
    directory, _ = packages["prod"]
    with zipfile.ZipFile(directory / "deployment.zip") as archive:
        names = archive.namelist()
    assert "app.py" in names and "migrations/env.py" in names
    versions = sorted(p.name for p in (ROOT / "migrations" / "versions").glob("*.py"))
    assert versions and all(f"migrations/versions/{v}" in names for v in versions)
    top = {n.split("/", 1)[0] for n in names}
    assert not top & {"pandas", "pyarrow", "numpy", "matplotlib", "boto3", "botocore"}


def test_the_plots_layer_renders_a_png_with_numpy_from_elsewhere(plots_layer, tmp_path):
    import subprocess
    import sys

    with zipfile.ZipFile(plots_layer) as archive:
        archive.extractall(tmp_path / "opt")
        assert not any(n.startswith("python/numpy/") for n in archive.namelist())
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt;"
        "assert matplotlib.__file__.startswith(sys.argv[1]), matplotlib.__file__;"
        "fig, ax = plt.subplots(); ax.hist([1, 2, 2, 3]); ax.set_title('Review time (s)');"
        "fig.savefig(sys.argv[2])"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "opt" / "python"), str(tmp_path / "p.png")],
                   check=True)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
