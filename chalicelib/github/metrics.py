"""The queries behind the /github routes: lists of pulls, issues and members, PR metrics, sync state.

Lists are keyset-paged: `after` is the previous page's `next` (for pulls and issues `owner/name:number`,
for members the login), so a page costs one index range scan whatever its depth.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from chalicelib.errors import BadRequest, NotFound
from chalicelib.github import tables as t
from chalicelib.ingestions import iso
from chalicelib.paging import page
from chalicelib.stats import summary

#: `all` (GitHub's own word) or no state at all: every state.
PULL_STATES = ("open", "closed", "merged", "all")
ISSUE_STATES = ("open", "closed", "deleted", "transferred", "all")


def parse_after(after: str | None) -> tuple[str, int] | None:
    """`owner/name:123` as (repo, number)."""
    if not after:
        return None
    repo, _, number = after.rpartition(":")
    if not repo or not re.fullmatch(r"[0-9]{1,9}", number, re.ASCII):
        raise BadRequest(f"'after' must be the 'next' value of the previous page, like acme/api:42; got {after!r}.")
    return repo, int(number)


def _after_clause(table: sa.Table, after: tuple[str, int] | None) -> Any:
    if after is None:
        return sa.true()
    return sa.or_(table.c.repo > after[0], sa.and_(table.c.repo == after[0], table.c.number > after[1]))


def _next(item: dict[str, Any]) -> str:
    return f"{item['repo']}:{item['number']}"


def list_pulls(conn: Connection, *, repo: str | None, state: str | None, author: str | None,
               after: str | None, limit: int) -> dict[str, Any]:
    c = t.pulls.c
    query = sa.select(t.pulls).where(_after_clause(t.pulls, parse_after(after)))
    if repo:
        query = query.where(c.repo == repo)
    if author:
        query = query.where(c.author == author)
    if state == "merged":
        query = query.where(c.merged.is_(True))
    elif state and state != "all":
        query = query.where(c.state == state)
    rows = conn.execute(query.order_by(c.repo, c.number).limit(limit + 1)).mappings()
    items = [{"repo": r.repo, "number": r.number, "title": r.title, "state": r.state, "merged": r.merged,
              "author": r.author, "created_at": iso(r.created_at), "closed_at": iso(r.closed_at),
              "merged_at": iso(r.merged_at), "first_review_at": iso(r.first_review_at)} for r in rows]
    return page(items, limit, _next)


def list_issues(conn: Connection, *, repo: str | None, state: str | None, after: str | None,
                limit: int) -> dict[str, Any]:
    c = t.issues.c
    query = sa.select(t.issues).where(c.is_pull.is_(False), _after_clause(t.issues, parse_after(after)))
    if repo:
        query = query.where(c.repo == repo)
    if state == "deleted":
        query = query.where(c.deleted.is_(True))
    elif state == "transferred":
        query = query.where(c.transferred_to.is_not(None))
    elif state and state != "all":  # open or closed: what still lives here, never a deleted or moved issue
        query = query.where(c.state == state, c.deleted.is_(False), c.transferred_to.is_(None))
    rows = conn.execute(query.order_by(c.repo, c.number).limit(limit + 1)).mappings()
    items = [{"repo": r.repo, "number": r.number, "title": r.title, "state": r.state, "author": r.author,
              "created_at": iso(r.created_at), "closed_at": iso(r.closed_at), "transferred_to": r.transferred_to,
              "deleted": r.deleted} for r in rows]
    return page(items, limit, _next)


def list_members(conn: Connection, *, active: bool | None, after: str | None, limit: int) -> dict[str, Any]:
    c = t.members.c
    query = sa.select(t.members)
    if active is not None:
        query = query.where(c.active.is_(active))
    if after:
        query = query.where(c.login > after)
    rows = conn.execute(query.order_by(c.login).limit(limit + 1)).mappings()
    items = [{"login": r.login, "active": r.active, "left_at": iso(r.left_at),
              "first_seen_at": iso(r.first_seen_at)} for r in rows]
    return page(items, limit, lambda item: item["login"])


def _pull_filter(conn: Connection, repo: str | None, team: str | None) -> list[Any]:
    c, where = t.pulls.c, []
    if repo:
        known = conn.execute(sa.select(sa.func.count()).select_from(t.issues).where(t.issues.c.repo == repo))
        if not known.scalar():
            raise NotFound(f"No pull request or issue of {repo!r} has been synced; check GITHUB_REPOS.")
        where.append(c.repo == repo)
    if team:
        logins = sa.select(t.team_members.c.login).where(t.team_members.c.team == team)
        if conn.execute(sa.select(sa.func.count()).select_from(logins.subquery())).scalar() == 0:
            raise NotFound(f"No team {team!r} is known (teams are loaded by the daily sync); use its slug.")
        where.append(c.author.in_(logins))
    return where


def _window(column: Any, start: dt.date | None, end: dt.date | None) -> list[Any]:
    where = []
    if start:
        where.append(column >= dt.datetime.combine(start, dt.time()))
    if end:
        where.append(column < dt.datetime.combine(end + dt.timedelta(days=1), dt.time()))
    return where


def pr_metrics(conn: Connection, *, repo: str | None, team: str | None, start: dt.date | None,
               end: dt.date | None) -> dict[str, Any]:
    """Time to first review and to merge (seconds: count, mean, median, mode) of the PRs opened in
    [from, to], and the PRs opened and merged per ISO week (named by its Monday), empty weeks included."""
    if start and end and start > end:
        raise BadRequest(f"'from' ({start}) must not be after 'to' ({end}).")
    c, where = t.pulls.c, _pull_filter(conn, repo, team)
    opened = conn.execute(sa.select(c.created_at, c.first_review_at, c.merged_at)
                          .where(*where, *_window(c.created_at, start, end))).all()
    merged = conn.execute(sa.select(c.merged_at).where(*where, c.merged_at.is_not(None),
                                                       *_window(c.merged_at, start, end))).scalars().all()
    review = [int((r.first_review_at - r.created_at).total_seconds()) for r in opened if r.first_review_at]
    merge = [int((r.merged_at - r.created_at).total_seconds()) for r in opened if r.merged_at]
    return {"repo": repo, "team": team, "from": start.isoformat() if start else None,
            "to": end.isoformat() if end else None, "unit": "seconds", "pull_requests": len(opened),
            "time_to_first_review": summary(review), "time_to_merge": summary(merge),
            "weekly": weekly([r.created_at for r in opened], list(merged))}


def _monday(value: dt.datetime | dt.date) -> dt.date:
    day = value.date() if isinstance(value, dt.datetime) else value
    return day - dt.timedelta(days=day.weekday())


def weekly(opened: list[dt.datetime], merged: list[dt.datetime]) -> list[dict[str, Any]]:
    """[{"week", "opened", "merged"}] from the first to the last week with either, zeros included."""
    opens, merges = Counter(map(_monday, opened)), Counter(map(_monday, merged))
    weeks = set(opens) | set(merges)
    if not weeks:
        return []
    out, week = [], min(weeks)
    while week <= max(weeks):
        out.append({"week": week.isoformat(), "opened": opens[week], "merged": merges[week]})
        week += dt.timedelta(days=7)
    return out


def sync_state(conn: Connection, runs_per_stream: int = 5) -> dict[str, Any]:
    """The last runs of each stream with their cursors, requests and quota used; the quota left."""
    rows = conn.execute(sa.select(t.runs).order_by(t.runs.c.id.desc()).limit(500)).mappings().all()
    cursors: dict[str, dict[str, Any]] = {}
    for c in conn.execute(sa.select(t.cursors).order_by(t.cursors.c.stream, t.cursors.c.scope)):
        cursors.setdefault(c.stream, {})[c.scope] = json.loads(c.cursor)
    streams: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if len(streams.setdefault(r.stream, [])) < runs_per_stream:
            streams[r.stream].append(_run(r))
    items = [{"stream": name, "last_runs": runs, "cursors": cursors.get(name, {})}
             for name, runs in sorted(streams.items())]
    rated = next((r for r in rows if r.rate_remaining is not None), None)
    quota = {"remaining": rated.rate_remaining, "reset": iso(rated.rate_reset), "as_of": iso(rated.finished_at)} \
        if rated else {"remaining": None, "reset": None, "as_of": None}
    return {"items": items, "next": None, "quota": quota}


def _run(r: Any) -> dict[str, Any]:
    return {"id": r.id, "job": r.job, "status": r.status, "started_at": iso(r.started_at),
            "finished_at": iso(r.finished_at), "requests": r.requests, "not_modified": r.not_modified,
            "quota_used": r.quota_used, "stop_reason": r.stop_reason}
