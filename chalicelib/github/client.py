"""The one GitHub REST client every stream uses.

It owns everything about talking to GitHub politely:
- `Link`-header pagination (`paginate`), absolute links accepted only on the configured origin, so the
  token is never sent anywhere else;
- conditional requests: `get(path, etag=...)` sends `If-None-Match`; `get_cached`/`paginate` keep each
  URL's ETag and body in an `EtagCache`, and a 304 (which costs no quota) hands back the stored body;
- the primary rate limit (`X-RateLimit-Remaining`/`Reset`, parsed once in `parse_rate_limit`): the
  client waits for the reset when that wait fits before its deadline, otherwise raises `RateLimited`;
- secondary limits (403/429 with `Retry-After` or GitHub's documented message) with backoff;
- retries with jitter on 5xx, timeouts and dropped connections;
- a per-run budget: a deadline (`now()` seconds) and a maximum number of requests.

Every way of running out (time, quota, budget, GitHub down) raises a `StopSync`: callers have saved
what they read so far, and the next run resumes from the stored cursors. `sleep` and `now` are
injectable so tests run on a virtual clock. The token is never logged or put in a message.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import requests

from chalicelib.errors import SluiceError

log = logging.getLogger("sluice.github")
# Chalice sets its app logger ("sluice") to ERROR unless debug is on; retries and stops are worth seeing.
log.setLevel(logging.INFO)

PER_PAGE = 100
SECONDARY_MESSAGES = ("secondary rate limit", "abuse detection")
USER_AGENT = "sluice-github-sync"


class GitHubError(SluiceError):
    """GitHub answered something we cannot use; the message names the status, path and request id."""

    status = 502

    def __init__(self, message: str, *, http_status: int | None = None, path: str = "") -> None:
        super().__init__(message)
        self.http_status = http_status
        self.path = path

    @classmethod
    def from_response(cls, resp: requests.Response, path: str, **extra: Any) -> GitHubError:
        request_id = resp.headers.get("X-GitHub-Request-Id", "")
        suffix = f" (request id {request_id})" if request_id else ""
        message = f"GitHub answered {resp.status_code} for {path}: {_message(resp)}{suffix}"
        return cls(message, http_status=resp.status_code, path=path, **extra)


class Moved(GitHubError):
    """301: the resource lives elsewhere now (a transferred issue, a renamed repository)."""

    def __init__(self, message: str, *, location: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.location = location


class Gone(GitHubError):
    """404 or 410: the resource was deleted (or is no longer visible to us)."""


class StopSync(GitHubError):
    """The run must stop now; what is saved stays saved and the next run resumes from the cursors."""

    def __init__(self, message: str, *, resume_at: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.resume_at = resume_at


class RateLimited(StopSync):
    """A primary or secondary rate limit whose wait does not fit in the time left."""


class OutOfTime(StopSync):
    """The run's deadline has passed."""


class BudgetSpent(StopSync):
    """The run made as many requests as it was allowed."""


class Unavailable(StopSync):
    """GitHub kept failing (5xx, timeouts) after every retry."""


@dataclass(frozen=True)
class RateLimit:
    """The rate-limit headers of one response, as numbers (reset in epoch seconds)."""

    resource: str
    limit: int | None
    remaining: int | None
    used: int | None
    reset: float | None
    retry_after: float | None


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = (headers.get(name) or "").strip()
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimit:
    """The one place rate-limit headers are read. Resets written in milliseconds are normalised."""
    reset = _int_header(headers, "X-RateLimit-Reset")
    if reset is not None and reset > 10**11:
        reset = reset // 1000
    return RateLimit(
        resource=(headers.get("X-RateLimit-Resource") or "core").strip(),
        limit=_int_header(headers, "X-RateLimit-Limit"),
        remaining=_int_header(headers, "X-RateLimit-Remaining"),
        used=_int_header(headers, "X-RateLimit-Used"),
        reset=float(reset) if reset is not None else None,
        retry_after=_int_header(headers, "Retry-After"),
    )


def _message(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return (resp.text or resp.reason or "").strip()[:200]
    return str(body.get("message", "")) if isinstance(body, dict) else ""


@dataclass(frozen=True)
class Page:
    """One response: its JSON, ETag and next link. `from_cache` means a 304 answered by the cache."""

    url: str
    status: int
    data: Any
    etag: str | None
    next_url: str | None
    from_cache: bool = False


class EtagCache(Protocol):
    """Where conditional requests keep what they saw: one (etag, body, next link) per URL."""

    def load(self, url: str) -> tuple[str, Any, str | None] | None: ...

    def store(self, url: str, etag: str, data: Any, next_url: str | None) -> None: ...


class MemoryCache:
    """An in-process EtagCache (tests and one-off scripts; the jobs use the database one)."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, Any, str | None]] = {}

    def load(self, url: str) -> tuple[str, Any, str | None] | None:
        return self.entries.get(url)

    def store(self, url: str, etag: str, data: Any, next_url: str | None) -> None:
        self.entries[url] = (etag, json.loads(json.dumps(data)), next_url)


@dataclass
class Counters:
    """What a client did: requests sent, 304s, quota spent, retries and seconds waited."""

    requests: int = 0
    not_modified: int = 0
    quota_used: int = 0
    retries: int = 0
    waited: float = 0.0
    by_status: dict[int, int] = field(default_factory=dict)

    def snapshot(self) -> Counters:
        return Counters(self.requests, self.not_modified, self.quota_used, self.retries, self.waited,
                        dict(self.by_status))


class GitHubClient:
    """A GitHub REST client with a per-run budget. See the module docstring for what it handles."""

    def __init__(
        self,
        base_url: str,
        token: str = "",
        *,
        cache: EtagCache | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.time,
        deadline: float | None = None,
        max_requests: int | None = None,
        timeout: float = 20.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.cache = cache if cache is not None else MemoryCache()
        self.session = session or requests.Session()
        self.sleep, self.now = sleep, now
        self.deadline, self.max_requests = deadline, max_requests
        self.timeout, self.max_retries, self.backoff = timeout, max_retries, backoff
        self.rng = rng or random.Random()
        self.counters = Counters()
        self.rates: dict[str, RateLimit] = {}

    def __repr__(self) -> str:  # never show the token
        return f"GitHubClient({self.base_url!r})"

    # -- public API ---------------------------------------------------------------------------------

    def get(self, path: str, params: Mapping[str, Any] | None = None, etag: str | None = None) -> Page:
        """One GET. With `etag`, a 304 gives a Page with status 304 and no data.

        Raises Moved (301), Gone (404/410), GitHubError (other failures), StopSync (out of budget).
        """
        url = self.relative(path, params)
        resp = self._send(url, etag)
        return self._page(url, resp)

    def get_cached(self, path: str, params: Mapping[str, Any] | None = None) -> Page:
        """A conditional GET through the ETag cache: a 304 returns the stored body, `from_cache=True`."""
        url = self.relative(path, params)
        stored = self.cache.load(url)
        page = self._page(url, self._send(url, stored[0] if stored else None))
        if page.status == 304 and stored:
            return Page(url, 304, stored[1], stored[0], stored[2], from_cache=True)
        if page.etag:
            self.cache.store(url, page.etag, page.data, page.next_url)
        return page

    def paginate(self, path: str, params: Mapping[str, Any] | None = None, cached: bool = True) -> Iterator[Page]:
        """Every page, following `Link: rel="next"`. A 304 page still leads on to the pages after it."""
        url: str | None = self.relative(path, {"per_page": PER_PAGE, **(params or {})})
        while url:
            page = self.get_cached(url) if cached else self.get(url)
            yield page
            url = page.next_url

    def rate(self, resource: str = "core") -> RateLimit | None:
        return self.rates.get(resource)

    # -- internals ----------------------------------------------------------------------------------

    def relative(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        """`/path?query` relative to the base URL; absolute URLs must be on the base URL's origin."""
        if path.startswith(("http://", "https://")):
            base, target = urlsplit(self.base_url), urlsplit(path)
            if (base.scheme, base.netloc) != (target.scheme, target.netloc):
                raise GitHubError(f"Refusing to follow a link off {self.base_url}: "
                                  f"{target.scheme}://{target.netloc}.")
            prefix = base.path.rstrip("/")
            rel = target.path[len(prefix):] if prefix and target.path.startswith(prefix) else target.path
            path = rel + (f"?{target.query}" if target.query else "")
        if params:
            path += ("&" if "?" in path else "?") + urlencode({k: v for k, v in params.items() if v is not None})
        return path

    def _headers(self, etag: str | None) -> dict[str, str]:
        headers = {"Accept": "application/vnd.github+json", "User-Agent": USER_AGENT,
                   "X-GitHub-Api-Version": "2022-11-28"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if etag:
            headers["If-None-Match"] = etag
        return headers

    def _send(self, url: str, etag: str | None) -> requests.Response:
        """Send one GET, retrying what is worth retrying; return the final response."""
        resource = "search" if url.startswith("/search/") else "core"
        attempt = 0
        while True:
            self._before_request(resource)
            try:
                resp = self.session.get(self.base_url + url, headers=self._headers(etag),
                                        timeout=self.timeout, allow_redirects=False)
            except (requests.Timeout, requests.ConnectionError) as exc:
                self.counters.requests += 1
                attempt = self._retry(attempt, f"{type(exc).__name__} on {url.split('?')[0]}", None)
                continue
            wait = self._record(resp, resource)
            if wait is None:
                return resp
            attempt = self._retry(attempt, f"{resp.status_code} on {url.split('?')[0]}", wait)

    def _before_request(self, resource: str) -> None:
        if self.deadline is not None and self.now() >= self.deadline:
            raise OutOfTime("The run's time budget is spent; the next run resumes from the saved cursors.")
        if self.max_requests is not None and self.counters.requests >= self.max_requests:
            raise BudgetSpent(f"The run's budget of {self.max_requests} requests is spent; "
                              "the next run resumes from the saved cursors.")
        rate = self.rates.get(resource)
        if rate and rate.remaining is not None and rate.remaining <= 0 and rate.reset:
            wait = rate.reset - self.now() + 1
            if wait > 0:
                self._wait(wait, f"the {resource} rate limit until its reset")
                self.rates.pop(resource, None)

    def _record(self, resp: requests.Response, resource: str) -> float | None:
        """Count the response and keep its rate limit; the seconds to wait before a retry, or None."""
        c = self.counters
        c.requests += 1
        c.by_status[resp.status_code] = c.by_status.get(resp.status_code, 0) + 1
        rate = parse_rate_limit(resp.headers)
        if rate.remaining is not None:
            self.rates[resource] = rate
        wait = self._retry_wait(resp, rate)
        if resp.status_code == 304:
            c.not_modified += 1
        elif wait is None or resp.status_code >= 500:
            c.quota_used += 1
        return wait

    def _retry_wait(self, resp: requests.Response, rate: RateLimit) -> float | None:
        """Seconds to wait before retrying `resp`, or None when it is a final answer."""
        if resp.status_code >= 500:
            return 0.0  # backoff with jitter decides
        if resp.status_code not in (403, 429):
            return None
        if rate.retry_after is not None:
            return float(rate.retry_after)
        if any(m in _message(resp).lower() for m in SECONDARY_MESSAGES):
            return 60.0  # GitHub: wait at least a minute when no Retry-After is given
        if rate.remaining == 0 and rate.reset:
            return max(rate.reset - self.now() + 1, 1.0)
        return 60.0 if resp.status_code == 429 else None  # a secondary limit without its headers

    def _retry(self, attempt: int, why: str, wait: float | None) -> int:
        """Sleep before retry number `attempt + 1` (backoff with jitter when `wait` is 0 or None)."""
        if attempt >= self.max_retries:
            raise Unavailable(f"GitHub kept failing ({why}) after {attempt + 1} attempts; "
                              "the next run retries from the saved cursors.")
        if not wait:
            wait = self.backoff * (2**attempt) * (0.5 + self.rng.random())
        self.counters.retries += 1
        log.warning("github: %s; retrying in %.1fs", why, wait)
        self._wait(wait, why)
        return attempt + 1

    def _wait(self, seconds: float, why: str) -> None:
        if self.deadline is not None and self.now() + seconds > self.deadline:
            raise RateLimited(f"Waiting {seconds:.0f}s for {why} does not fit in the run's time budget; "
                              "the next run resumes from the saved cursors.", resume_at=self.now() + seconds)
        if seconds >= 5:
            log.warning("github: waiting %.0fs for %s", seconds, why)
        self.sleep(seconds)
        self.counters.waited += seconds

    def _page(self, url: str, resp: requests.Response) -> Page:
        status = resp.status_code
        if status == 304:
            return Page(url, 304, None, resp.headers.get("ETag"), None)
        if status in (301, 302, 307, 308):
            location = resp.headers.get("Location", "")
            raise Moved.from_response(resp, url.split("?")[0], location=location)
        if status in (404, 410):
            raise Gone.from_response(resp, url.split("?")[0])
        if status >= 400 and status in (403, 429) and "rate limit" in _message(resp).lower():
            raise RateLimited.from_response(resp, url.split("?")[0])
        if not 200 <= status < 300:
            raise GitHubError.from_response(resp, url.split("?")[0])
        link = resp.links.get("next", {}).get("url")
        return Page(url, status, resp.json() if resp.content else None, resp.headers.get("ETag"),
                    self.relative(link, None) if link else None)
