"""API Gateway's own errors in sluice's shape, {"error": "<sentence>"}, with fitting statuses.

API Gateway answers some requests before sluice's Lambda sees them: an unknown path, a missing or
wrong API key, throttling, an integration timeout. Its "gateway responses" say what those answers
look like. They are set two ways, from this one table:

- Terraform: `python -m tools.stages` writes them into .chalice/terraform-<stage>.json, which
  `chalice package --merge-template` merges into the package.
- `chalice deploy`: it cannot set them, so run, after each deploy,
      python -m tools.gateway_responses --stage prod
  which puts them on the stage's REST API (its id from .chalice/deployed/<stage>.json) and redeploys.

What cannot be changed: WebSocket APIs have no gateway responses (a refused $connect answers with
sluice's own JSON, see chalicelib/websocket.py; other WebSocket errors are API Gateway's), and a
Lambda that crashes or times out before answering still gets API Gateway's body for
INTEGRATION_FAILURE / INTEGRATION_TIMEOUT, set here, but with no detail of the cause.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONTENT_TYPE = "application/json"

# response type -> (status, or None to keep API Gateway's own status for the case; sentence)
RESPONSES: dict[str, tuple[str | None, str]] = {
    "MISSING_AUTHENTICATION_TOKEN": (
        "404", "There is no such route: see the README's HTTP API section for the routes and their methods."
    ),
    "INVALID_API_KEY": (
        "403", "The API key is missing or not valid: send a key of this stage's usage plan in the x-api-key header."
    ),
    "ACCESS_DENIED": ("403", "Access to this route is denied for these credentials."),
    "UNAUTHORIZED": ("401", "This route needs credentials: send an API key in the x-api-key header."),
    "THROTTLED": ("429", "Too many requests: wait a moment and retry, or ask for a higher usage plan rate."),
    "QUOTA_EXCEEDED": ("429", "This API key has used its request quota; it renews with the usage plan's period."),
    "REQUEST_TOO_LARGE": ("413", "The request is larger than API Gateway accepts (10 MB)."),
    "UNSUPPORTED_MEDIA_TYPE": ("415", "This content type is not accepted: send JSON."),
    "BAD_REQUEST_PARAMETERS": ("400", "A required request parameter is missing or malformed."),
    "BAD_REQUEST_BODY": ("400", "The request body is not valid JSON for this route."),
    "INTEGRATION_TIMEOUT": (
        "504", "The answer took longer than API Gateway waits (29 s): narrow the question (a smaller range or limit) and retry."
    ),
    "INTEGRATION_FAILURE": ("502", "The server failed to answer; try again in a moment."),
    "DEFAULT_4XX": (None, "API Gateway refused the request before it reached sluice."),
    "DEFAULT_5XX": (None, "API Gateway could not complete the request; try again in a moment."),
}


def body(sentence: str) -> str:
    return json.dumps({"error": sentence})


def terraform_resources(rest_api_ref: str = "${aws_api_gateway_rest_api.rest_api.id}") -> dict[str, Any]:
    """aws_api_gateway_gateway_response resources, one per response type, for a merge template."""
    resources = {}
    for kind, (status, sentence) in RESPONSES.items():
        resource: dict[str, Any] = {
            "rest_api_id": rest_api_ref,
            "response_type": kind,
            "response_templates": {CONTENT_TYPE: body(sentence)},
            "response_parameters": {"gatewayresponse.header.Content-Type": f"'{CONTENT_TYPE}'"},
        }
        if status:
            resource["status_code"] = status
        resources[kind.lower()] = resource
    return resources


def apply(apigateway: Any, rest_api_id: str, api_stage: str) -> list[str]:
    """Put every gateway response on a REST API and redeploy its stage; returns the types set."""
    for kind, (status, sentence) in RESPONSES.items():
        options: dict[str, Any] = {"statusCode": status} if status else {}
        apigateway.put_gateway_response(
            restApiId=rest_api_id,
            responseType=kind,
            responseParameters={"gatewayresponse.header.Content-Type": f"'{CONTENT_TYPE}'"},
            responseTemplates={CONTENT_TYPE: body(sentence)},
            **options,
        )
    apigateway.create_deployment(
        restApiId=rest_api_id, stageName=api_stage, description="sluice gateway responses"
    )
    return list(RESPONSES)


def deployed_rest_api(stage: str, root: Path = ROOT) -> tuple[str, str]:
    """(rest_api_id, api gateway stage) of a stage `chalice deploy` recorded in .chalice/deployed/."""
    path = root / ".chalice" / "deployed" / f"{stage}.json"
    if not path.exists():
        raise SystemExit(f"{path} does not exist: run `chalice deploy --stage {stage}` first.")
    for resource in json.loads(path.read_text()).get("resources", []):
        if resource.get("resource_type") == "rest_api":
            return resource["rest_api_id"], resource["rest_api_url"].rstrip("/").rsplit("/", 1)[-1]
    raise SystemExit(f"{path} records no REST API for stage {stage}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True)
    args = parser.parse_args(argv)
    import boto3

    rest_api_id, api_stage = deployed_rest_api(args.stage)
    kinds = apply(boto3.client("apigateway"), rest_api_id, api_stage)
    print(f"{len(kinds)} gateway responses set on REST API {rest_api_id}, stage {api_stage} redeployed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
