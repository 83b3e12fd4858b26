#!/usr/bin/env python
"""Load GitHub history into sluice: issues and pull requests created in [--since, --until], then their
timelines, through the same client, tables and cursors as the scheduled jobs.

The period is cut into windows (`--window-days`); each window is read through the search API, split in
halves while it holds more than the API's 1,000-result cap. A window's progress is saved when it is
complete, so the command is safe to stop (Ctrl-C, quota, time) and to rerun: `--resume` carries on
after the last complete window, and rerunning anything only upserts the same rows again.

    python backfill.py --org acme --since 2023-01-01
    python backfill.py --repo acme/api --repo acme/web --since 2022-01-01 --until 2023-01-01 --window-days 7
    python backfill.py --org acme --resume
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from chalicelib.db import get_engine
from chalicelib.github import streams
from chalicelib.github.sync import Job, make_client, run_step
from chalicelib.settings import Settings
from tools.progress import Bar, logs_above_bars

STOPPED = 3  # exit status of a run that stopped early (rerun with --resume)


@dataclass(frozen=True)
class Plan:
    """What to load: search scopes (`repo:o/r` or `org:o`), the period and the window size."""

    scopes: tuple[str, ...]
    since: dt.datetime | None
    until: dt.datetime
    window: dt.timedelta
    resume: bool
    timelines: bool


def instant(text: str) -> dt.datetime:
    """`2024-01-01` or an ISO 8601 instant (Z or offset), as naive UTC."""
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="backfill.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--org", default=os.environ.get("GITHUB_ORG", ""), help="organisation (default GITHUB_ORG)")
    parser.add_argument("--repo", action="append", default=[], help="owner/name; repeat for several "
                        "(default GITHUB_REPOS, else the whole organisation)")
    parser.add_argument("--since", type=instant, help="first creation date to load, e.g. 2023-01-01")
    parser.add_argument("--until", type=instant, help="last creation instant to load (default now)")
    parser.add_argument("--window-days", type=float, default=30.0, help="days per search window (default 30)")
    parser.add_argument("--resume", action="store_true", help="carry on after the last complete window")
    parser.add_argument("--no-timelines", action="store_true", help="skip reading the loaded items' timelines")
    parser.add_argument("--max-requests", type=int, default=None, help="stop after this many requests")
    return parser.parse_args(argv)


def plan_from(args: argparse.Namespace, settings: Settings, now: dt.datetime) -> Plan:
    repos = args.repo or list(settings.github_repos)
    if not repos and not args.org:
        raise SystemExit("backfill.py: give --org (or GITHUB_ORG) or at least one --repo owner/name.")
    if args.since is None and not args.resume:
        raise SystemExit("backfill.py: give --since (e.g. --since 2023-01-01), or --resume to carry on.")
    if args.window_days <= 0:
        raise SystemExit("backfill.py: --window-days must be more than 0.")
    scopes = tuple(f"repo:{r}" for r in repos) if repos else (f"org:{args.org}",)
    return Plan(scopes, args.since, args.until or now, dt.timedelta(days=args.window_days), args.resume,
                not args.no_timelines)


def windows(start: dt.datetime, end: dt.datetime, size: dt.timedelta) -> list[tuple[dt.datetime, dt.datetime]]:
    """[start, end] cut into inclusive windows of whole seconds that neither overlap nor leave gaps."""
    out, second = [], dt.timedelta(seconds=1)
    while start <= end:
        stop = min((start + size).replace(microsecond=0) - second, end)
        out.append((start, max(stop, start)))
        start = max(stop, start) + second
    return out


class Progress:
    """The windows done as a progress bar (tools.progress: tqdm on a terminal, plain lines otherwise),
    with items saved, requests and quota used, and the scope being read."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total, self.done, self.items = max(total, 1), 0, 0
        self.bar = Bar("windows", self.total, unit=" windows", out=out)

    def show(self, scope: str, requests: int, quota: int) -> None:
        self.bar.update(self.done, self.total, f"{self.items} items, {requests} requests, {quota} quota, {scope}")

    def close(self) -> None:
        self.bar.close()


def start_of(plan: Plan, engine: Any, scope: str) -> dt.datetime | None:
    """Where a scope starts: --since, or with --resume the second after its last complete window."""
    state = streams.read_cursor(engine, streams.SEARCH.name, scope)
    if plan.resume and state.get("done_until"):
        done = streams.parse_time(state["done_until"]) + dt.timedelta(seconds=1)
        return max(done, plan.since) if plan.since else done
    return plan.since


def load_scope(job: Job, plan: Plan, scope: str, progress: Progress) -> int:
    """Every window of one scope, saving each page as it comes and the window's cursor when complete."""
    start, saved = start_of(plan, job.engine, scope), 0
    for low, high in windows(start, plan.until, plan.window) if start else []:
        for items in streams.fetch_search(job.client, scope, low, high):
            with job.engine.begin() as conn:
                saved += streams.save_issues(conn, items)
            progress.items += len(items)
            progress.show(scope, job.client.counters.requests, job.client.counters.quota_used)
        with job.engine.begin() as conn:
            streams.save_cursor(conn, streams.SEARCH.name, scope, {"done_until": streams.github_time(high)},
                                streams.stamp(job.client))
        progress.done += 1
        progress.show(scope, job.client.counters.requests, job.client.counters.quota_used)
    return saved


def run(plan: Plan, settings: Settings, *, sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.time, max_requests: int | None = None, out: TextIO | None = None,
        **client_options: Any) -> list[dict[str, Any]]:
    """Backfill per `plan`; returns the run summaries (also recorded in github_runs)."""
    out = out or sys.stderr
    engine = get_engine(settings.database_url)
    client = make_client(settings, engine, budget_seconds=None, max_requests=max_requests, sleep=sleep, now=now,
                         **client_options)
    job = Job(client, engine, settings)
    total = sum(len(windows(s, plan.until, plan.window)) for s in
                (start_of(plan, engine, scope) for scope in plan.scopes) if s)
    progress = Progress(total, out)
    with logs_above_bars():
        try:
            results = [run_step(job, "backfill", "backfill", lambda j: sum(load_scope(j, plan, s, progress)
                                                                           for s in plan.scopes))]
        finally:
            progress.close()
        if plan.timelines and results[-1]["status"] == "done":
            results.append(run_step(job, "backfill", "timeline",
                                    lambda j: streams.sync_timelines(j.client, j.engine)))
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.from_env()
    plan = plan_from(args, settings, dt.datetime.now(dt.UTC).replace(tzinfo=None))
    try:
        results = run(plan, settings, max_requests=args.max_requests)
    except KeyboardInterrupt:
        print("\ninterrupted: every complete window is saved; rerun with --resume.", file=sys.stderr)
        return STOPPED
    for r in results:
        print(f"{r['stream']}: {r['status']}, {r['items']} items, {r['requests']} requests "
              f"({r['not_modified']} not modified), {r['quota_used']} quota" + (f": {r['reason']}" if r["reason"]
                                                                                 else ""))
    if any(r["status"] == "stopped" for r in results):
        print("stopped early: rerun the same command with --resume to carry on.", file=sys.stderr)
        return STOPPED
    return 0 if all(r["status"] == "done" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

