"""The /github routes over the synced data: pulls, issues, members, PR metrics and the sync state."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib.github import metrics
from chalicelib.routes.common import engine
from chalicelib.routes.http import (
    AUTH,
    choice_param,
    date_param,
    json_errors,
    limit_param,
    query_params,
    text_param,
)

github_routes = Blueprint(__name__)


def _params() -> dict[str, str]:
    return query_params(github_routes.current_request)


@github_routes.route("/github/pulls", methods=["GET"], **AUTH)
@json_errors
def github_pulls() -> dict[str, Any]:
    p = _params()
    with engine().connect() as conn:
        return metrics.list_pulls(conn, repo=text_param(p, "repo"), state=choice_param(p, "state", metrics.PULL_STATES),
                                  author=text_param(p, "author"), after=text_param(p, "after"), limit=limit_param(p))


@github_routes.route("/github/issues", methods=["GET"], **AUTH)
@json_errors
def github_issues() -> dict[str, Any]:
    p = _params()
    with engine().connect() as conn:
        return metrics.list_issues(conn, repo=text_param(p, "repo"),
                                   state=choice_param(p, "state", metrics.ISSUE_STATES),
                                   after=text_param(p, "after"), limit=limit_param(p))


@github_routes.route("/github/members", methods=["GET"], **AUTH)
@json_errors
def github_members() -> dict[str, Any]:
    p = _params()
    active = choice_param(p, "active", ("true", "false"))
    with engine().connect() as conn:
        return metrics.list_members(conn, active=None if active is None else active == "true",
                                    after=text_param(p, "after"), limit=limit_param(p))


@github_routes.route("/github/metrics", methods=["GET"], **AUTH)
@json_errors
def github_metrics() -> dict[str, Any]:
    p = _params()
    with engine().connect() as conn:
        return metrics.pr_metrics(conn, repo=text_param(p, "repo"), team=text_param(p, "team"),
                                  start=date_param(p, "from"), end=date_param(p, "to"))


@github_routes.route("/github/sync", methods=["GET"], **AUTH)
@json_errors
def github_sync() -> dict[str, Any]:
    with engine().connect() as conn:
        return metrics.sync_state(conn)
