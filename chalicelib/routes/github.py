"""The /github routes over the synced data: pulls, issues, members, PR metrics and the sync state."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib.github import metrics
from chalicelib.routes import params as p
from chalicelib.routes.common import engine
from chalicelib.routes.http import AUTH, endpoint, query_params

github_routes = Blueprint(__name__)

REPO = p.Text("repo", "owner/name, e.g. acme/api", max_len=200)
AFTER_NUMBER = p.Text("after", "the 'next' of the previous page (owner/name:number)", max_len=250)
PULLS = p.Query(REPO, p.Choice("state", "open, closed, merged or all", choices=metrics.PULL_STATES),
                p.Text("author", "the author's login", max_len=100), AFTER_NUMBER, p.Limit())
ISSUES = p.Query(REPO, p.Choice("state", "open, closed, deleted, transferred or all", choices=metrics.ISSUE_STATES),
                 AFTER_NUMBER, p.Limit())
MEMBERS = p.Query(p.Choice("active", "only active (true) or former (false) members", choices=("true", "false")),
                  p.Text("after", "the 'next' of the previous page (a login)", max_len=100), p.Limit())
METRICS = p.Query(REPO, p.Text("team", "a team slug of the organisation", max_len=100),
                  p.Date("from", "PRs opened on or after this day"), p.Date("to", "PRs opened on or before this day"))


def _query(spec: p.Query) -> dict[str, Any]:
    return spec.parse(query_params(github_routes.current_request))


@github_routes.route("/github/pulls", methods=["GET"], **AUTH)
@endpoint("Synced pull requests, by repository and number", PULLS)
def github_pulls() -> dict[str, Any]:
    q = _query(PULLS)
    with engine().connect() as conn:
        return metrics.list_pulls(conn, repo=q["repo"], state=q["state"], author=q["author"], after=q["after"],
                                  limit=q["limit"])


@github_routes.route("/github/issues", methods=["GET"], **AUTH)
@endpoint("Synced issues (not pull requests), including transferred and deleted ones", ISSUES)
def github_issues() -> dict[str, Any]:
    q = _query(ISSUES)
    with engine().connect() as conn:
        return metrics.list_issues(conn, repo=q["repo"], state=q["state"], after=q["after"], limit=q["limit"])


@github_routes.route("/github/members", methods=["GET"], **AUTH)
@endpoint("Members of the organisation, current and former", MEMBERS)
def github_members() -> dict[str, Any]:
    q = _query(MEMBERS)
    active = None if q["active"] is None else q["active"] == "true"
    with engine().connect() as conn:
        return metrics.list_members(conn, active=active, after=q["after"], limit=q["limit"])


@github_routes.route("/github/metrics", methods=["GET"], **AUTH)
@endpoint("Time to first review and to merge, and PRs opened and merged per week", METRICS)
def github_metrics() -> dict[str, Any]:
    q = _query(METRICS)
    with engine().connect() as conn:
        return metrics.pr_metrics(conn, repo=q["repo"], team=q["team"], start=q["from"], end=q["to"])


@github_routes.route("/github/sync", methods=["GET"], **AUTH)
@endpoint("The last runs of each sync stream: cursors, requests and quota used")
def github_sync() -> dict[str, Any]:
    _query(p.Query())
    with engine().connect() as conn:
        return metrics.sync_state(conn)
