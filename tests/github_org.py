"""A small but realistic fake organisation, and the check that the database says exactly what it says."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from chalicelib.github import tables as t
from chalicelib.settings import Settings
from tests.fake_github import TOKEN, FakeGitHub


def build_org(fake: FakeGitHub) -> FakeGitHub:
    """Two repositories, 24 issues and PRs, timelines of up to 7 events (pages of 3), 4 members, 2 teams."""
    fake.members = ["alice", "bob", "carol", "dave"]
    fake.teams = {"core": ["alice", "bob"], "web": ["carol"]}
    authors = ["alice", "bob", "carol", "dave", "erin"]
    for n in range(1, 17):
        pull = n % 2 == 0
        merged = pull and n % 4 == 0
        closed = merged or n % 5 == 0
        fake.add_issue("acme/api", n, minute=n * 60, author=authors[n % 5], pull=pull,
                       state="closed" if closed else "open", closed_minute=n * 60 + 300 if closed else None,
                       merged_minute=n * 60 + 300 if merged else None)
        for k in range(n % 6):
            fake.add_event("acme/api", n, "labeled", n * 60 + k, actor="bob", label={"name": f"l{k}"})
        if pull:
            fake.add_event("acme/api", n, "reviewed", n * 60 + 45, actor=authors[(n + 1) % 5])
            fake.add_event("acme/api", n, "reviewed", n * 60 + 20, actor=authors[n % 5])  # self-review
    for n in range(1, 9):
        fake.add_issue("acme/web", n, minute=2000 + n, author="carol", pull=n % 3 == 0)
    return fake


def env(monkeypatch, fake: FakeGitHub, db_url: str, **extra: str) -> Settings:
    values = {"DATABASE_URL": db_url, "GITHUB_API_URL": fake.base_url, "GITHUB_TOKEN": TOKEN,
              "GITHUB_ORG": fake.org, "GITHUB_REPOS": "", "GITHUB_TOKEN_PARAMETER": "", **extra}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env()


def when(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value.rstrip("Z"))


def expected_issues(fake: FakeGitHub) -> dict[tuple[str, int], dict[str, Any]]:
    rows = {key: {"title": i["title"], "state": i["state"], "author": i["user"]["login"],
                  "created_at": when(i["created_at"]), "updated_at": when(i["updated_at"]),
                  "closed_at": when(i["closed_at"]), "is_pull": "pull_request" in i, "deleted": False,
                  "transferred_to": None} for key, i in fake.issues.items()}
    return rows


def expected_pulls(fake: FakeGitHub) -> dict[tuple[str, int], dict[str, Any]]:
    out = {}
    for key, item in fake.issues.items():
        if "pull_request" not in item:
            continue
        reviews = [when(e["submitted_at"]) for e in fake.timelines.get(key, [])
                   if e["event"] == "reviewed" and e["user"]["login"] != item["user"]["login"]]
        merged_at = when(item["pull_request"]["merged_at"])
        out[key] = {"merged": merged_at is not None, "merged_at": merged_at,
                    "first_review_at": min(reviews) if reviews else None}
    return out


def assert_db_matches(engine: sa.Engine, fake: FakeGitHub) -> None:
    """The database holds exactly the fake's issues, PRs, events, members, transfers and deletions."""
    with engine.connect() as conn:
        issues = {(r.repo, r.number): r for r in conn.execute(sa.select(t.issues))}
        pulls = {(r.repo, r.number): r for r in conn.execute(sa.select(t.pulls))}
        events = conn.execute(sa.select(t.events.c.repo, t.events.c.number, sa.func.count())
                              .group_by(t.events.c.repo, t.events.c.number)).all()
        members = {r.login: r for r in conn.execute(sa.select(t.members))}
        teams = {(r.team, r.login) for r in conn.execute(sa.select(t.team_members))}
    live = {k: v for k, v in issues.items() if not v.deleted and v.transferred_to is None}
    want = expected_issues(fake)
    assert {k: {c: getattr(v, c) for c in next(iter(want.values()))} for k, v in live.items()} == want
    for key in fake.gone:
        assert issues[key].deleted is True and issues[key].deleted_at is not None, key
    for key, (repo, number) in fake.moved.items():
        assert issues[key].transferred_to == f"{repo}#{number}", key
    live_pulls = {k: {c: getattr(v, c) for c in ("merged", "merged_at", "first_review_at")}
                  for k, v in pulls.items() if k in want}
    assert live_pulls == expected_pulls(fake)
    assert {(r, n): c for r, n, c in events if (r, n) in want} == {
        k: len(v) for k, v in fake.timelines.items() if v and k in want}
    assert {m for m, r in members.items() if r.active} == set(fake.members)
    assert all(r.left_at is not None for r in members.values() if not r.active)
    assert teams == {(team, login) for team, logins in fake.teams.items() for login in logins}
