"""Deployed stages from one place: .chalice/stages.json (account, region, VPC, database size) and the
sizing decisions below become .chalice/config.json, .chalice/policy-<stage>.json and
.chalice/terraform/*.tf.json (what Terraform adds to Chalice's package).

    python -m tools.stages                            write them
    python -m tools.stages --check                    exit 1 if a written file is out of date
    python -m tools.stages package --stage prod out/  the Terraform package of a stage

Every name a stage owns is derived here, from the app name, the stage and the account, so two stages
in one account share nothing: the upload bucket, the chunk queue and its dead-letter queue, the SSM
path /sluice/<stage>/, the KMS key alias, the API Gateway stage name, the Lambda functions and their
log groups, and the IAM policy naming all of those.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools import gateway_responses

ROOT = Path(__file__).resolve().parent.parent
CHALICE = ROOT / ".chalice"
SOURCE = CHALICE / "stages.json"

# --- Lambda sizing (memory MB, timeout s), per function -------------------------------------------
# Memory buys CPU (1,769 MB is one full vCPU). The chunk worker parses with pyarrow and COPYs; its peak
# memory stays under 256 MB (bench.ingest), so its memory is for CPU. No function runs near the
# 15-minute limit: chunk work is bounded by CHUNK_BYTES, syncs by their time budgets.
FUNCTIONS: dict[str, dict[str, int]] = {
    # A 4 MB chunk loads in seconds; a gzip stream stops 60 s before this and re-queues itself.
    "on_chunk_message": {"lambda_memory_size": 1769, "lambda_timeout": 300},
    # With a queue it only reads the header sample, plans and enqueues.
    "on_csv_upload": {"lambda_memory_size": 512, "lambda_timeout": 120},
    # API Gateway waits 29 s for an integration.
    "api_handler": {"lambda_memory_size": 1024, "lambda_timeout": 30},
    "websocket_connect": {"lambda_memory_size": 512, "lambda_timeout": 10},
    "websocket_message": {"lambda_memory_size": 512, "lambda_timeout": 10},
    "websocket_disconnect": {"lambda_memory_size": 512, "lambda_timeout": 10},
    "prune_websockets": {"lambda_memory_size": 512, "lambda_timeout": 60},
    # GitHub syncs: their time budgets (chalicelib/github/sync.py TIME_BUDGET: 540, 240, 600 s) plus
    # two minutes for the step in flight; nrt_events (every 10 min) ends before the next run starts.
    "every_30_min": {"lambda_memory_size": 512, "lambda_timeout": 660},
    "nrt_events": {"lambda_memory_size": 512, "lambda_timeout": 360},
    "daily": {"lambda_memory_size": 512, "lambda_timeout": 780},
    # `alembic upgrade head`; a migration that rewrites a 100M-row table needs more: run it from a
    # machine in the VPC instead (README, Deploying).
    "migrate": {"lambda_memory_size": 512, "lambda_timeout": 900},
}

# --- the chunk queue --------------------------------------------------------------------------------
# AWS's rule for an SQS event source: visibility timeout at least 6x the function's timeout, so a
# message is not redelivered while a (retried) invocation still holds it.
VISIBILITY_TIMEOUT = 6 * FUNCTIONS["on_chunk_message"]["lambda_timeout"]
MAX_RECEIVE_COUNT = 5  # a chunk that failed five times goes to the dead-letter queue
RETENTION_SECONDS = 4 * 24 * 3600
DLQ_RETENTION_SECONDS = 14 * 24 * 3600

# --- database connections and reserved concurrency ---------------------------------------------------
# Every warm container keeps its own pool (chalicelib/db.py, Lambda: pool_size 2 + max_overflow 2).
# A chunk worker loads with INGEST_WORKERS=2 threads and notifies: up to 4 connections; every other
# handler is single-threaded: 2 at most. Reserved concurrency caps containers per function, so the
# stage never opens more than rds_max_connections - ADMIN_CONNECTIONS connections:
#   chunk workers = (rds_max_connections - ADMIN_CONNECTIONS - 2 * sum(other functions' caps)) // 4
CONNECTIONS_PER_WORKER = 4
CONNECTIONS_PER_OTHER = 2
ADMIN_CONNECTIONS = 10  # RDS's reserved superuser slots, psql, backfill.py, monitoring
FIXED_CONCURRENCY = {
    "on_csv_upload": 5,
    "websocket_connect": 5,
    "websocket_message": 5,
    "websocket_disconnect": 5,
    # One run at a time: a schedule never overlaps itself, and migrations never run twice at once.
    "prune_websockets": 1,
    "every_30_min": 1,
    "nrt_events": 1,
    "daily": 1,
    "migrate": 1,
}
MIN_CHUNK_WORKERS = 2  # SQS event sources take a maximum concurrency of 2 or more

SSM_SECRETS = ("database-url", "github-token", "websocket-token")


@dataclass(frozen=True)
class Stage:
    """One deployed stage and every name it owns."""

    name: str
    app: str
    account: str
    region: str
    spec: dict[str, Any] = field(repr=False)

    @property
    def prefix(self) -> str:
        return f"{self.app}-{self.name}"

    @property
    def upload_bucket(self) -> str:
        # Bucket names are global: the account id keeps them unique.
        return self.spec.get("upload_bucket") or f"{self.prefix}-uploads-{self.account}"

    @property
    def results_bucket(self) -> str:
        return self.spec.get("results_bucket") or self.upload_bucket

    @property
    def queue(self) -> str:
        return f"{self.prefix}-chunks"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}-chunks-dlq"

    @property
    def queue_url(self) -> str:
        return f"https://sqs.{self.region}.amazonaws.com/{self.account}/{self.queue}"

    def queue_arn(self, name: str | None = None) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account}:{name or self.queue}"

    @property
    def ssm_path(self) -> str:
        return f"/{self.app}/{self.name}/"

    def parameter(self, secret: str) -> str:
        return f"{self.ssm_path}{secret}"

    @property
    def kms_alias(self) -> str:
        return f"alias/{self.prefix}-secrets"

    @property
    def kms_key_arn(self) -> str:
        """The stage's own key for its SecureStrings (tools/bootstrap.py creates it and prints its id)."""
        return self.arn("kms", f"key/{self.spec['kms_key_id']}")

    @property
    def api_stage(self) -> str:
        # Distinct API Gateway stage names keep each stage's execute-api ARNs apart.
        return self.name

    @property
    def websocket_api_id(self) -> str:
        return self.spec.get("websocket_api_id", "")

    @property
    def log_group_prefix(self) -> str:
        return f"/aws/lambda/{self.prefix}-"

    @property
    def api_log_group(self) -> str:
        # Chalice names the REST API's function after the stage alone: sluice-<stage>.
        return f"/aws/lambda/{self.prefix}"

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"

    # -- concurrency -----------------------------------------------------------------------------

    def reserved_concurrency(self) -> dict[str, int]:
        fixed = {"api_handler": int(self.spec.get("api_concurrency", 10)), **FIXED_CONCURRENCY}
        spare = int(self.spec["rds_max_connections"]) - ADMIN_CONNECTIONS
        workers = (spare - CONNECTIONS_PER_OTHER * sum(fixed.values())) // CONNECTIONS_PER_WORKER
        if workers < MIN_CHUNK_WORKERS:
            raise SystemExit(
                f"stage {self.name}: rds_max_connections {self.spec['rds_max_connections']} leaves room for "
                f"{workers} chunk workers; raise it or lower api_concurrency"
            )
        return {**fixed, "on_chunk_message": workers}

    def environment(self) -> dict[str, str]:
        env = {
            "STAGE": self.name,
            "INGEST_BUCKET": self.upload_bucket,
            "RESULTS_BUCKET": self.results_bucket,
            "INGEST_QUEUE_URL": self.queue_url,
            "CHUNK_WORKER_CONCURRENCY": str(self.reserved_concurrency()["on_chunk_message"]),
            "DATABASE_URL_PARAMETER": self.parameter("database-url"),
            "GITHUB_TOKEN_PARAMETER": self.parameter("github-token"),
            "WEBSOCKET_TOKEN_PARAMETER": self.parameter("websocket-token"),
            "WEBSOCKET_STAGE": self.api_stage,
            "LOG_LEVEL": "INFO",
        }
        if self.websocket_api_id:
            env["WEBSOCKET_API_ID"] = self.websocket_api_id
        env.update({k: v for k, v in self.spec.get("environment", {}).items() if v})
        return env


def load(source: Path = SOURCE) -> tuple[dict[str, Any], list[Stage]]:
    doc = json.loads(source.read_text())
    stages = [
        Stage(name, doc["app_name"], str(doc["account_id"]), doc["region"], spec)
        for name, spec in doc["stages"].items()
    ]
    return doc, stages


# --- .chalice/config.json -------------------------------------------------------------------------


def config(doc: dict[str, Any], stages: list[Stage]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": "2.0",
        "app_name": doc["app_name"],
        "automatic_layer": False,
        "autogen_policy": False,
        "layers": [doc["pandas_layer"]],
        "environment_variables": {"ARROW_DEFAULT_MEMORY_POOL": "system"},
        "lambda_functions": FUNCTIONS,
        "stages": {
            # Not deployable: it has no policy-local.json, and its WebSocket is open.
            "local": {"api_gateway_stage": "api", "environment_variables": {"STAGE": "local"}},
        },
    }
    for stage in stages:
        functions: dict[str, Any] = {
            name: {"reserved_concurrency": n} for name, n in stage.reserved_concurrency().items()
        }
        if stage.spec.get("plots_layer"):
            # matplotlib renders pr-reviews plots in the finishing step, which runs in the chunk
            # workers; only they carry the plots layer (README, Deploying: package sizes).
            functions["on_chunk_message"]["layers"] = [doc["pandas_layer"], stage.spec["plots_layer"]]
        out["stages"][stage.name] = {
            "api_gateway_stage": stage.api_stage,
            "iam_policy_file": f"policy-{stage.name}.json",
            "subnet_ids": stage.spec["subnet_ids"],
            "security_group_ids": stage.spec["security_group_ids"],
            "tags": {"app": stage.app, "stage": stage.name},
            "environment_variables": stage.environment(),
            "lambda_functions": functions,
        }
    return out


# --- .chalice/policy-<stage>.json --------------------------------------------------------------------


def policy(stage: Stage) -> dict[str, Any]:
    """Least privilege for what the code calls (tests/test_deploy_policy.py holds it to that)."""
    results = f"arn:aws:s3:::{stage.results_bucket}/results/*"
    statements = [
        {
            "Sid": "OwnLogs",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [
                stage.arn("logs", f"log-group:{stage.api_log_group}"),
                stage.arn("logs", f"log-group:{stage.api_log_group}:log-stream:*"),
                stage.arn("logs", f"log-group:{stage.log_group_prefix}*"),
                stage.arn("logs", f"log-group:{stage.log_group_prefix}*:log-stream:*"),
            ],
        },
        {
            # GetObject also signs the presigned URLs of result files.
            "Sid": "ReadUploadsAndResults",
            "Action": ["s3:GetObject"],
            "Resource": sorted({f"arn:aws:s3:::{stage.upload_bucket}/*", results}),
        },
        {
            # Lets HeadObject answer 404 rather than 403 for a missing key, and list result files.
            "Sid": "ListUploadsAndResults",
            "Action": ["s3:ListBucket"],
            "Resource": sorted({f"arn:aws:s3:::{stage.upload_bucket}", f"arn:aws:s3:::{stage.results_bucket}"}),
        },
        {
            "Sid": "WriteResults",
            "Action": ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
            "Resource": [results],
        },
        {
            "Sid": "SendChunks",
            "Action": ["sqs:SendMessage"],
            "Resource": [stage.queue_arn()],
        },
        {
            # Lambda's SQS event source polls with the function's role.
            "Sid": "ConsumeChunks",
            "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
            "Resource": [stage.queue_arn()],
        },
        {
            "Sid": "ReadOwnSecrets",
            "Action": ["ssm:GetParameter"],
            "Resource": [stage.arn("ssm", f"parameter{stage.ssm_path}*")],
        },
        {
            # This stage's key only, only through SSM, only for this stage's parameters.
            "Sid": "DecryptOwnSecretsViaSsm",
            "Action": ["kms:Decrypt"],
            "Resource": [stage.kms_key_arn],
            "Condition": {
                "StringEquals": {"kms:ViaService": f"ssm.{stage.region}.amazonaws.com"},
                "StringLike": {
                    "kms:EncryptionContext:PARAMETER_ARN": stage.arn("ssm", f"parameter{stage.ssm_path}*")
                },
            },
        },
        {
            "Sid": "PushToOwnWebSocketClients",
            "Action": ["execute-api:ManageConnections"],
            "Resource": [
                stage.arn("execute-api", f"{stage.websocket_api_id or '*'}/{stage.api_stage}/POST/@connections/*")
            ],
        },
        {
            # Lambda creates the network interfaces of a function in a VPC with its role.
            "Sid": "VpcNetworkInterfacesDescribe",
            "Action": ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"],
            "Resource": ["*"],
        },
        {
            "Sid": "VpcNetworkInterfacesCreate",
            "Action": ["ec2:CreateNetworkInterface"],
            "Resource": [
                stage.arn("ec2", "network-interface/*"),
                *(stage.arn("ec2", f"subnet/{s}") for s in stage.spec["subnet_ids"]),
                *(stage.arn("ec2", f"security-group/{g}") for g in stage.spec["security_group_ids"]),
            ],
        },
        {
            "Sid": "VpcNetworkInterfacesManage",
            "Action": [
                "ec2:DeleteNetworkInterface",
                "ec2:AssignPrivateIpAddresses",
                "ec2:UnassignPrivateIpAddresses",
            ],
            "Resource": [stage.arn("ec2", "network-interface/*")],
            "Condition": {"ArnEquals": {"ec2:Vpc": stage.arn("ec2", f"vpc/{stage.spec['vpc_id']}")}},
        },
    ]
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **s} for s in statements]}


# --- .chalice/terraform/*.tf.json -------------------------------------------------------------------
# `chalice package --merge-template` does not support Terraform, so these files go beside
# chalice.tf.json in the package directory (`python -m tools.stages package`), where Terraform reads
# every *.tf.json of the module and merges *_override.tf.json into the blocks they name.

TERRAFORM = CHALICE / "terraform"


def terraform_extras() -> dict[str, Any]:
    """Sluice-shaped gateway responses, and the REST API's deployment made to depend on them (its
    description hashes them, so a change to one redeploys the stage)."""
    responses = gateway_responses.terraform_resources()
    refs = ", ".join(f"aws_api_gateway_gateway_response.{name}" for name in responses)
    return {
        "gateway_responses.tf.json": {"resource": {"aws_api_gateway_gateway_response": responses}},
        "rest_api_override.tf.json": {
            "resource": {
                "aws_api_gateway_deployment": {
                    "rest_api": {"stage_description": "${md5(jsonencode([local.chalice_api_swagger, " + refs + "]))}"}
                },
                # A replaced REST API comes up before the old one goes (Chalice sets this on the
                # deployment only).
                "aws_api_gateway_rest_api": {"rest_api": {"lifecycle": {"create_before_destroy": True}}},
            }
        },
    }


def _deep_merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: _deep_merge(base.get(k), v) for k, v in override.items()}}
    return override


def scan_copy(package_dir: Path, out: Path) -> Path:
    """The Terraform package as one file for checkov: the *_override.tf.json files merged in as
    Terraform merges them (checkov reads them as separate resources), and without the `terraform`
    block of version constraints, which checkov 3's terraform_json parser cannot read."""
    merged = json.loads((package_dir / "chalice.tf.json").read_text())
    for path in sorted(package_dir.glob("*.tf.json")):
        if path.name.endswith("_override.tf.json"):
            merged = _deep_merge(merged, json.loads(path.read_text()))
        elif path.name != "chalice.tf.json":
            merged = _deep_merge(merged, json.loads(path.read_text()))
    merged.pop("terraform", None)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sluice.tf.json").write_text(json.dumps(merged, indent=1))
    return out


def package(stage_name: str, out: Path) -> Path:
    """`chalice package --pkg-format terraform --stage S OUT`, plus the Terraform extras."""
    import os
    import shutil
    import subprocess

    chalice = Path(sys.executable).with_name("chalice")
    env = {**os.environ, "AWS_DEFAULT_REGION": load()[0]["region"]}
    subprocess.run(
        [str(chalice), "package", "--pkg-format", "terraform", "--stage", stage_name, str(out)],
        cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
    )
    for extra in sorted(TERRAFORM.glob("*.tf.json")):
        shutil.copy(extra, out / extra.name)
    return out


# --- files -------------------------------------------------------------------------------------------


def rendered(source: Path = SOURCE) -> dict[Path, str]:
    doc, stages = load(source)
    files: dict[Path, Any] = {CHALICE / "config.json": config(doc, stages)}
    for stage in stages:
        files[CHALICE / f"policy-{stage.name}.json"] = policy(stage)
    for name, content in terraform_extras().items():
        files[TERRAFORM / name] = content
    return {path: json.dumps(content, indent=2) + "\n" for path, content in files.items()}


def stale(source: Path = SOURCE) -> list[Path]:
    """Generated files that differ from (or are missing against) what `source` renders to."""
    return [p for p, text in rendered(source).items() if not p.exists() or p.read_text() != text]


def stage(name: str, source: Path = SOURCE) -> Stage:
    _, stages = load(source)
    for s in stages:
        if s.name == name:
            return s
    raise SystemExit(f"no stage {name!r} in {source}; stages: {', '.join(s.name for s in stages)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render .chalice/ from .chalice/stages.json.")
    parser.add_argument("--check", action="store_true", help="fail if a rendered file is out of date")
    sub = parser.add_subparsers(dest="command")
    pkg = sub.add_parser("package", help="chalice package --pkg-format terraform, with the Terraform extras")
    pkg.add_argument("--stage", required=True)
    pkg.add_argument("out", type=Path)
    scan = sub.add_parser("scan-copy", help="one merged Terraform file of a package, for checkov")
    scan.add_argument("package", type=Path)
    scan.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "scan-copy":
        print(scan_copy(args.package, args.out) / "sluice.tf.json")
        return 0
    if args.command == "package":
        stage(args.stage)  # fail early on an unknown stage
        print(f"Terraform package of stage {args.stage} in {package(args.stage, args.out)}")
        return 0
    if args.check:
        out_of_date = stale()
        for path in out_of_date:
            print(f"{path.relative_to(ROOT)} is out of date: run python -m tools.stages", file=sys.stderr)
        return 1 if out_of_date else 0
    TERRAFORM.mkdir(exist_ok=True)
    for path, text in rendered().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
