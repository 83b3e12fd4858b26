"""The GitHub streams: what each reads (`fetch_*`, generators that only yield API data) and how it is
stored (`save_*`, which only write, inside the caller's transaction). `sync_*` glue the two, one
transaction per page or per issue, the stream's cursor written last in that same transaction: a run
cut off anywhere loses nothing and the next one resumes from the cursor.

Never call GitHub while holding a database connection: on SQLite every transaction takes the write
lock (BEGIN IMMEDIATE), and the ETag cache writes in its own transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from chalicelib.github import tables as t
from chalicelib.github.client import PER_PAGE, GitHubClient, GitHubError, Gone, Moved, StopSync

log = logging.getLogger("sluice.github")

SEARCH_CAP = 1000  # GitHub's search API serves at most 1,000 results per query


@dataclass(frozen=True)
class Stream:
    """What a stream reads and how its rows and progress are keyed."""

    name: str
    path: str
    primary_key: tuple[str, ...]
    cursor_field: str | None


ISSUES = Stream("issues", "/repos/{repo}/issues", ("repo", "number"), "updated_at")
TIMELINE = Stream("timeline", "/repos/{repo}/issues/{number}/timeline", ("repo", "number", "event_key"),
                  "timeline_synced_at")
SWEEP = Stream("sweep", "/repos/{repo}/issues/{number}", ("repo", "number"), "after")
MEMBERS = Stream("members", "/orgs/{org}/members", ("login",), None)
TEAMS = Stream("teams", "/orgs/{org}/teams/{team}/members", ("team", "login"), None)
SEARCH = Stream("backfill", "/search/issues", ("repo", "number"), "done_until")


# -- small shared pieces -----------------------------------------------------------------------------


def parse_time(value: str | None) -> dt.datetime | None:
    """GitHub's `2024-01-02T03:04:05Z` as a naive UTC datetime."""
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def github_time(value: dt.datetime) -> str:
    return value.replace(microsecond=0).isoformat() + "Z"


def stamp(client: GitHubClient) -> dt.datetime:
    """The client's clock as a naive UTC datetime (a virtual clock in tests)."""
    return dt.datetime.fromtimestamp(client.now(), dt.UTC).replace(tzinfo=None)


_UPSERTS: dict[tuple, Any] = {}


def upsert(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]], update: Sequence[str],
           newer_only: bool = False) -> None:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE `update` columns (both dialects speak it).

    With `newer_only`, a row only replaces a stored one whose `updated_at` is not later than its own.
    """
    if not rows:
        return
    keys = [c.name for c in table.primary_key.columns]
    rows = sorted(rows, key=lambda r: tuple(r[k] for k in keys))  # one lock order for every writer
    conn.execute(_upsert_statement(conn.dialect.name, table, tuple(update), newer_only), list(rows))


def _upsert_statement(dialect: str, table: sa.Table, update: tuple[str, ...], newer_only: bool) -> Any:
    """Built once per shape: building `excluded` proxies is costly and every page would repeat it."""
    key = (dialect, table.name, update, newer_only)
    if key not in _UPSERTS:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(table)
        keys = [c.name for c in table.primary_key.columns]
        if update:
            where = table.c.updated_at <= stmt.excluded.updated_at if newer_only else None
            stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in update},
                                              where=where)
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=keys)
        _UPSERTS[key] = stmt
    return _UPSERTS[key]


def load_cursor(conn: Connection, stream: str, scope: str) -> dict[str, Any]:
    raw = conn.execute(sa.select(t.cursors.c.cursor).where(
        t.cursors.c.stream == stream, t.cursors.c.scope == scope)).scalar()
    return json.loads(raw) if raw else {}


def save_cursor(conn: Connection, stream: str, scope: str, value: dict[str, Any], now: dt.datetime) -> None:
    row = {"stream": stream, "scope": scope, "cursor": json.dumps(value, sort_keys=True), "updated_at": now}
    upsert(conn, t.cursors, [row], ["cursor", "updated_at"])


def read_cursor(engine: Engine, stream: str, scope: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return load_cursor(conn, stream, scope)


class DbEtagCache:
    """The ETag cache in `github_etags`: each URL's last ETag, body and next link, shared by all runs.

    Writes are buffered and flushed `batch` at a time (and by `flush()` when a stream ends): this is a
    cache, so losing unflushed entries costs a 200 instead of a 304 next time, never a wrong answer.
    """

    def __init__(self, engine: Engine, now: Callable[[], dt.datetime], batch: int = 50) -> None:
        self.engine, self.now, self.batch = engine, now, batch
        self.pending: dict[str, dict[str, Any]] = {}
        self.prefetched: dict[str, dict[str, Any] | None] = {}

    def prefetch(self, urls: Sequence[str]) -> None:
        """Load many URLs' entries in one query (a batch of issues about to be checked)."""
        wanted = [u for u in urls if u not in self.pending]
        if not wanted:
            return
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.etags).where(t.etags.c.url.in_(wanted))).mappings().all()
        self.prefetched = {**{u: None for u in wanted}, **{r["url"]: dict(r) for r in rows}}

    def load(self, url: str) -> tuple[str, Any, str | None] | None:
        if url in self.pending or url in self.prefetched:
            row = self.pending.get(url) or self.prefetched.pop(url)
            return (row["etag"], json.loads(row["body"]), row["link"]) if row else None
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(t.etags.c.etag, t.etags.c.body, t.etags.c.link)
                                 .where(t.etags.c.url == url)).first()
        return (found.etag, json.loads(found.body), found.link) if found else None

    def store(self, url: str, etag: str, data: Any, next_url: str | None) -> None:
        self.pending[url] = {"url": url, "etag": etag, "body": json.dumps(data), "link": next_url,
                             "fetched_at": self.now()}
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            with self.engine.begin() as conn:
                upsert(conn, t.etags, list(self.pending.values()), ["etag", "body", "link", "fetched_at"])
            self.pending.clear()


def prefetch(client: GitHubClient, urls: Sequence[str]) -> None:
    """Warm the client's ETag cache for `urls` when the cache can (the database one can)."""
    warm = getattr(client.cache, "prefetch", None)
    if warm is not None:
        warm([client.relative(u, {"per_page": PER_PAGE}) if "timeline" in u else client.relative(u) for u in urls])


def repo_of(item: dict[str, Any], default: str | None = None) -> str:
    """`owner/name` from an issue's `repository_url` (search results mix repositories)."""
    url = item.get("repository_url") or ""
    if "/repos/" in url:
        return url.split("/repos/", 1)[1].strip("/")
    if default is None:
        raise GitHubError(f"Issue {item.get('number')} carries no repository_url.")
    return default


# -- repositories ------------------------------------------------------------------------------------


def fetch_repos(client: GitHubClient, org: str) -> Iterator[str]:
    for page in client.paginate(f"/orgs/{org}/repos", {"type": "all"}):
        yield from (r["full_name"] for r in page.data or [])


# -- issues and pull requests ------------------------------------------------------------------------


def fetch_issues(client: GitHubClient, repo: str, since: str | None) -> Iterator[tuple[list[dict], str | None]]:
    """Pages of issues and PRs updated at or after `since`, oldest first, with the page's cursor.

    Keyset paging: each request asks again with `since` = the newest `updated_at` seen, rather than
    following page links, so an issue updated meanwhile (which moves to the end) is never skipped.
    Only when a whole page shares one timestamp does it follow the `next` link.
    """
    base = {"state": "all", "sort": "updated", "direction": "asc", "per_page": PER_PAGE}
    url, params = ISSUES.path.format(repo=repo), {**base, "since": since}
    while True:
        page = client.get(url, params)
        items = page.data or []
        top = max((i["updated_at"] for i in items), default=since)
        yield items, top
        if not page.next_url:
            return
        if top == since:
            url, params = page.next_url, None
        else:
            since = top
            url, params = ISSUES.path.format(repo=repo), {**base, "since": since}


def _issue_row(item: dict[str, Any], repo: str) -> dict[str, Any]:
    return {
        "repo": repo,
        "number": int(item["number"]),
        "github_id": item.get("id"),
        "title": item.get("title") or "",
        "state": item.get("state") or "open",
        "author": (item.get("user") or {}).get("login"),
        "created_at": parse_time(item["created_at"]),
        "updated_at": parse_time(item["updated_at"]),
        "closed_at": parse_time(item.get("closed_at")),
    }


def _merge_state(item: dict[str, Any]) -> tuple[bool, dt.datetime | None] | None:
    """(merged, merged_at) when the item says it (a pull, or an issue listing's `pull_request`)."""
    info = item.get("pull_request") if "pull_request" in item else item
    if not isinstance(info, dict) or ("merged_at" not in info and "merged" not in info):
        return None
    merged_at = parse_time(info.get("merged_at"))
    return bool(info.get("merged")) or merged_at is not None, merged_at


ISSUE_UPDATE = ("github_id", "title", "state", "author", "created_at", "updated_at", "closed_at", "is_pull",
                "deleted", "deleted_at")
PULL_UPDATE = ("github_id", "title", "state", "author", "created_at", "updated_at", "closed_at")


def save_issues(conn: Connection, items: Iterable[dict[str, Any]], repo: str | None = None) -> int:
    """Upsert issues and pull requests; an older copy of an item never overwrites a newer one."""
    issue_rows, pulls_known, pulls_unknown = [], [], []
    for item in items:
        row = _issue_row(item, repo_of(item, repo))
        is_pull = "pull_request" in item
        issue_rows.append({**row, "is_pull": is_pull, "deleted": False, "deleted_at": None})
        if is_pull:
            merge = _merge_state(item)
            if merge is None:
                pulls_unknown.append({**row, "merged": False, "merged_at": None})
            else:
                pulls_known.append({**row, "merged": merge[0], "merged_at": merge[1]})
    upsert(conn, t.issues, issue_rows, ISSUE_UPDATE, newer_only=True)
    upsert(conn, t.pulls, pulls_known, PULL_UPDATE + ("merged", "merged_at"), newer_only=True)
    upsert(conn, t.pulls, pulls_unknown, PULL_UPDATE, newer_only=True)
    return len(issue_rows)


def sync_issues(client: GitHubClient, engine: Engine, repo: str) -> int:
    """Bring one repository's issues and PRs up to date; returns how many items were saved.

    A conditional probe of the newest-updated item comes first: when it answers 304 (no quota) and
    the last listing finished, nothing changed since and no list call is made at all. The probe's
    ETag is only trusted once the listing that followed it has finished; a listing cut off midway is
    resumed without a new probe, keeping the ETag taken before it began.
    """
    state = read_cursor(engine, ISSUES.name, repo)
    if state.get("listing"):
        pending = state.get("pending_etag")
    else:
        probe = client.get(ISSUES.path.format(repo=repo),
                           {"state": "all", "sort": "updated", "direction": "desc", "per_page": 1},
                           etag=state.get("probe_etag"))
        if probe.status == 304:
            return 0
        pending = probe.etag
    since, saved = state.get("since"), 0
    for items, cursor in fetch_issues(client, repo, since):
        with engine.begin() as conn:
            saved += save_issues(conn, items, repo)
            save_cursor(conn, ISSUES.name, repo, {"since": cursor, "listing": True, "pending_etag": pending},
                        stamp(client))
        since = cursor
    with engine.begin() as conn:
        save_cursor(conn, ISSUES.name, repo, {"since": since, "probe_etag": pending}, stamp(client))
    return saved


# -- timelines (events, reviews) ---------------------------------------------------------------------


def fetch_timeline(client: GitHubClient, repo: str, number: int) -> Iterator[dict[str, Any]]:
    """Every event of every timeline page; a 304 page is served from the cache and paging goes on."""
    for page in client.paginate(TIMELINE.path.format(repo=repo, number=number)):
        yield from page.data or []


def _event_row(repo: str, number: int, event: dict[str, Any]) -> dict[str, Any]:
    key = event.get("id") or event.get("sha") or event.get("node_id")
    if key is None:
        key = hashlib.sha1(json.dumps(event, sort_keys=True).encode(), usedforsecurity=False).hexdigest()
    who = event.get("actor") or event.get("user") or {}
    when = event.get("created_at") or event.get("submitted_at") or (event.get("committer") or {}).get("date")
    return {"repo": repo, "number": number, "event_key": str(key)[:128], "event": event.get("event") or "unknown",
            "actor": who.get("login") or (event.get("author") or {}).get("name"), "created_at": parse_time(when),
            "payload": event}


def first_review_at(events: Iterable[dict[str, Any]], author: str | None) -> dt.datetime | None:
    """When someone other than the author first submitted a review (pending drafts do not count)."""
    times = [parse_time(e.get("submitted_at") or e.get("created_at")) for e in events
             if e.get("event") == "reviewed" and (e.get("state") or "").lower() != "pending"
             and (e.get("user") or e.get("actor") or {}).get("login") != author]
    times = [x for x in times if x is not None]
    return min(times) if times else None


def save_timeline(conn: Connection, issue: Any, events: list[dict[str, Any]]) -> None:
    """Store a whole timeline (rows no longer on it are removed) and move the issue's timeline cursor."""
    rows = list({r["event_key"]: r for r in (_event_row(issue.repo, issue.number, e) for e in events)}.values())
    where = (t.events.c.repo == issue.repo) & (t.events.c.number == issue.number)
    conn.execute(sa.delete(t.events).where(where, t.events.c.event_key.notin_([r["event_key"] for r in rows])))
    upsert(conn, t.events, rows, ["event", "actor", "created_at", "payload"])
    key = (t.pulls.c.repo == issue.repo) & (t.pulls.c.number == issue.number)
    if issue.is_pull:
        conn.execute(sa.update(t.pulls).where(key).values(
            first_review_at=first_review_at(events, issue.author), timeline_synced_at=issue.updated_at))
    conn.execute(sa.update(t.issues).where(t.issues.c.repo == issue.repo, t.issues.c.number == issue.number)
                 .values(timeline_synced_at=issue.updated_at))


def timeline_candidates(engine: Engine, after: tuple | None, limit: int = 200) -> list[Any]:
    """Issues whose timeline is older than their last update, in (updated_at, repo, number) order."""
    c = t.issues.c
    query = sa.select(c.repo, c.number, c.updated_at, c.is_pull, c.author).where(
        c.deleted.is_(False), c.transferred_to.is_(None),
        sa.or_(c.timeline_synced_at.is_(None), c.timeline_synced_at < c.updated_at))
    if after is not None:
        u, r, n = after
        query = query.where(sa.or_(c.updated_at > u, sa.and_(c.updated_at == u, sa.or_(
            c.repo > r, sa.and_(c.repo == r, c.number > n)))))
    with engine.connect() as conn:
        return list(conn.execute(query.order_by(c.updated_at, c.repo, c.number).limit(limit)))


def sync_timelines(client: GitHubClient, engine: Engine, save_every: int = 20) -> int:
    """Read the full timeline of every issue and PR that changed since its timeline was last read.

    Timelines are saved `save_every` issues to a transaction, and whatever was read is saved when
    the run is cut off; an issue whose timeline was not completely read is simply read again.
    """
    done, after, ready = 0, None, []
    try:
        while batch := timeline_candidates(engine, after):
            prefetch(client, [TIMELINE.path.format(repo=i.repo, number=i.number) for i in batch])
            for issue in batch:
                after = (issue.updated_at, issue.repo, issue.number)
                events = fetch_one_timeline(client, engine, issue)
                if events is not None:
                    ready.append((issue, events))
                if len(ready) >= save_every:
                    done += save_timelines(engine, ready)
    finally:
        done += save_timelines(engine, ready)
    return done


def save_timelines(engine: Engine, ready: list[tuple[Any, list[dict[str, Any]]]]) -> int:
    count = len(ready)
    if ready:
        with engine.begin() as conn:
            for issue, events in ready:
                save_timeline(conn, issue, events)
        ready.clear()
    return count


def fetch_one_timeline(client: GitHubClient, engine: Engine, issue: Any) -> list[dict[str, Any]] | None:
    """The issue's whole timeline; None when it moved or is gone (recorded) or GitHub refused it."""
    try:
        return list(fetch_timeline(client, issue.repo, issue.number))
    except Moved as exc:
        record_moved(client, engine, issue.repo, issue.number, exc.location)
    except Gone:
        record_gone(client, engine, issue.repo, issue.number)
    except StopSync:
        raise
    except GitHubError as exc:
        log.warning("github: timeline of %s#%s skipped: %s", issue.repo, issue.number, exc)
    return None


# -- transfers and deletions -------------------------------------------------------------------------


def fetch_transfer_target(client: GitHubClient, location: str) -> tuple[str | None, int | None]:
    """Follow a 301 (`/repositories/{id}/issues/{n}`) to the issue's new repository and number."""
    target = location.split("?")[0].removesuffix("/timeline")
    try:
        page = client.get(target)
    except (Moved, Gone):
        return None, None
    item = page.data or {}
    return repo_of(item, None) if item.get("repository_url") else None, item.get("number")


def save_transfer(conn: Connection, repo: str, number: int, location: str, target: tuple[str | None, int | None],
                  now: dt.datetime) -> None:
    new_repo, new_number = target
    row = {"old_repo": repo, "old_number": number, "new_repo": new_repo, "new_number": new_number,
           "new_location": location, "detected_at": now}
    upsert(conn, t.transfers, [row], ["new_repo", "new_number", "new_location"])
    moved_to = f"{new_repo}#{new_number}" if new_repo and new_number else location
    conn.execute(sa.update(t.issues).where(t.issues.c.repo == repo, t.issues.c.number == number)
                 .values(transferred_to=moved_to))


def record_moved(client: GitHubClient, engine: Engine, repo: str, number: int, location: str) -> None:
    target = fetch_transfer_target(client, location)
    location = client.relative(location, None) if location else location
    with engine.begin() as conn:
        save_transfer(conn, repo, number, location, target, stamp(client))


def record_gone(client: GitHubClient, engine: Engine, repo: str, number: int) -> None:
    """A 404/410: the issue was deleted; keep the row, flagged, rather than leave it looking open."""
    with engine.begin() as conn:
        conn.execute(sa.update(t.issues).where(t.issues.c.repo == repo, t.issues.c.number == number,
                                               t.issues.c.deleted.is_(False))
                     .values(deleted=True, deleted_at=stamp(client)))


def sweep_candidates(engine: Engine, after: tuple[str, int] | None, limit: int = 200) -> list[Any]:
    c = t.issues.c
    query = sa.select(c.repo, c.number, c.is_pull, c.state).where(c.deleted.is_(False), c.transferred_to.is_(None))
    if after is not None:
        query = query.where(sa.or_(c.repo > after[0], sa.and_(c.repo == after[0], c.number > after[1])))
    with engine.connect() as conn:
        return list(conn.execute(query.order_by(c.repo, c.number).limit(limit)))


def sweep(client: GitHubClient, engine: Engine, limit: int | None = None, save_every: int = 25) -> int:
    """Re-check stored issues, `limit` of them or all (conditional GETs: unchanged ones cost no quota).

    Finds what listings cannot show: transfers (301), deletions (404/410) and the merged state of
    closed PRs. Resumes from its cursor (saved every `save_every` issues and when the run stops);
    after a full pass the next run starts again from the top.
    """
    cursor = read_cursor(engine, SWEEP.name, "*").get("after")
    after, checked = (tuple(cursor) if cursor else None), 0
    try:
        while (limit is None or checked < limit) and (
                batch := sweep_candidates(engine, after, 200 if limit is None else min(200, limit - checked))):
            prefetch(client, [SWEEP.path.format(repo=i.repo, number=i.number) for i in batch]
                     + [f"/repos/{i.repo}/pulls/{i.number}" for i in batch if i.is_pull])
            for issue in batch:
                check_issue(client, engine, issue)
                after, checked = (issue.repo, issue.number), checked + 1
                if checked % save_every == 0:
                    save_sweep(client, engine, {"after": list(after)})
    except StopSync:
        save_sweep(client, engine, {"after": list(after) if after else None})
        raise
    if limit is not None and checked >= limit:
        save_sweep(client, engine, {"after": list(after) if after else None})
    else:
        save_sweep(client, engine, {"after": None, "completed_at": github_time(stamp(client))})
    return checked


def save_sweep(client: GitHubClient, engine: Engine, value: dict[str, Any]) -> None:
    with engine.begin() as conn:
        save_cursor(conn, SWEEP.name, "*", value, stamp(client))


def check_issue(client: GitHubClient, engine: Engine, issue: Any) -> None:
    path = SWEEP.path.format(repo=issue.repo, number=issue.number)
    try:
        page = client.get_cached(path)
        pull = None
        if issue.is_pull and (page.data or {}).get("state", issue.state) == "closed":
            pull = client.get_cached(f"/repos/{issue.repo}/pulls/{issue.number}")
    except Moved as exc:
        return record_moved(client, engine, issue.repo, issue.number, exc.location)
    except Gone:
        return record_gone(client, engine, issue.repo, issue.number)
    if page.from_cache and (pull is None or pull.from_cache):
        return None
    with engine.begin() as conn:
        save_issues(conn, [page.data], issue.repo)
        if pull is not None:
            save_merge(conn, issue.repo, issue.number, pull.data)
    return None


def save_merge(conn: Connection, repo: str, number: int, pull: dict[str, Any]) -> None:
    merge = _merge_state(pull)
    if merge is not None:
        conn.execute(sa.update(t.pulls).where(t.pulls.c.repo == repo, t.pulls.c.number == number)
                     .values(merged=merge[0], merged_at=merge[1]))


# -- members and teams -------------------------------------------------------------------------------


def fetch_members(client: GitHubClient, org: str) -> list[dict[str, Any]]:
    return [u for page in client.paginate(MEMBERS.path.format(org=org)) for u in page.data or []]


def save_members(conn: Connection, users: list[dict[str, Any]], now: dt.datetime) -> None:
    """Upsert the current members; those no longer listed are soft-deleted (active false, left_at)."""
    rows = [{"login": u["login"], "github_id": u.get("id"), "active": True, "first_seen_at": now,
             "last_seen_at": now, "left_at": None} for u in users]
    upsert(conn, t.members, rows, ["github_id", "active", "last_seen_at", "left_at"])
    c = t.members.c
    conn.execute(sa.update(t.members).where(c.active.is_(True), c.login.notin_([r["login"] for r in rows]))
                 .values(active=False, left_at=now))


def sync_members(client: GitHubClient, engine: Engine, org: str) -> int:
    users = fetch_members(client, org)  # the whole list first: a partial one must not mark anyone gone
    with engine.begin() as conn:
        save_members(conn, users, stamp(client))
    return len(users)


def fetch_teams(client: GitHubClient, org: str) -> dict[str, list[str]]:
    slugs = [team["slug"] for page in client.paginate(f"/orgs/{org}/teams") for team in page.data or []]
    return {slug: [u["login"] for page in client.paginate(TEAMS.path.format(org=org, team=slug))
                   for u in page.data or []] for slug in slugs}


def save_teams(conn: Connection, teams: dict[str, list[str]]) -> None:
    conn.execute(sa.delete(t.team_members))
    rows = [{"team": team, "login": login} for team, logins in teams.items() for login in set(logins)]
    if rows:
        conn.execute(sa.insert(t.team_members), rows)


def sync_teams(client: GitHubClient, engine: Engine, org: str) -> int:
    teams = fetch_teams(client, org)
    with engine.begin() as conn:
        save_teams(conn, teams)
    return len(teams)


# -- search (backfill) -------------------------------------------------------------------------------


def fetch_search(client: GitHubClient, qualifier: str, start: dt.datetime, end: dt.datetime) -> Iterator[list[dict]]:
    """Pages of issues and PRs created in [start, end], splitting the window while it holds > 1,000."""
    query = f"{qualifier} created:{github_time(start)}..{github_time(end)}"
    page = client.get(SEARCH.path, {"q": query, "sort": "created", "order": "asc", "per_page": PER_PAGE})
    if page.data["total_count"] > SEARCH_CAP and end - start > dt.timedelta(seconds=1):
        middle = start + (end - start) // 2
        middle = middle.replace(microsecond=0)
        yield from fetch_search(client, qualifier, start, middle)
        yield from fetch_search(client, qualifier, middle + dt.timedelta(seconds=1), end)
        return
    yield page.data["items"]
    while page.next_url:
        page = client.get(page.next_url)
        yield page.data["items"]
