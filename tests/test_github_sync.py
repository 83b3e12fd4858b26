"""The scheduled jobs against the fake GitHub and the real databases: the database ends exactly as the
fake says, after faults, interruptions and reruns; requests and quota are counted on both sides."""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa

from chalicelib.github import tables as t
from chalicelib.github.sync import NO_ORG, run_job
from tests.fake_github import Clock, FakeGitHub, local_session
from tests.github_org import assert_db_matches, build_org, env

ALL_JOBS = ("every_30_min", "nrt_events", "daily")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def fake(clock):
    server = build_org(FakeGitHub(clock=clock.now, max_per_page=3, timeout_delay=0.5))
    server.start()
    yield server
    server.stop()


def run(name, settings, clock, **options):
    options.setdefault("timeout", 1.0)
    options.setdefault("session", local_session())
    return run_job(name, settings, sleep=clock.sleep, now=clock.now, rng=random.Random(1), **options)


def sync_all(settings, clock, **options) -> list[dict]:
    return [r for name in ALL_JOBS for r in run(name, settings, clock, **options)]


def until_done(name, settings, clock, max_runs=200, **options) -> int:
    """Rerun a job (as the schedule would) until each of its streams has finished once; returns the runs."""
    finished: set[str] = set()
    for runs in range(1, max_runs + 1):
        results = run(name, settings, clock, **options)
        assert all(r["status"] in ("done", "stopped") for r in results), results
        finished |= {r["stream"] for r in results if r["status"] == "done"}
        if finished == {stream for stream, _ in run_job_streams(name)}:
            return runs
        clock.sleep(600)
    raise AssertionError(f"{name} never finished")


def run_job_streams(name):
    from chalicelib.github.sync import JOBS

    return JOBS[name]


def change_everything(fake: FakeGitHub) -> None:
    """What happens in an organisation between two runs."""
    fake.touch("acme/api", 3, 5000, state="closed", closed_at="2024-01-05T00:00:00Z")
    fake.touch("acme/api", 2, 5001, state="closed", closed_at="2024-01-05T00:01:00Z",
               pull_request={"merged_at": "2024-01-05T00:01:00Z"})
    fake.add_event("acme/api", 1, "commented", 5002, actor="carol")
    fake.touch("acme/api", 1, 5002)
    fake.add_event("acme/api", 14, "reviewed", 700, actor="alice")  # an earlier review appears
    fake.touch("acme/api", 14, 5003)
    fake.add_issue("acme/api", 26, minute=5004, author="dave", pull=True)
    fake.transfer("acme/api", 7, "acme/web", 9, minute=5005)
    fake.delete("acme/api", 9)
    fake.members.remove("dave")
    fake.members.append("frank")
    fake.teams["web"].append("frank")


def test_a_full_sync_fills_the_database_exactly(fake, clock, engine, monkeypatch, db_url):
    settings = env(monkeypatch, fake, db_url)
    results = sync_all(settings, clock)
    assert [r["status"] for r in results] == ["done"] * 6
    assert_db_matches(engine, fake)
    assert fake.requests == sum(r["requests"] for r in results)
    assert fake.quota_used == sum(r["quota_used"] for r in results)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.runs).order_by(t.runs.c.id)).all()
        cursors = {(r.stream, r.scope) for r in conn.execute(sa.select(t.cursors))}
    assert [(r.job, r.stream, r.status) for r in rows] == [
        ("every_30_min", "issues", "done"), ("every_30_min", "members", "done"),
        ("nrt_events", "timeline", "done"), ("nrt_events", "sweep", "done"), ("daily", "sweep", "done"),
        ("daily", "teams", "done")]
    assert all(r.finished_at is not None and r.rate_remaining is not None for r in rows)
    assert {("issues", "acme/api"), ("issues", "acme/web"), ("sweep", "*")} <= cursors
    print(f"\nfirst sync of the fake org: {fake.requests} requests, {fake.quota_used} quota")


def test_a_second_run_over_an_unchanged_org_is_only_304s(fake, clock, engine, monkeypatch, db_url):
    settings = env(monkeypatch, fake, db_url)
    sync_all(settings, clock)
    fake.reset_counters()
    with engine.connect() as conn:
        before = {name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
                  for name, table in (("issues", t.issues), ("pulls", t.pulls), ("events", t.events))}
    results = sync_all(settings, clock)
    assert fake.quota_used == 0 and sum(r["quota_used"] for r in results) == 0
    assert fake.not_modified == fake.requests == sum(r["requests"] for r in results)
    assert fake.statuses == {304: fake.requests}
    with engine.connect() as conn:
        after = {name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
                 for name, table in (("issues", t.issues), ("pulls", t.pulls), ("events", t.events))}
    assert after == before
    assert_db_matches(engine, fake)
    print(f"\nsecond sync over an unchanged org: {fake.requests} requests, {fake.not_modified} of them 304, "
          f"{fake.quota_used} quota; per stream: "
          + ", ".join(f"{r['stream']} {r['requests']}/{r['not_modified']}/{r['quota_used']}" for r in results))


def test_changes_transfers_deletions_and_leavers_are_all_recorded(fake, clock, engine, monkeypatch, db_url):
    settings = env(monkeypatch, fake, db_url)
    sync_all(settings, clock)
    change_everything(fake)
    sync_all(settings, clock)
    assert_db_matches(engine, fake)
    with engine.connect() as conn:
        dave = conn.execute(sa.select(t.members).where(t.members.c.login == "dave")).one()
        moved = conn.execute(sa.select(t.transfers)).one()
    assert dave.active is False and dave.left_at is not None
    assert (moved.old_repo, moved.old_number, moved.new_repo, moved.new_number) == ("acme/api", 7, "acme/web", 9)
    assert moved.new_location.startswith("/repositories/")


def test_a_member_who_rejoins_is_active_again(fake, clock, engine, monkeypatch, db_url):
    settings = env(monkeypatch, fake, db_url)
    run("every_30_min", settings, clock)
    fake.members.remove("bob")
    run("every_30_min", settings, clock)
    fake.members.append("bob")
    run("every_30_min", settings, clock)
    with engine.connect() as conn:
        bob = conn.execute(sa.select(t.members).where(t.members.c.login == "bob")).one()
    assert (bob.active, bob.left_at) == (True, None)


def test_runs_cut_off_by_their_request_budget_lose_nothing(fake, clock, engine, monkeypatch, db_url):
    settings = env(monkeypatch, fake, db_url)
    sync_all(settings, clock)
    change_everything(fake)
    runs = sum(until_done(name, settings, clock, max_requests=6) for name in ALL_JOBS)
    assert runs > len(ALL_JOBS)  # it really was cut off, many times
    assert_db_matches(engine, fake)
    with engine.connect() as conn:
        statuses = {r.status for r in conn.execute(sa.select(t.runs.c.status))}
    assert statuses == {"done", "stopped"}


def test_first_sync_cut_off_anywhere_then_resumed_is_exact(fake, clock, engine, monkeypatch, db_url):
    settings = env(monkeypatch, fake, db_url)
    for name in ALL_JOBS:
        until_done(name, settings, clock, max_requests=4)
    assert_db_matches(engine, fake)


def test_primary_limit_mid_run_stops_then_the_next_run_resumes(fake, clock, engine, monkeypatch, db_url):
    settings = env(monkeypatch, fake, db_url)
    fake.set_quota(6, window=3600)
    first = run("every_30_min", settings, clock)
    assert first[0]["status"] == "stopped" and "rate limit" in first[0]["reason"]
    assert clock.sleeps == []  # an hour's wait never fits a 9 minute budget
    clock.sleep(3600)
    until_done("every_30_min", settings, clock)
    for name in ALL_JOBS[1:]:
        until_done(name, settings, clock)
    assert_db_matches(engine, fake)
    with engine.connect() as conn:
        stopped = conn.execute(sa.select(t.runs).where(t.runs.c.status == "stopped")).first()
    assert stopped.rate_remaining == 0 and stopped.rate_reset is not None


def test_primary_limit_that_resets_within_the_budget_is_waited_out(fake, clock, engine, monkeypatch, db_url):
    settings = env(monkeypatch, fake, db_url)
    fake.set_quota(6, window=60)
    results = sync_all(settings, clock)
    assert all(r["status"] == "done" for r in results)
    assert any(50 <= s <= 62 for s in clock.sleeps)
    assert_db_matches(engine, fake)


def test_502s_timeouts_and_secondary_limits_mid_run_change_nothing(fake, clock, engine, monkeypatch, db_url):
    settings = env(monkeypatch, fake, db_url)
    fake.fail("/repos/acme/api/issues", "502", times=2)
    fake.fail("/timeline", "timeout")
    fake.fail("/orgs/acme/members", "secondary", retry_after=3)
    fake.fail("/repos/acme/web/issues/2", "secondary-message")
    results = sync_all(settings, clock, timeout=0.25)
    assert all(r["status"] == "done" for r in results), results
    assert 3.0 in clock.sleeps and 60.0 in clock.sleeps
    assert fake.statuses[502] == 2 and fake.statuses[429] == 1
    assert_db_matches(engine, fake)


def test_a_deadline_reached_mid_run_stops_cleanly(fake, clock, engine, monkeypatch, db_url):
    settings = env(monkeypatch, fake, db_url)
    fake.fail("/repos/acme/api/issues", "secondary", retry_after=100)
    results = run("every_30_min", settings, clock, budget_seconds=50)
    assert results[0]["status"] == "stopped" and "time budget" in results[0]["reason"]
    until_done("every_30_min", settings, clock)


def test_github_repos_limits_what_is_synced(fake, clock, engine, monkeypatch, db_url):
    settings = env(monkeypatch, fake, db_url, GITHUB_REPOS="acme/web")
    run("every_30_min", settings, clock)
    with engine.connect() as conn:
        repos = {r for (r,) in conn.execute(sa.select(t.issues.c.repo).distinct())}
    assert repos == {"acme/web"}
    assert not any("/orgs/acme/repos" in p for p in fake.log)


def test_the_core_tables_match_the_migration(engine):
    inspector = sa.inspect(engine)
    for table in (t.issues, t.pulls, t.events, t.members, t.team_members, t.transfers, t.etags, t.cursors, t.runs):
        migrated = {c["name"] for c in inspector.get_columns(table.name)}
        assert migrated == {c.name for c in table.columns}, table.name
        assert set(inspector.get_pk_constraint(table.name)["constrained_columns"]) == {
            c.name for c in table.primary_key.columns}, table.name


def test_nrt_events_sweeps_a_slice_so_transfers_show_within_hours(fake, clock, engine, monkeypatch, db_url):
    settings = env(monkeypatch, fake, db_url)
    sync_all(settings, clock)
    fake.transfer("acme/api", 11, "acme/web", 30, minute=6000)  # nobody touches acme/api#11 afterwards
    monkeypatch.setattr("chalicelib.github.sync.NRT_SWEEP", 5)

    def moved_to():
        with engine.connect() as conn:
            return conn.execute(sa.select(t.issues.c.transferred_to).where(
                t.issues.c.repo == "acme/api", t.issues.c.number == 11)).scalar()

    runs = 0
    while moved_to() is None:
        runs += until_done("nrt_events", settings, clock)
        assert runs < 10
    assert moved_to() == "acme/web#30"
    assert runs >= 2  # a slice of 5 issues per run, not the whole organisation in one run


@pytest.mark.parametrize("repos", ["", "acme/web"])
def test_without_github_org_every_stream_that_needs_it_fails_with_the_same_reason(
        fake, clock, engine, monkeypatch, db_url, repos):
    """Members and teams need the organisation; so do the issues when GITHUB_REPOS does not list them."""
    settings = env(monkeypatch, fake, db_url, GITHUB_ORG="", GITHUB_REPOS=repos)
    results = sync_all(settings, clock)
    by_stream = {(r["job"], r["stream"]): r for r in results}
    needs_org = {("every_30_min", "members"), ("daily", "teams")} | ({("every_30_min", "issues")} if not repos else set())
    failed = {key for key, r in by_stream.items() if r["status"] == "failed"}
    assert failed == needs_org
    assert {by_stream[key]["reason"] for key in needs_org} == {NO_ORG}
    assert "GITHUB_ORG is not set" in NO_ORG
    assert all(by_stream[key]["requests"] == 0 for key in needs_org)
    assert all(r["status"] == "done" for key, r in by_stream.items() if key not in needs_org)
    assert not any(p.startswith("/orgs/") for p in fake.log)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(t.runs.c.stream, t.runs.c.status, t.runs.c.stop_reason)
                              .where(t.runs.c.status == "failed")).all()
        repos_synced = {r for (r,) in conn.execute(sa.select(t.issues.c.repo).distinct())}
    assert {(s, reason) for s, _, reason in stored} == {(stream, NO_ORG) for _, stream in needs_org}
    assert repos_synced == ({"acme/web"} if repos else set())
