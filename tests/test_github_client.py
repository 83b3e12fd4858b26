"""The GitHub client against the fake GitHub server (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import logging
import random

import pytest

from chalicelib.github.client import (
    BudgetSpent,
    GitHubClient,
    GitHubError,
    Gone,
    Moved,
    OutOfTime,
    RateLimited,
    Unavailable,
    parse_rate_limit,
)
from tests.fake_github import TOKEN, Clock, FakeGitHub, local_session


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def fake(clock):
    server = FakeGitHub(clock=clock.now, max_per_page=3, timeout_delay=0.5)
    for n in range(1, 11):
        server.add_issue("acme/api", n, minute=n)
    server.start()
    yield server
    server.stop()


def make(fake: FakeGitHub, clock: Clock, **options) -> GitHubClient:
    options.setdefault("timeout", 0.2)
    options.setdefault("session", local_session())
    return GitHubClient(fake.base_url, TOKEN, sleep=clock.sleep, now=clock.now, rng=random.Random(7), **options)


def numbers(pages) -> list[int]:
    return [item["number"] for page in pages for item in page.data]


def test_paginate_follows_link_headers_over_every_page(fake, clock):
    client = make(fake, clock)
    pages = list(client.paginate("/repos/acme/api/issues", {"state": "all", "sort": "created", "direction": "asc"}))
    assert numbers(pages) == list(range(1, 11))
    assert len(pages) == 4
    assert client.counters.requests == fake.requests == 4
    assert client.counters.quota_used == fake.quota_used == 4


def test_second_pass_is_all_304s_costing_no_quota(fake, clock):
    client = make(fake, clock)
    params = {"state": "all", "sort": "created", "direction": "asc"}
    first = list(client.paginate("/repos/acme/api/issues", params))
    fake.reset_counters()
    again = make(fake, clock, cache=client.cache)
    second = list(again.paginate("/repos/acme/api/issues", params))
    assert numbers(second) == numbers(first)
    assert all(p.from_cache and p.status == 304 for p in second)
    assert again.counters.not_modified == fake.not_modified == 4
    assert again.counters.quota_used == fake.quota_used == 0


def test_a_304_on_page_one_does_not_hide_a_changed_later_page(fake, clock):
    for minute in range(1, 8):
        fake.add_event("acme/api", 1, "labeled", minute)
    client = make(fake, clock)
    assert len([e for p in client.paginate("/repos/acme/api/issues/1/timeline") for e in p.data]) == 7
    fake.add_event("acme/api", 1, "closed", 9)
    pages = list(client.paginate("/repos/acme/api/issues/1/timeline"))
    assert [p.status for p in pages] == [304, 304, 200]
    assert [e["event"] for p in pages for e in p.data][-1] == "closed"


def test_get_with_etag_returns_304_without_data(fake, clock):
    client = make(fake, clock)
    first = client.get("/repos/acme/api/issues/3")
    again = client.get("/repos/acme/api/issues/3", etag=first.etag)
    assert (again.status, again.data) == (304, None)
    assert client.counters.quota_used == 1


def test_primary_limit_waits_for_the_reset_when_it_fits(fake, clock):
    fake.set_quota(2, window=120)
    client = make(fake, clock, deadline=clock.now() + 600)
    pages = list(client.paginate("/repos/acme/api/issues", {"state": "all"}))
    assert len(numbers(pages)) == 10
    assert len(clock.sleeps) == 1 and 100 <= clock.sleeps[0] <= 122
    assert fake.statuses[403] == 0  # it waited before asking, never hitting the wall
    assert client.counters.quota_used == fake.quota_used == 4


def test_primary_limit_stops_cleanly_when_the_wait_does_not_fit(fake, clock):
    fake.set_quota(1, window=3600)
    client = make(fake, clock, deadline=clock.now() + 300)
    seen = []
    with pytest.raises(RateLimited) as caught:
        for page in client.paginate("/repos/acme/api/issues", {"state": "all"}):
            seen.append(page)
    assert len(seen) == 1
    assert caught.value.resume_at == pytest.approx(clock.now() + 3601, abs=2)
    assert clock.sleeps == []


def test_primary_limit_403_is_waited_out_and_retried(fake, clock):
    fake.set_quota(0, window=30)
    client = make(fake, clock, deadline=clock.now() + 600)
    page = client.get("/repos/acme/api/issues/1")
    assert page.data["number"] == 1
    assert fake.statuses[403] == 1 and len(clock.sleeps) == 1


def test_secondary_limit_with_retry_after_backs_off(fake, clock):
    fake.fail("/repos/acme/api/issues/2", "secondary", retry_after=2)
    client = make(fake, clock)
    assert client.get("/repos/acme/api/issues/2").data["number"] == 2
    assert clock.sleeps == [2.0]
    assert fake.statuses[429] == 1
    assert client.counters.quota_used == fake.quota_used == 1


def test_secondary_limit_message_without_retry_after_waits_a_minute(fake, clock):
    fake.fail("/repos/acme/api/issues/2", "secondary-message")
    client = make(fake, clock)
    assert client.get("/repos/acme/api/issues/2").data["number"] == 2
    assert clock.sleeps == [60.0]


def test_5xx_is_retried_with_jittered_backoff(fake, clock):
    fake.fail("/repos/acme/api/issues/4", "502", times=2)
    client = make(fake, clock)
    assert client.get("/repos/acme/api/issues/4").data["number"] == 4
    assert client.counters.retries == 2 and len(clock.sleeps) == 2
    assert 0.5 <= clock.sleeps[0] <= 1.5 and 1.0 <= clock.sleeps[1] <= 3.0


def test_5xx_that_never_ends_raises_unavailable(fake, clock):
    fake.fail("/repos/acme/api/issues/4", "502", times=50)
    client = make(fake, clock, max_retries=3)
    with pytest.raises(Unavailable, match="after 4 attempts"):
        client.get("/repos/acme/api/issues/4")
    assert fake.requests == 4


def test_a_timeout_is_retried(fake, clock):
    fake.fail("/repos/acme/api/issues/5", "timeout")
    client = make(fake, clock, timeout=0.1)
    assert client.get("/repos/acme/api/issues/5").data["number"] == 5
    assert client.counters.retries == 1


def test_request_budget_and_deadline_stop_the_run(fake, clock):
    client = make(fake, clock, max_requests=2)
    client.get("/repos/acme/api/issues/1")
    client.get("/repos/acme/api/issues/2")
    with pytest.raises(BudgetSpent):
        client.get("/repos/acme/api/issues/3")
    late = make(fake, clock, deadline=clock.now() - 1)
    with pytest.raises(OutOfTime):
        late.get("/repos/acme/api/issues/1")
    assert fake.requests == 2


def test_transferred_and_deleted_issues_raise_moved_and_gone(fake, clock):
    fake.transfer("acme/api", 6, "acme/web", 1, minute=30)
    fake.delete("acme/api", 7)
    client = make(fake, clock)
    with pytest.raises(Moved) as moved:
        client.get("/repos/acme/api/issues/6")
    assert client.relative(moved.value.location).startswith("/repositories/")
    assert client.get(moved.value.location).data["repository_url"].endswith("/repos/acme/web")
    with pytest.raises(Gone, match="410"):
        client.get("/repos/acme/api/issues/7")


def test_links_off_the_configured_origin_are_refused(fake, clock):
    with pytest.raises(GitHubError, match="Refusing"):
        make(fake, clock).get("https://evil.example.com/repos/acme/api/issues")


def test_the_token_is_never_logged_or_shown(fake, clock, caplog):
    caplog.set_level(logging.DEBUG)
    logger = logging.getLogger("sluice.github")  # Chalice's app logger "sluice" does not propagate to root
    logger.addHandler(caplog.handler)
    try:
        fake.fail("/repos/acme/api/issues/8", "502")
        client = make(fake, clock)
        client.get("/repos/acme/api/issues/8")
    finally:
        logger.removeHandler(caplog.handler)
    assert "retrying" in caplog.text
    assert TOKEN not in caplog.text and TOKEN not in repr(client)


def test_parse_rate_limit_converts_once_and_normalises_milliseconds():
    rate = parse_rate_limit({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1507651200000",
                             "X-RateLimit-Limit": "5000", "X-RateLimit-Resource": "search", "Retry-After": "3"})
    assert (rate.remaining, rate.reset, rate.limit, rate.resource, rate.retry_after) == (
        0, 1507651200.0, 5000, "search", 3)
    empty = parse_rate_limit({"X-RateLimit-Remaining": "n/a"})
    assert (empty.remaining, empty.reset, empty.resource) == (None, None, "core")


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.75])
def test_the_wait_for_a_reset_runs_a_second_past_it(fraction):
    """X-RateLimit-Reset is a whole second, the real reset falls within the second after it: a clock that
    does not start on a whole second must still wake after the reset, never hit the wall in between."""
    clock = Clock(start=1_800_000_000.0 + fraction)
    server = FakeGitHub(clock=clock.now, max_per_page=3)
    for n in range(1, 11):
        server.add_issue("acme/api", n, minute=n)
    server.set_quota(2, window=120)
    server.start()
    try:
        client = make(server, clock, deadline=clock.now() + 600)
        pages = list(client.paginate("/repos/acme/api/issues", {"state": "all"}))
    finally:
        server.stop()
    assert len(numbers(pages)) == 10
    header_reset = int(1_800_000_000.0 + fraction + 120)
    assert clock.sleeps == [pytest.approx(header_reset + 1 - (1_800_000_000.0 + fraction))]
    assert server.statuses[403] == 0


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_a_403_at_the_wall_is_retried_a_second_past_the_reset(fraction):
    clock = Clock(start=1_800_000_000.0 + fraction)
    server = FakeGitHub(clock=clock.now)
    server.add_issue("acme/api", 1, minute=1)
    server.set_quota(0, window=30)
    server.start()
    try:
        page = make(server, clock, deadline=clock.now() + 600).get("/repos/acme/api/issues/1")
    finally:
        server.stop()
    assert page.data["number"] == 1
    assert clock.sleeps == [pytest.approx(int(1_800_000_000.0 + fraction + 30) + 1 - (1_800_000_000.0 + fraction))]
    assert server.statuses[403] == 1  # the wall once, then the retry after the reset


@pytest.mark.parametrize("link", [
    "https://127.0.0.1:{port}/repos/acme/api/issues?page=2",  # same host and port, another scheme
    "http://127.0.0.1:{other}/repos/acme/api/issues?page=2",  # same host, another port
    "http://localhost:{port}/repos/acme/api/issues?page=2",  # same port, another host name
])
def test_links_that_change_scheme_port_or_host_are_refused(fake, clock, link):
    port = int(fake.base_url.rsplit(":", 1)[1])
    url = link.format(port=port, other=port + 1)
    client = make(fake, clock)
    with pytest.raises(GitHubError, match="Refusing"):
        client.get(url)
    assert fake.requests == 0
