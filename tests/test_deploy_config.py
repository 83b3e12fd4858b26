"""The deployment configuration: rendered from .chalice/stages.json, stages apart, functions sized."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chalicelib.github.sync import TIME_BUDGET
from chalicelib.settings import LOCAL_CHUNK_QUEUE, LOCAL_UPLOAD_BUCKET, Wiring
from tools import stages

ROOT = Path(__file__).resolve().parent.parent
DEPLOYED = ("dev", "prod")


@pytest.fixture(scope="module")
def config():
    return json.loads((ROOT / ".chalice" / "config.json").read_text())


def _stages():
    return {s.name: s for s in stages.load()[1]}


def test_rendered_files_are_up_to_date():
    assert stages.stale() == [], "run `python -m tools.stages` and commit what it writes"


def test_a_hand_edit_of_config_json_is_caught(tmp_path, monkeypatch):
    monkeypatch.setattr(stages, "CHALICE", tmp_path)
    monkeypatch.setattr(stages, "TERRAFORM", tmp_path / "terraform")
    (tmp_path / "terraform").mkdir()
    for path, text in stages.rendered().items():
        path.write_text(text)
    assert stages.stale() == []
    (tmp_path / "config.json").write_text((tmp_path / "config.json").read_text().replace("1769", "3008"))
    assert stages.stale() == [tmp_path / "config.json"]


def test_the_deployed_stages_are_dev_and_prod_and_local_cannot_deploy(config):
    assert set(config["stages"]) == {"local", *DEPLOYED}
    assert config["autogen_policy"] is False and "iam_policy_file" not in config
    # Chalice looks for policy-local.json, which does not exist: `chalice deploy --stage local` fails.
    assert "iam_policy_file" not in config["stages"]["local"]
    assert not (ROOT / ".chalice" / "policy-local.json").exists()
    assert not (ROOT / ".chalice" / "policy.json").exists()
    for name in DEPLOYED:
        assert config["stages"][name]["iam_policy_file"] == f"policy-{name}.json"
        assert (ROOT / ".chalice" / f"policy-{name}.json").exists()


def test_two_stages_share_no_bucket_queue_parameter_path_key_or_api_stage():
    dev, prod = _stages()["dev"], _stages()["prod"]
    for attribute in ("upload_bucket", "results_bucket", "queue", "dead_letter_queue", "ssm_path",
                      "kms_key_arn", "kms_alias", "api_stage", "log_group_prefix", "prefix"):
        assert getattr(dev, attribute) != getattr(prod, attribute), attribute
        assert dev.name in getattr(dev, attribute) or attribute == "kms_key_arn", attribute
    assert not (set(dev.environment().values()) & set(prod.environment().values())) - {"INFO"}


def test_stage_environment_names_only_its_own_resources(config):
    for name in DEPLOYED:
        stage = _stages()[name]
        env = config["stages"][name]["environment_variables"]
        assert env["STAGE"] == name
        assert env["INGEST_BUCKET"] == stage.upload_bucket and stage.account in stage.upload_bucket
        assert env["INGEST_QUEUE_URL"] == f"https://sqs.{stage.region}.amazonaws.com/{stage.account}/sluice-{name}-chunks"
        for secret in ("DATABASE_URL", "GITHUB_TOKEN", "WEBSOCKET_TOKEN"):
            assert secret not in env, f"{secret} must come from SSM"
            assert env[f"{secret}_PARAMETER"].startswith(f"/sluice/{name}/")
        assert env["WEBSOCKET_STAGE"] == config["stages"][name]["api_gateway_stage"] == name
        assert "123456789012" not in json.dumps(env)


def test_every_function_is_sized_and_none_runs_near_the_lambda_limit(config):
    functions = config["lambda_functions"]
    assert set(functions) == set(stages.FUNCTIONS)
    for name, sizes in functions.items():
        assert 128 <= sizes["lambda_memory_size"] <= 10240, name
        assert sizes["lambda_timeout"] <= 900, name
    assert functions["api_handler"]["lambda_timeout"] <= 30  # API Gateway waits 29 s
    for job, budget in TIME_BUDGET.items():
        if budget is not None:
            assert budget + 60 <= functions[job]["lambda_timeout"] < 900, job
    assert functions["nrt_events"]["lambda_timeout"] < 600  # it runs every 10 minutes
    # No stage-level setting may shadow the per-function sizes (Chalice looks at the stage first).
    for name in DEPLOYED:
        stage = config["stages"][name]
        assert "lambda_timeout" not in stage and "lambda_memory_size" not in stage
        for function in stage.get("lambda_functions", {}).values():
            assert set(function) <= {"reserved_concurrency", "layers"}


def test_the_chunk_queue_outlives_the_worker_and_dead_letters_after_a_few_receives():
    timeout = stages.FUNCTIONS["on_chunk_message"]["lambda_timeout"]
    assert stages.VISIBILITY_TIMEOUT >= 6 * timeout
    assert 2 <= stages.MAX_RECEIVE_COUNT <= 10


@pytest.mark.parametrize("name", DEPLOYED)
def test_reserved_concurrency_keeps_connections_within_what_rds_takes(config, name):
    stage = _stages()[name]
    reserved = {f: c["reserved_concurrency"] for f, c in config["stages"][name]["lambda_functions"].items()}
    assert set(reserved) == set(stages.FUNCTIONS), "every function is capped"
    opened = sum(
        n * (stages.CONNECTIONS_PER_WORKER if f == "on_chunk_message" else stages.CONNECTIONS_PER_OTHER)
        for f, n in reserved.items()
    )
    assert opened <= stage.spec["rds_max_connections"] - stages.ADMIN_CONNECTIONS
    assert reserved["on_chunk_message"] >= stages.MIN_CHUNK_WORKERS
    env = config["stages"][name]["environment_variables"]
    assert int(env["CHUNK_WORKER_CONCURRENCY"]) == reserved["on_chunk_message"]
    for one_at_a_time in ("migrate", "every_30_min", "nrt_events", "daily", "prune_websockets"):
        assert reserved[one_at_a_time] == 1


def test_a_database_too_small_for_two_workers_is_refused():
    stage = _stages()["dev"]
    small = stages.Stage("dev", stage.app, stage.account, stage.region, {**stage.spec, "rds_max_connections": 60})
    with pytest.raises(SystemExit, match="rds_max_connections 60"):
        small.reserved_concurrency()


def test_vpc_on_every_function_of_a_deployed_stage(config):
    for name in DEPLOYED:
        stage = config["stages"][name]
        assert stage["subnet_ids"] and all(s.startswith("subnet-") for s in stage["subnet_ids"])
        assert stage["security_group_ids"] and all(g.startswith("sg-") for g in stage["security_group_ids"])
    assert "subnet_ids" not in config and "subnet_ids" not in config["stages"]["local"]


def test_pandas_comes_from_the_layer_and_stays_out_of_requirements(config):
    assert len(config["layers"]) == 1 and ":layer:AWSSDKPandas-Python311:" in config["layers"][0]
    assert config["layers"][0].split(":")[3] == json.loads((ROOT / ".chalice" / "stages.json").read_text())["region"]
    lambda_requirements = (ROOT / "requirements.txt").read_text().lower()
    for heavy in ("pandas", "pyarrow", "numpy", "matplotlib"):
        assert f"\n{heavy}" not in "\n" + lambda_requirements


def test_a_plots_layer_goes_to_the_chunk_workers_only(tmp_path):
    source = json.loads((ROOT / ".chalice" / "stages.json").read_text())
    plots = f"arn:aws:lambda:{source['region']}:{source['account_id']}:layer:sluice-plots:3"
    source["stages"]["prod"]["plots_layer"] = plots
    path = tmp_path / "stages.json"
    path.write_text(json.dumps(source))
    doc, loaded = stages.load(path)
    functions = stages.config(doc, loaded)["stages"]["prod"]["lambda_functions"]
    assert functions["on_chunk_message"]["layers"] == [source["pandas_layer"], plots]
    assert [f for f, c in functions.items() if "layers" in c] == ["on_chunk_message"]


def test_wiring_reads_the_names_chalice_loads_the_stage_with(monkeypatch):
    for name in ("INGEST_BUCKET", "INGEST_QUEUE_URL", "CHUNK_WORKER_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    assert Wiring.from_env() == Wiring(LOCAL_UPLOAD_BUCKET, LOCAL_CHUNK_QUEUE, None)
    env = stages.stage("prod").environment()
    for name in ("INGEST_BUCKET", "INGEST_QUEUE_URL", "CHUNK_WORKER_CONCURRENCY"):
        monkeypatch.setenv(name, env[name])
    wiring = Wiring.from_env()
    assert wiring.upload_bucket == stages.stage("prod").upload_bucket
    assert wiring.chunk_queue == "sluice-prod-chunks"
    assert wiring.chunk_concurrency == stages.stage("prod").reserved_concurrency()["on_chunk_message"]
