"""The GitHub schedules and routes through Chalice's test client, over the fake GitHub and both databases."""

from __future__ import annotations

import datetime as dt
import json
import statistics

import pytest
from chalice.test import Client
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.stats import summary
from tests.fake_github import FakeGitHub
from tests.github_org import build_org, env, expected_pulls, when


@pytest.fixture
def fake():
    server = build_org(FakeGitHub(max_per_page=3))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def chalice_client(fake, db_url, monkeypatch):
    env(monkeypatch, fake, db_url)
    from app import app

    with Client(app, stage_name="local") as client:
        yield client


def invoke(client, name: str):
    response = client.lambda_.invoke(name, client.events.generate_cw_event("aws.events", "Scheduled Event", {}, []))
    return response.payload


def synced(client, fake: FakeGitHub) -> None:
    """Every schedule once, a member leaving and an issue deleted and one transferred in between."""
    invoke(client, "every_30_min")
    fake.members.remove("dave")
    fake.delete("acme/api", 5)
    fake.transfer("acme/api", 3, "acme/web", 20, minute=9000)
    for name in ("every_30_min", "nrt_events", "daily"):
        assert all(r["status"] == "done" for r in invoke(client, name)), name


def get(client, url: str, status: int = 200) -> dict:
    response = client.http.get(url)
    assert response.status_code == status, response.body
    return json.loads(response.body)


def test_schedules_sync_and_the_lists_show_it(chalice_client, fake):
    synced(chalice_client, fake)
    check_pulls(chalice_client, fake)
    check_issues(chalice_client, fake)
    check_paging(chalice_client, fake)
    check_members(chalice_client, fake)


def check_pulls(chalice_client, fake):
    pulls = get(chalice_client, "/github/pulls?limit=1000")["items"]
    assert len(pulls) == sum(1 for i in fake.issues.values() if "pull_request" in i)
    merged = get(chalice_client, "/github/pulls?repo=acme/api&state=merged")["items"]
    assert {p["number"] for p in merged} == {4, 8, 12, 16}
    assert all(p["merged"] and p["merged_at"].endswith("Z") for p in merged)
    four = next(p for p in merged if p["number"] == 4)
    assert set(four) == {"repo", "number", "title", "state", "merged", "author", "created_at", "closed_at",
                         "merged_at", "first_review_at"}
    assert when(four["first_review_at"]) == expected_pulls(fake)[("acme/api", 4)]["first_review_at"]
    by_author = get(chalice_client, "/github/pulls?author=erin")["items"]
    assert by_author and all(p["author"] == "erin" for p in by_author)


def check_issues(chalice_client, fake):
    deleted = get(chalice_client, "/github/issues?state=deleted")["items"]
    assert [(i["repo"], i["number"], i["deleted"]) for i in deleted] == [("acme/api", 5, True)]
    moved = get(chalice_client, "/github/issues?state=transferred")["items"]
    assert [(i["number"], i["transferred_to"]) for i in moved] == [(3, "acme/web#20")]
    still_open = get(chalice_client, "/github/issues?repo=acme/api&state=open")["items"]
    assert {3, 5}.isdisjoint(i["number"] for i in still_open)
    assert 20 in {i["number"] for i in get(chalice_client, "/github/issues?repo=acme/web")["items"]}


def check_paging(chalice_client, fake):
    seen, after = [], None
    while True:
        body = get(chalice_client, "/github/issues?limit=4" + (f"&after={after}" if after else ""))
        seen += [(i["repo"], i["number"]) for i in body["items"]]
        after = body["next"]
        if after is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert len(seen) == sum(1 for i in fake.issues.values() if "pull_request" not in i) + 2  # + deleted, moved


def check_members(chalice_client, fake):
    members = {m["login"]: m for m in get(chalice_client, "/github/members")["items"]}
    assert members["dave"]["active"] is False and members["dave"]["left_at"].endswith("Z")
    assert members["alice"] == {**members["alice"], "active": True, "left_at": None}
    assert [m["login"] for m in get(chalice_client, "/github/members?active=false")["items"]] == ["dave"]


def test_metrics_match_the_fake_per_repo_and_per_team(chalice_client, fake):
    synced(chalice_client, fake)
    body = get(chalice_client, "/github/metrics?repo=acme/api")
    pulls = {k: v for k, v in expected_pulls(fake).items() if k[0] == "acme/api"}
    created = {k: when(fake.issues[k]["created_at"]) for k in pulls}
    review = [int((v["first_review_at"] - created[k]).total_seconds()) for k, v in pulls.items()
              if v["first_review_at"]]
    merge = [int((v["merged_at"] - created[k]).total_seconds()) for k, v in pulls.items() if v["merged_at"]]
    assert body["time_to_first_review"] == summary(review)
    assert body["time_to_merge"] == summary(merge)
    assert body["time_to_merge"]["median"] == statistics.median(merge)
    assert sum(w["opened"] for w in body["weekly"]) == body["pull_requests"] == len(pulls)
    assert sum(w["merged"] for w in body["weekly"]) == len(merge)
    weeks = [dt.date.fromisoformat(w["week"]) for w in body["weekly"]]
    assert all(w.weekday() == 0 for w in weeks) and all(b - a == dt.timedelta(days=7) for a, b in zip(weeks, weeks[1:], strict=False))
    team = get(chalice_client, "/github/metrics?team=core&from=2024-01-01&to=2024-12-31")
    core = [k for k in expected_pulls(fake) if fake.issues[k]["user"]["login"] in fake.teams["core"]]
    assert team["pull_requests"] == len(core) and team["team"] == "core"


BAD = [
    ("/github/metrics?team=nobody", 404, "team"),
    ("/github/metrics?repo=acme/nothing", 404, "GITHUB_REPOS"),
    ("/github/metrics?from=2024-02-01&to=2024-01-01", 400, "from"),
    ("/github/metrics?from=yesterday", 400, "date"),
    ("/github/pulls?state=bogus", 400, "state"),
    ("/github/pulls?limit=5000", 400, "limit"),
    ("/github/issues?after=not-a-cursor", 400, "after"),
    ("/github/members?active=maybe", 400, "active"),
]


def test_bad_parameters_get_a_sentence(chalice_client, fake):
    invoke(chalice_client, "every_30_min")
    for url, status, words in BAD:
        body = get(chalice_client, url, status)
        assert set(body) == {"error"} and words in body["error"], url


def test_sync_route_shows_last_runs_cursors_and_quota(chalice_client, fake):
    synced(chalice_client, fake)
    body = get(chalice_client, "/github/sync")
    streams = {item["stream"]: item for item in body["items"]}
    assert set(streams) == {"issues", "members", "timeline", "sweep", "teams"}
    last = streams["issues"]["last_runs"][0]
    assert last["status"] == "done" and last["job"] == "every_30_min"
    assert {"requests", "not_modified", "quota_used", "started_at", "finished_at"} <= set(last)
    assert "acme/api" in streams["issues"]["cursors"]
    assert body["quota"]["remaining"] is not None and body["quota"]["reset"].endswith("Z")
    assert body["next"] is None


def test_the_token_comes_from_ssm_when_deployed(fake, db_url, monkeypatch, aws):
    import boto3

    from chalicelib.secrets import clear_cache
    from tests.fake_github import TOKEN

    boto3.client("ssm").put_parameter(Name="/sluice/test/github-token", Value=TOKEN, Type="SecureString")
    env(monkeypatch, fake, db_url, GITHUB_TOKEN="", GITHUB_TOKEN_PARAMETER="/sluice/test/github-token")
    from app import app

    clear_cache()
    try:
        with Client(app, stage_name="local") as client:
            assert [r["status"] for r in invoke(client, "every_30_min")] == ["done", "done"]
    finally:
        clear_cache()


def test_not_configured_is_recorded_as_failed(chalice_client, monkeypatch):
    monkeypatch.setenv("GITHUB_ORG", "")
    results = invoke(chalice_client, "every_30_min")
    assert results[0]["status"] == "failed" and "GITHUB_ORG" in results[0]["reason"]


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=50))
def test_summary_agrees_with_the_statistics_module(values):
    result = summary(values)
    assert result["count"] == len(values)
    assert result["mean"] == pytest.approx(statistics.fmean(values), abs=0.01)
    assert result["median"] == statistics.median(values)
    assert result["mode"] == min(statistics.multimode(values))


def test_summary_of_nothing_and_of_missing_values():
    assert summary([]) == {"count": 0, "mean": None, "median": None, "mode": None}
    assert summary([None, float("nan"), 4, 4, 10]) == {"count": 3, "mean": 6, "median": 4, "mode": 4}
