"""Replay GitHub's recorded exchanges (octokit fixtures) and documented examples (OpenAPI) through the
client and the streams. They live in ../shared/github-fixtures and are read in place, never copied;
the whole module is skipped when that folder is absent."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from chalicelib.github import streams
from chalicelib.github import tables as t
from chalicelib.github.client import GitHubClient, GitHubError, Moved, parse_rate_limit
from tests.fake_github import Replay

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "github-fixtures"
OCTOKIT = FIXTURES / "octokit-fixtures"
OPENAPI = FIXTURES / "openapi-examples"

pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"{FIXTURES} is absent")


def recorded(scenario: str) -> list[dict]:
    return json.loads((OCTOKIT / scenario / "normalized-fixture.json").read_text())


def example(name: str):
    return json.loads((OPENAPI / name).read_text())


@pytest.fixture
def replay():
    server = Replay()
    for scenario in ("paginate-issues", "rename-repository", "search-issues", "errors", "get-organization"):
        for exchange in recorded(scenario):
            if exchange["method"].lower() == "get" or scenario == "errors":
                server.add(exchange["path"], exchange["status"], exchange["headers"], exchange["response"])
    server.start()
    yield server
    server.stop()


def client_for(server) -> GitHubClient:
    return GitHubClient(server.base_url, "0000000000000000000000000000000000000001", sleep=lambda s: None, timeout=5)


def test_recorded_pagination_follows_every_link_and_reads_the_rate_limit(replay):
    client = client_for(replay)
    pages = list(client.paginate("/repos/octokit-fixture-org/paginate-issues/issues", {"per_page": 3}))
    assert [len(p.data) for p in pages] == [3, 3, 3, 3, 1]
    assert pages[1].url == "/repositories/1000/issues?per_page=3&page=2"
    rate = client.rate("core")
    assert (rate.remaining, rate.reset, rate.resource) == (4999, 1507651200.0, "core")
    assert client.counters.quota_used == 5


def test_recorded_etags_turn_a_second_pass_into_304s(replay):
    client = client_for(replay)
    first = list(client.paginate("/repos/octokit-fixture-org/paginate-issues/issues", {"per_page": 3}))
    second = list(client.paginate("/repos/octokit-fixture-org/paginate-issues/issues", {"per_page": 3}))
    assert [p.status for p in second] == [304] * 5
    assert [p.data for p in second] == [p.data for p in first]
    assert client.counters.not_modified == 5 and client.counters.quota_used == 5


def test_recorded_301_is_raised_as_moved_and_its_target_is_readable(replay):
    client = client_for(replay)
    with pytest.raises(Moved) as moved:
        client.get("/repos/octokit-fixture-org/rename-repository")
    assert moved.value.http_status == 301
    assert client.relative(moved.value.location) == "/repositories/1000"
    assert client.get(moved.value.location).data["full_name"].startswith("octokit-fixture-org/")


def test_recorded_search_uses_the_search_rate_limit_and_saves(replay, engine):
    client = client_for(replay)
    page = client.get("/search/issues", {"q": "sesame repo:octokit-fixture-org/search-issues"})
    assert page.data["total_count"] == 2
    assert client.rate("search").remaining == 29
    with engine.begin() as conn:
        assert streams.save_issues(conn, page.data["items"]) == 2
    with engine.connect() as conn:
        repos = {r for (r,) in conn.execute(sa.select(t.issues.c.repo))}
    assert repos == {"octokit-fixture-org/search-issues"}


def test_recorded_error_envelope_becomes_a_sentence(replay):
    with pytest.raises(GitHubError, match="422 .*Validation Failed"):
        client_for(replay).get("/repos/octokit-fixture-org/errors/labels")


def test_documented_issue_and_pull_shapes_are_saved(engine):
    issues = example("issue-items.json") + example("issue-search-result-item-paginated.json")["items"]
    with engine.begin() as conn:
        streams.save_issues(conn, issues)
        streams.save_issues(conn, issues)  # idempotent
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.issues)).all()
        pulls = conn.execute(sa.select(t.pulls)).all()
    assert len(rows) == len({(streams.repo_of(i), i["number"]) for i in issues})
    assert len(pulls) == sum(1 for r in rows if r.is_pull)
    pull = example("pull-request-simple-items.json")[0]
    assert streams._merge_state(pull) == (True, dt.datetime(2011, 1, 26, 19, 1, 12))


def test_documented_timeline_and_members_are_saved(engine):
    events = example("timeline-issue-events.json") + example("issue-event-for-issue-items.json")
    issue = SimpleNamespace(repo="github/roadmap", number=493, is_pull=False, author="octocat",
                            updated_at=dt.datetime(2022, 5, 19))
    users = example("simple-user-items.json")
    with engine.begin() as conn:
        streams.save_timeline(conn, issue, events)
        streams.save_members(conn, users, dt.datetime(2024, 1, 1))
    with engine.connect() as conn:
        kinds = [r.event for r in conn.execute(sa.select(t.events).order_by(t.events.c.created_at))]
        logins = {r.login for r in conn.execute(sa.select(t.members)) if r.active}
    assert "commented" in kinds and "labeled" in kinds and len(kinds) == len(events)
    assert logins == {u["login"] for u in users}


def test_documented_rate_limit_headers_parse():
    headers = json.loads((OPENAPI / "components-headers.json").read_text())
    rate = parse_rate_limit({"X-RateLimit-Remaining": str(headers["x-rate-limit-remaining"]["example"]),
                             "X-RateLimit-Reset": str(headers["x-rate-limit-reset"]["example"])})
    assert (rate.remaining, rate.reset) == (4999, 1590701888.0)
