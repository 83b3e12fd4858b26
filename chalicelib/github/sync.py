"""The three scheduled GitHub jobs (the seed's split of the work) and how a run is recorded.

- `every_30_min`: issues and pull requests of every repository (created, updated, closed, merged), then
  the organisation's members (those who left are soft-deleted).
- `nrt_events`: the timelines (events, reviews) of every issue and PR updated since its timeline was
  last read (a 301 or 404/410 met on the way records a transfer or a deletion), then the next slice
  of the sweep, so that transfers and deletions of untouched issues show up within hours.
- `daily`: the sweep (a conditional GET of each stored issue: transfers, deletions, merged state of
  closed PRs) and the organisation's teams.

Each job runs under a time budget well under the 900 s Lambda timeout and a request budget. When time,
quota or budget runs out the job stops cleanly (status "stopped" with the reason); every stream keeps
its cursor in the database, so the next run carries on where this one stopped.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from chalicelib.db import get_engine
from chalicelib.errors import SluiceError
from chalicelib.github import streams
from chalicelib.github import tables as t
from chalicelib.github.client import Counters, GitHubClient, GitHubError, StopSync
from chalicelib.settings import Settings

log = logging.getLogger("sluice.github")

TIME_BUDGET = {"every_30_min": 540.0, "nrt_events": 240.0, "daily": 600.0, "backfill": None}
NRT_SWEEP = 200  # issues re-checked by each nrt_events run (the daily run checks them all)
REQUEST_BUDGET = {"every_30_min": 4000, "nrt_events": 2000, "daily": 4000, "backfill": None}


class NotConfigured(SluiceError):
    """GITHUB_ORG / GITHUB_REPOS do not say what to sync."""

    status = 409


@dataclass(frozen=True)
class Job:
    """What a scheduled run needs: the client (with its budget), the engine and the settings."""

    client: GitHubClient
    engine: Engine
    settings: Settings


def github_token(settings: Settings) -> str:
    """GITHUB_TOKEN locally; in deployed stages the SSM SecureString it names (cached per container)."""
    from chalicelib.secrets import value_or_parameter

    return value_or_parameter(settings.github_token, settings.github_token_parameter)


def make_client(settings: Settings, engine: Engine, *, budget_seconds: float | None, max_requests: int | None,
                sleep: Callable[[float], None] = time.sleep, now: Callable[[], float] = time.time,
                **options: Any) -> GitHubClient:
    """The job's client: ETags cached in the database, the deadline `budget_seconds` from now."""
    utc = lambda: dt.datetime.fromtimestamp(now(), dt.UTC).replace(tzinfo=None)  # noqa: E731
    return GitHubClient(settings.github_api_url, github_token(settings), cache=streams.DbEtagCache(engine, utc),
                        sleep=sleep, now=now, max_requests=max_requests,
                        deadline=None if budget_seconds is None else now() + budget_seconds, **options)


def repositories(job: Job) -> list[str]:
    """GITHUB_REPOS, or every repository of GITHUB_ORG."""
    if job.settings.github_repos:
        return list(job.settings.github_repos)
    return list(streams.fetch_repos(job.client, organisation(job)))


NO_ORG = ("GITHUB_ORG is not set: set it to the organisation to sync (its members and teams, and every "
          "repository unless GITHUB_REPOS lists them as comma-separated owner/name).")


def organisation(job: Job) -> str:
    """GITHUB_ORG; every stream that needs it fails with the same NotConfigured reason without it."""
    if not job.settings.github_org:
        raise NotConfigured(NO_ORG)
    return job.settings.github_org


def resume_first(items: list[str], resume: str | None) -> list[str]:
    """`items` rotated to start at `resume`: a run that was cut off carries on where it stopped."""
    if resume not in items:
        return items
    at = items.index(resume)
    return items[at:] + items[:at]


def step_issues(job: Job) -> int:
    """Each repository in turn, starting with the one a cut-off run was working on."""
    resume = streams.read_cursor(job.engine, "issues", "*").get("resume_repo")
    saved = 0
    for repo in resume_first(repositories(job), resume):
        remember(job, "issues", {"resume_repo": repo})
        saved += streams.sync_issues(job.client, job.engine, repo)
    remember(job, "issues", {"resume_repo": None})
    return saved


def remember(job: Job, stream: str, value: dict[str, Any], scope: str = "*") -> None:
    with job.engine.begin() as conn:
        streams.save_cursor(conn, stream, scope, value, streams.stamp(job.client))


def step_members(job: Job) -> int:
    return streams.sync_members(job.client, job.engine, organisation(job))


def step_teams(job: Job) -> int:
    return streams.sync_teams(job.client, job.engine, organisation(job))


def step_timelines(job: Job) -> int:
    return streams.sync_timelines(job.client, job.engine)


def step_sweep(job: Job) -> int:
    return streams.sweep(job.client, job.engine)


def step_sweep_slice(job: Job) -> int:
    """The next NRT_SWEEP issues of the sweep, so transfers and deletions show within the hour."""
    return streams.sweep(job.client, job.engine, limit=NRT_SWEEP)


JOBS: dict[str, list[tuple[str, Callable[[Job], int]]]] = {
    "every_30_min": [("issues", step_issues), ("members", step_members)],
    "nrt_events": [("timeline", step_timelines), ("sweep", step_sweep_slice)],
    "daily": [("sweep", step_sweep), ("teams", step_teams)],
}


def run_job(name: str, settings: Settings | None = None, *, sleep: Callable[[float], None] = time.sleep,
            now: Callable[[], float] = time.time, max_requests: int | None = None,
            budget_seconds: float | None = None, **client_options: Any) -> list[dict[str, Any]]:
    """Run one scheduled job; returns one summary per stream (also stored in `github_runs`)."""
    settings = settings or Settings.from_env()
    engine = get_engine(settings.database_url)
    client = make_client(settings, engine, sleep=sleep, now=now,
                         budget_seconds=budget_seconds or TIME_BUDGET[name],
                         max_requests=max_requests or REQUEST_BUDGET[name], **client_options)
    job, results = Job(client, engine, settings), []
    steps = dict(JOBS[name])
    resume = streams.read_cursor(engine, "job", name).get("resume")
    for stream in resume_first(list(steps), resume):
        results.append(run_step(job, name, stream, steps[stream]))
        if results[-1]["status"] == "stopped":
            remember(job, "job", {"resume": stream}, scope=name)
            return results
    remember(job, "job", {"resume": None}, scope=name)
    return results


def run_step(job: Job, job_name: str, stream: str, step: Callable[[Job], int]) -> dict[str, Any]:
    """Run one stream, recording it in `github_runs`: done, stopped (resumable) or failed."""
    run_id = start_run(job, job_name, stream)
    before = job.client.counters.snapshot()
    status, reason, count = "done", None, 0
    try:
        count = step(job)
    except StopSync as exc:
        status, reason = "stopped", str(exc)
        log.warning("github: %s/%s stopped: %s", job_name, stream, exc)
    except (GitHubError, NotConfigured) as exc:
        status, reason = "failed", str(exc)
        log.error("github: %s/%s failed: %s", job_name, stream, exc)
    finally:
        flush = getattr(job.client.cache, "flush", None)
        if flush is not None:
            flush()
    return finish_run(job, run_id, before, status, reason, count) | {"job": job_name, "stream": stream}


def start_run(job: Job, job_name: str, stream: str) -> int:
    with job.engine.begin() as conn:
        return conn.execute(sa.insert(t.runs).values(
            job=job_name, stream=stream, status="running", started_at=streams.stamp(job.client),
            requests=0, not_modified=0, quota_used=0).returning(t.runs.c.id)).scalar_one()


def finish_run(job: Job, run_id: int, before: Counters, status: str, reason: str | None,
               count: int) -> dict[str, Any]:
    after, rate = job.client.counters, job.client.rate("core")
    values = {
        "status": status, "finished_at": streams.stamp(job.client), "stop_reason": reason,
        "requests": after.requests - before.requests, "not_modified": after.not_modified - before.not_modified,
        "quota_used": after.quota_used - before.quota_used,
        "rate_remaining": rate.remaining if rate else None,
        "rate_reset": dt.datetime.fromtimestamp(rate.reset, dt.UTC).replace(tzinfo=None)
        if rate and rate.reset else None,
        "cursor": str(count),
    }
    with job.engine.begin() as conn:
        conn.execute(sa.update(t.runs).where(t.runs.c.id == run_id).values(**values))
    return {k: values[k] for k in ("status", "requests", "not_modified", "quota_used")} | {
        "items": count, "reason": reason}
