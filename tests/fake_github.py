"""A fake GitHub: a real HTTP server on 127.0.0.1 (ThreadingHTTPServer in a thread) with a programmable
data model, realistic bodies and headers, and counters.

It serves the endpoints the sync uses: org repos, members, teams, issue listings (state/sort/direction/
since, `Link` pagination), single issues and pulls, timelines, `/repositories/{id}/issues/{n}` and
`/search/issues` (with its 1,000-result cap). Every 200 carries a content ETag and honours
`If-None-Match` with a 304 that costs no quota. Faults are scripted with `fail(...)`: 502s, timeouts,
secondary limits with `Retry-After` or the documented message; the primary limit comes from `quota`
with resets on the injected clock. Transfers answer 301, deletions 410.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

TOKEN = "test-token-not-a-secret"
BASE_TIME = dt.datetime(2024, 1, 1, 9, 0, 0)


def ts(minutes: float) -> str:
    """A GitHub timestamp `minutes` after BASE_TIME."""
    return (BASE_TIME + dt.timedelta(minutes=minutes)).isoformat() + "Z"


def local_session() -> requests.Session:
    """A requests session for 127.0.0.1 that skips the per-request scan of proxy variables."""
    session = requests.Session()
    session.trust_env = False
    return session


class Clock:
    """A virtual clock: `sleep` advances it instantly and remembers each wait."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self.t

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.t += seconds


@dataclass
class Fault:
    match: str
    kind: str  # "502" | "timeout" | "secondary" | "secondary-message" | "reset"
    times: int = 1
    retry_after: int = 1


@dataclass
class Quota:
    limit: int = 5000
    remaining: int = 5000
    reset: float = 0.0
    window: float = 3600.0


@dataclass
class FakeGitHub:
    """The organisation's data and the server around it. Mutate the data freely between runs."""

    org: str = "acme"
    clock: Callable[[], float] = time.time
    max_per_page: int = 100
    timeout_delay: float = 0.6
    repos: dict[str, int] = field(default_factory=dict)  # full_name -> repository id
    issues: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    timelines: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    members: list[str] = field(default_factory=list)
    teams: dict[str, list[str]] = field(default_factory=dict)
    moved: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    gone: set[tuple[str, int]] = field(default_factory=set)
    faults: list[Fault] = field(default_factory=list)
    quotas: dict[str, Quota] = field(default_factory=lambda: {"core": Quota(), "search": Quota(5000, 5000)})
    requests: int = 0
    quota_used: int = 0
    not_modified: int = 0
    statuses: Counter = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)
    next_id: int = 10_000_000

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self.server: ThreadingHTTPServer | None = None
        self.base_url = ""

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> str:
        fake = self

        class Handler(_Handler):
            github = fake

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *a: None  # a client that timed out is not an error here
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self.base_url

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # -- programming the data -----------------------------------------------------------------------

    def add_repo(self, full_name: str) -> None:
        self.repos.setdefault(full_name, 1000 + len(self.repos))

    def add_issue(self, repo: str, number: int, *, minute: float, author: str = "alice", pull: bool = False,
                  state: str = "open", merged_minute: float | None = None, closed_minute: float | None = None,
                  title: str | None = None) -> dict[str, Any]:
        self.add_repo(repo)
        item = {
            "id": self.repos[repo] * 100_000 + number, "node_id": f"I_{repo}_{number}", "number": number,
            "title": title or f"{'PR' if pull else 'Issue'} {number} of {repo}", "state": state,
            "user": {"login": author, "id": 1, "type": "User"}, "labels": [], "comments": 0,
            "created_at": ts(minute), "updated_at": ts(minute),
            "closed_at": ts(closed_minute) if closed_minute is not None else None,
            "author_association": "MEMBER", "body": "Body text, with \"quotes\" and ünïcödé.",
        }
        if pull:
            item["pull_request"] = {"merged_at": ts(merged_minute) if merged_minute is not None else None}
        self.issues[(repo, number)] = item
        self.timelines.setdefault((repo, number), [])
        return item

    def touch(self, repo: str, number: int, minute: float, **changes: Any) -> None:
        with self.lock:
            self.issues[(repo, number)].update(changes, updated_at=ts(minute))

    def add_event(self, repo: str, number: int, event: str, minute: float, actor: str = "bob",
                  **extra: Any) -> dict[str, Any]:
        with self.lock:
            timeline = self.timelines.setdefault((repo, number), [])
            self.next_id += 1
            ev = {"id": self.next_id, "node_id": f"E_{self.next_id}", "event": event, "actor": {"login": actor}, "created_at": ts(minute), **extra}
            if event == "reviewed":
                ev.pop("actor")
                ev.pop("created_at")
                ev.update(user={"login": actor}, submitted_at=ts(minute), state=extra.get("state", "approved"))
            timeline.append(ev)
            return ev

    def transfer(self, repo: str, number: int, new_repo: str, new_number: int, minute: float) -> None:
        with self.lock:
            item = self.issues.pop((repo, number))
            self.add_repo(new_repo)
            self.issues[(new_repo, new_number)] = {**item, "number": new_number, "updated_at": ts(minute)}
            self.timelines[(new_repo, new_number)] = self.timelines.pop((repo, number), [])
            self.moved[(repo, number)] = (new_repo, new_number)

    def delete(self, repo: str, number: int) -> None:
        with self.lock:
            self.issues.pop((repo, number))
            self.timelines.pop((repo, number), None)
            self.gone.add((repo, number))

    def fail(self, match: str, kind: str, times: int = 1, retry_after: int = 1) -> None:
        with self.lock:
            self.faults.append(Fault(match, kind, times, retry_after))

    def set_quota(self, remaining: int, resource: str = "core", window: float = 3600.0) -> None:
        with self.lock:
            q = self.quotas[resource]
            q.remaining, q.reset, q.window = remaining, self.clock() + window, window

    def reset_counters(self) -> None:
        with self.lock:
            self.requests = self.quota_used = self.not_modified = 0
            self.statuses.clear()
            self.log.clear()

    # -- the API ------------------------------------------------------------------------------------

    def route(self, path: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        """(status, body, extra headers) for a GET; lists are paged later by `respond`."""
        for pattern, handler in ROUTES:
            match = re.fullmatch(pattern, path)
            if match:
                return handler(self, query, *match.groups())
        return 404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}, {}

    def issue_at(self, repo: str, number: int) -> tuple[int, Any, dict[str, str]]:
        key = (repo, int(number))
        if key in self.moved:
            new_repo, new_number = self.moved[key]
            location = f"{self.base_url}/repositories/{self.repos[new_repo]}/issues/{new_number}"
            return 301, {"message": "Moved Permanently", "url": location}, {"Location": location}
        if key in self.gone:
            return 410, {"message": "This issue was deleted", "documentation_url": "https://docs.github.com"}, {}
        if key not in self.issues:
            return 404, {"message": "Not Found"}, {}
        return 200, self.with_urls(repo, self.issues[key]), {}

    def with_urls(self, repo: str, item: dict[str, Any]) -> dict[str, Any]:
        api = f"{self.base_url}/repos/{repo}"
        out = {**item, "url": f"{api}/issues/{item['number']}", "repository_url": api,
               "html_url": f"https://github.com/{repo}/issues/{item['number']}"}
        if "pull_request" in item:
            out["pull_request"] = {**item["pull_request"], "url": f"{api}/pulls/{item['number']}"}
        return out


# -- route handlers (each returns status, body, headers) -----------------------------------------------


def _org_repos(fake: FakeGitHub, q: dict, org: str) -> tuple:
    return 200, [{"id": i, "name": n.split("/")[1], "full_name": n} for n, i in fake.repos.items()
                 if n.startswith(org + "/")], {}


def _members(fake: FakeGitHub, q: dict, org: str) -> tuple:
    return 200, [{"login": m, "id": 500 + i, "type": "User", "site_admin": False}
                 for i, m in enumerate(sorted(fake.members))], {}


def _teams(fake: FakeGitHub, q: dict, org: str) -> tuple:
    return 200, [{"slug": s, "name": s.title(), "id": 900 + i} for i, s in enumerate(sorted(fake.teams))], {}


def _team_members(fake: FakeGitHub, q: dict, org: str, slug: str) -> tuple:
    if slug not in fake.teams:
        return 404, {"message": "Not Found"}, {}
    return 200, [{"login": m, "id": 1} for m in sorted(fake.teams[slug])], {}


def _list_issues(fake: FakeGitHub, q: dict, owner: str, name: str) -> tuple:
    repo = f"{owner}/{name}"
    items = [fake.with_urls(repo, i) for (r, _), i in fake.issues.items() if r == repo]
    if q.get("state", "open") != "all":
        items = [i for i in items if i["state"] == q.get("state", "open")]
    if q.get("since"):
        items = [i for i in items if i["updated_at"] >= q["since"]]
    key = "updated_at" if q.get("sort") == "updated" else "created_at"
    items.sort(key=lambda i: (i[key], i["number"]), reverse=q.get("direction", "desc") == "desc")
    return 200, items, {}


def _issue(fake: FakeGitHub, q: dict, owner: str, name: str, number: str) -> tuple:
    return fake.issue_at(f"{owner}/{name}", int(number))


def _timeline(fake: FakeGitHub, q: dict, owner: str, name: str, number: str) -> tuple:
    status, body, headers = fake.issue_at(f"{owner}/{name}", int(number))
    if status == 301:
        headers = {"Location": headers["Location"] + "/timeline"}
    if status != 200:
        return status, body, headers
    return 200, list(fake.timelines.get((f"{owner}/{name}", int(number)), [])), {}


def _pull(fake: FakeGitHub, q: dict, owner: str, name: str, number: str) -> tuple:
    status, body, headers = fake.issue_at(f"{owner}/{name}", int(number))
    if status != 200 or "pull_request" not in body:
        return (status, body, headers) if status != 200 else (404, {"message": "Not Found"}, {})
    merged_at = body["pull_request"].get("merged_at")
    pull = {k: v for k, v in body.items() if k != "pull_request"}
    return 200, {**pull, "merged": merged_at is not None, "merged_at": merged_at}, {}


def _by_repo_id(fake: FakeGitHub, q: dict, repo_id: str, number: str) -> tuple:
    names = [n for n, i in fake.repos.items() if i == int(repo_id)]
    return fake.issue_at(names[0], int(number)) if names else (404, {"message": "Not Found"}, {})


def _search(fake: FakeGitHub, q: dict) -> tuple:
    text = q.get("q", "")
    scope = re.search(r"(repo|org):(\S+)", text)
    created = re.search(r"created:(\S+)\.\.(\S+)", text)
    items = [fake.with_urls(r, i) for (r, _), i in fake.issues.items()
             if scope is None or (r == scope.group(2) if scope.group(1) == "repo" else r.startswith(scope.group(2) + "/"))]
    if created:
        items = [i for i in items if created.group(1) <= i["created_at"] <= created.group(2)]
    items.sort(key=lambda i: (i["created_at"], i["number"]))
    return 200, {"total_count": len(items), "incomplete_results": False, "items": items}, {}


ROUTES: list[tuple[str, Callable[..., tuple]]] = [
    (r"/orgs/([^/]+)/repos", _org_repos),
    (r"/orgs/([^/]+)/members", _members),
    (r"/orgs/([^/]+)/teams", _teams),
    (r"/orgs/([^/]+)/teams/([^/]+)/members", _team_members),
    (r"/repos/([^/]+)/([^/]+)/issues", _list_issues),
    (r"/repos/([^/]+)/([^/]+)/issues/(\d+)", _issue),
    (r"/repos/([^/]+)/([^/]+)/issues/(\d+)/timeline", _timeline),
    (r"/repos/([^/]+)/([^/]+)/pulls/(\d+)", _pull),
    (r"/repositories/(\d+)/issues/(\d+)", _by_repo_id),
    (r"/search/issues", _search),
]


class _Handler(BaseHTTPRequestHandler):
    github: FakeGitHub
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        return

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        try:
            self._answer()
        except (BrokenPipeError, ConnectionResetError):
            return

    def _answer(self) -> None:
        fake = self.github
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        resource = "search" if split.path.startswith("/search/") else "core"
        with fake.lock:
            fake.requests += 1
            fake.log.append(self.path)
            fault = self._fault(split.path)
        if fault == "timeout":
            time.sleep(fake.timeout_delay)
            return self._send(504, {"message": "too slow"}, {}, resource, count=False)
        if fault:
            return self._send_fault(fault, resource)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._send(401, {"message": "Bad credentials"}, {}, resource, count=False)
        with fake.lock:
            quota = self._quota(resource)
            if quota.remaining <= 0:
                return self._send(403, {"message": "API rate limit exceeded for user ID 1. See the docs."},
                                  {}, resource, count=False)
            status, body, headers = fake.route(split.path, query)
            if status == 200 and isinstance(body, list):
                body, headers = self._paged(body, split.path, query, headers)
            return self._send(status, body, headers, resource)

    def _fault(self, path: str) -> str | None:
        for fault in self.github.faults:
            if fault.times > 0 and fault.match in path:
                fault.times -= 1
                return fault.kind if fault.kind != "secondary" else f"secondary:{fault.retry_after}"
        return None

    def _quota(self, resource: str) -> Quota:
        quota = self.github.quotas[resource]
        if self.github.clock() >= quota.reset:
            quota.remaining, quota.reset = quota.limit, self.github.clock() + quota.window
        return quota

    def _send_fault(self, fault: str, resource: str) -> None:
        if fault == "502":
            return self._send(502, {"message": "Server Error"}, {}, resource, count=True)
        if fault.startswith("secondary:"):
            retry = fault.split(":")[1]
            return self._send(429, {"message": "You have exceeded a secondary rate limit."},
                              {"Retry-After": retry}, resource, count=False)
        return self._send(403, {"message": "You have exceeded a secondary rate limit. Please wait a few "
                                "minutes before you try again."}, {}, resource, count=False)

    def _paged(self, items: list, path: str, query: dict[str, str], headers: dict) -> tuple[Any, dict]:
        per_page = min(int(query.get("per_page", 30)), self.github.max_per_page)
        page = int(query.get("page", 1))
        last = max((len(items) + per_page - 1) // per_page, 1)
        links = []
        for rel, number in (("prev", page - 1), ("next", page + 1), ("last", last), ("first", 1)):
            if 1 <= number <= last and not (rel in ("last", "first") and number == page):
                links.append(f'<{self.github.base_url}{path}?{urlencode({**query, "page": number})}>; rel="{rel}"')
        body = items[(page - 1) * per_page: page * per_page]
        return body, {**headers, **({"Link": ", ".join(links)} if links else {})}

    def _search_page(self, body: dict, query: dict[str, str], headers: dict) -> tuple[int, Any, dict]:
        per_page = min(int(query.get("per_page", 30)), self.github.max_per_page)
        page = int(query.get("page", 1))
        if page * per_page > 1000 and (page - 1) * per_page >= 1000:
            return 422, {"message": "Only the first 1000 search results are available"}, {}
        reachable = body["items"][:1000]
        last = max((len(reachable) + per_page - 1) // per_page, 1)
        items = reachable[(page - 1) * per_page: page * per_page]
        link = {}
        if page < last:
            path = "/search/issues?" + urlencode({**query, "page": page + 1})
            link = {"Link": f'<{self.github.base_url}{path}>; rel="next", '
                            f'<{self.github.base_url}/search/issues?{urlencode({**query, "page": last})}>; rel="last"'}
        return 200, {**body, "items": items}, {**headers, **link}

    def _send(self, status: int, body: Any, headers: dict[str, str], resource: str, count: bool = True) -> None:
        fake = self.github
        if resource == "search" and status == 200 and isinstance(body, dict) and "total_count" in body:
            status, body, headers = self._search_page(body, {k: v[-1] for k, v in parse_qs(
                urlsplit(self.path).query).items()}, headers)
        raw = json.dumps(body).encode()
        etag = '"' + hashlib.sha1(raw, usedforsecurity=False).hexdigest() + '"' if status == 200 else None
        with fake.lock:
            quota = self._quota(resource)
            if etag and self.headers.get("If-None-Match") == etag:
                status, raw, count = 304, b"", False
                fake.not_modified += 1
            if count:
                quota.remaining -= 1
                fake.quota_used += 1
            fake.statuses[status] += 1
            rate = {"X-RateLimit-Limit": str(quota.limit), "X-RateLimit-Remaining": str(max(quota.remaining, 0)),
                    "X-RateLimit-Used": str(quota.limit - max(quota.remaining, 0)),
                    "X-RateLimit-Reset": str(int(quota.reset)), "X-RateLimit-Resource": resource}
        self.send_response(status)
        for name, value in {**rate, **headers, **({"ETag": etag} if etag else {}),
                            "X-GitHub-Request-Id": f"FAKE:{fake.requests}"}.items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


class Replay:
    """Serves recorded exchanges (octokit fixtures) on 127.0.0.1, links rewritten to point back here.

    Requests match on path and query parameters (in any order); an `If-None-Match` equal to the
    recorded ETag gets a 304, as GitHub would answer it.
    """

    def __init__(self) -> None:
        self.exchanges: dict[tuple[str, frozenset], tuple[int, dict[str, str], Any]] = {}
        self.requests: list[str] = []
        self.server: ThreadingHTTPServer | None = None
        self.base_url = ""

    @staticmethod
    def key(path: str) -> tuple[str, frozenset]:
        split = urlsplit(path)
        return split.path, frozenset((k, v[-1]) for k, v in parse_qs(split.query).items())

    def add(self, path: str, status: int, headers: dict[str, str], body: Any) -> None:
        self.exchanges[self.key(path)] = (status, headers, body)

    def start(self) -> str:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                replay.requests.append(self.path)
                status, headers, body = replay.exchanges.get(replay.key(self.path), (404, {}, {"message": "Not Found"}))
                raw = b"" if body is None else json.dumps(body).encode()
                etag = {k.lower(): v for k, v in headers.items()}.get("etag")
                if status == 200 and etag and self.headers.get("If-None-Match") == etag:
                    status, raw = 304, b""
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(name, str(value).replace("https://api.github.com", replay.base_url))
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self.base_url

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
