"""backfill.py against the fake GitHub: search windows split under the 1,000-result cap, about N/100
list calls for N issues, safe to stop and rerun with --resume."""

from __future__ import annotations

import datetime as dt
import io
import random

import pytest
import sqlalchemy as sa

import backfill
from chalicelib.github import tables as t
from tests.fake_github import Clock, FakeGitHub, local_session
from tests.github_org import env

N = 2500


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def fake(clock):
    server = FakeGitHub(clock=clock.now)
    for n in range(1, N + 1):  # one every 29 minutes: about 50 days, over 1,000 in a 30-day window
        server.add_issue("acme/api", n, minute=n * 29, pull=n % 3 == 0, author=f"user{n % 7}")
    for n in range(1, 31):
        server.add_issue("acme/web", n, minute=n * 29)
    server.start()
    yield server
    server.stop()


def plan(**overrides) -> backfill.Plan:
    values = {"scopes": ("repo:acme/api",), "since": dt.datetime(2024, 1, 1), "until": dt.datetime(2024, 3, 1),
              "window": dt.timedelta(days=30), "resume": False, "timelines": False}
    return backfill.Plan(**{**values, **overrides})


def run(settings, clock, the_plan, **options):
    return backfill.run(the_plan, settings, sleep=clock.sleep, now=clock.now, out=io.StringIO(),
                        rng=random.Random(3), session=local_session(), **options)


def count(engine, table=t.issues) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def test_backfill_of_n_issues_takes_about_n_over_100_list_calls(fake, clock, engine, monkeypatch, db_url):
    settings = env(monkeypatch, fake, db_url)
    results = run(settings, clock, plan())
    assert results[0]["status"] == "done" and results[0]["items"] == N
    assert count(engine) == N
    searches = [p for p in fake.log if p.startswith("/search/issues")]
    splits = len(searches) - N // 100
    assert N // 100 <= len(searches) <= N // 100 + 6, searches  # 25 pages + a few window probes
    assert splits <= 6
    assert fake.statuses[422] == 0  # never asked past the 1,000-result cap
    print(f"\nbackfill of N={N} issues: {len(searches)} search list calls, quota used {fake.quota_used}")


def test_windows_that_hold_more_than_1000_results_are_split(fake, clock, engine, monkeypatch, db_url):
    settings = env(monkeypatch, fake, db_url)
    run(settings, clock, plan(window=dt.timedelta(days=60)))
    queries = [p for p in fake.log if "&page=" not in p]
    assert len(queries) >= 3  # the 60-day window, then its halves (and theirs while still > 1,000)
    assert count(engine) == N


def created_until(fake: FakeGitHub, until: dt.datetime, repo: str | None = None) -> int:
    stamp = until.isoformat() + "Z"
    return sum(1 for (r, _), i in fake.issues.items() if i["created_at"] <= stamp and repo in (None, r))


def test_a_stopped_backfill_resumes_and_loses_nothing(fake, clock, engine, monkeypatch, db_url):
    settings = env(monkeypatch, fake, db_url)
    until = dt.datetime(2024, 1, 4)
    first = run(settings, clock, plan(window=dt.timedelta(hours=12), until=until), max_requests=2)
    assert first[0]["status"] == "stopped"
    runs, status = 1, "stopped"
    while status == "stopped" and runs < 100:
        runs += 1
        status = run(settings, clock, plan(window=dt.timedelta(hours=12), until=until, resume=True),
                     max_requests=2)[0]["status"]
    assert status == "done" and runs > 3
    assert count(engine) == created_until(fake, until, "acme/api") > 100
    with engine.connect() as conn:
        cursor = conn.execute(sa.select(t.cursors.c.cursor).where(t.cursors.c.stream == "backfill")).scalar()
    assert "2024-01-04T00:00:00Z" in cursor


def test_rerunning_a_backfill_duplicates_nothing(fake, clock, engine, monkeypatch, db_url):
    settings = env(monkeypatch, fake, db_url)
    until = dt.datetime(2024, 1, 3)
    run(settings, clock, plan(scopes=("org:acme",), until=until))
    run(settings, clock, plan(scopes=("org:acme",), until=until))
    assert count(engine) == created_until(fake, until) > 100
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.pulls)).scalar() == sum(
            1 for i in fake.issues.values() if "pull_request" in i and i["created_at"] <= "2024-01-03T00:00:00Z")


def test_backfill_reads_timelines_of_what_it_loaded(fake, clock, engine, monkeypatch, db_url):
    settings = env(monkeypatch, fake, db_url)
    fake.add_event("acme/web", 2, "reviewed", 100, actor="bob")
    fake.add_event("acme/web", 2, "labeled", 101, actor="bob")
    results = run(settings, clock, plan(scopes=("repo:acme/web",), timelines=True))
    assert [r["stream"] for r in results] == ["backfill", "timeline"]
    assert count(engine, t.events) == 2


def test_the_cli_shows_progress_and_exits_3_when_stopped(fake, engine, monkeypatch, db_url, capsys):
    env(monkeypatch, fake, db_url)
    argv = ["--repo", "acme/web", "--since", "2024-01-01", "--until", "2024-01-02T00:00:00Z", "--window-days", "0.25"]
    assert backfill.main(argv + ["--no-timelines", "--max-requests", "1"]) == backfill.STOPPED
    assert backfill.main(argv + ["--resume"]) == 0
    err = capsys.readouterr().err
    assert "--resume" in err
    # Not a terminal: plain lines, no carriage returns, the final one with the count, items and rate.
    assert "\r" not in err
    finals = [line for line in err.splitlines() if line.startswith("windows: 100.0% (4 of 4 windows)")]
    assert len(finals) == 1 and "30 items" in finals[0] and "windows/s" in finals[0], err
    assert count(engine) == 30


def test_the_cli_explains_missing_arguments(monkeypatch):
    monkeypatch.delenv("GITHUB_ORG", raising=False)
    monkeypatch.setenv("GITHUB_REPOS", "")
    with pytest.raises(SystemExit, match="--org"):
        backfill.main(["--since", "2024-01-01"])
    with pytest.raises(SystemExit, match="--since"):
        backfill.main(["--org", "acme"])


def test_windows_cover_the_period_without_gaps_or_overlaps():
    start, end = dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 10, 12)
    parts = backfill.windows(start, end, dt.timedelta(days=3))
    assert parts[0][0] == start and parts[-1][1] == end
    assert all(b[0] - a[1] == dt.timedelta(seconds=1) for a, b in zip(parts, parts[1:], strict=False))
    assert len(parts) == 4
