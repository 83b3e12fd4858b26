"""The questions the pr-reviews routes answer: one upload's stored report, and a team's report across
every done upload, computed in the database when asked."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from chalicelib import ingestions
from chalicelib.datasets.pr_reviews.steps import PREFIX
from chalicelib.datasets.pr_reviews.summary import figures, report_json, source, uploads
from chalicelib.datasets.pr_reviews.tables import reports, rows
from chalicelib.errors import BadRequest, NotFound, TooEarly, Unprocessable

#: Up to this many team names are listed when a team is not found.
LISTED_TEAMS = 20


def upload_report(conn: Connection, ingestion_id: int) -> dict[str, Any]:
    """The stored report of one upload (a duplicate upload answers with its original's report);
    `plot_names` and `_bucket` (the upload bucket) are for the route to turn into plot URLs.

    Raises NotFound (no such pr-reviews upload, or its rows were taken out), TooEarly (still
    loading) or Unprocessable (it failed: the reason is the ingestion's error).
    """
    row = ingestions.get(conn, ingestion_id)
    if row is None or row["dataset"] != PREFIX:
        raise NotFound(f"No {PREFIX} upload has the ingestion id {ingestion_id}; see GET /ingestions?dataset={PREFIX}.")
    answered = row
    if row["duplicate_of"] is not None:
        answered = ingestions.get(conn, row["duplicate_of"]) or row
    _check_ready(answered, ingestion_id)
    stored = conn.execute(sa.select(reports).where(reports.c.ingestion_id == answered["id"])).mappings().first()
    if stored is None:
        raise NotFound(_gone(answered))
    drawn = json.loads(stored["plots"]) if stored["plots"] else {"names": [], "note": None}
    return {
        "ingestion_id": ingestion_id,
        "key": row["key"],
        "duplicate_of": row["duplicate_of"],
        "report_of": answered["id"],
        "report": json.loads(stored["report"]),
        "plot_names": drawn["names"],
        "plots_note": drawn["note"],
        "_bucket": answered["bucket"],
    }


def _check_ready(row: dict[str, Any], asked: int) -> None:
    which = f"Ingestion {row['id']} ({row['key']})"
    if row["id"] != asked:
        which = f"Ingestion {asked} is a duplicate of ingestion {row['id']} ({row['key']}), which"
    if row["status"] in ("queued", "running"):
        raise TooEarly(
            f"{which} is still {row['status']}: the report is ready when the file is done; follow it with "
            f"GET /ingestions/{row['id']} or over the WebSocket."
        )
    if row["status"] == "failed":
        raise Unprocessable(f"{which} failed, so it has no report: {row['error']}")
    if row["status"] == "deleted":
        raise NotFound(f"{which} was deleted: its rows and its report were taken out.")


def _gone(row: dict[str, Any]) -> str:
    if row.get("superseded_by"):
        return (f"Ingestion {row['id']} ({row['key']}) was replaced by a newer version of its key, ingestion "
                f"{row['superseded_by']}; see that one's report.")
    return f"Ingestion {row['id']} ({row['key']}) has no report: its rows were taken out."


def _unfinished_uploads() -> Any:
    """The uploads whose rows must not count: still loading (or failed or deleted, whose rows are on
    their way out). A short list, so the rows are filtered by a hashed list rather than joined to
    the done uploads, which led PostgreSQL to read each upload's rows through the ingestion index
    even for one team's rows."""
    i = ingestions.ingestions.c
    return sa.select(i.id).where(i.dataset == PREFIX, i.status != "done")


def team_report(conn: Connection, team: str | None, start: dt.date | None, end: dt.date | None) -> dict[str, Any]:
    """The report's statistics over every done upload's rows, for one team (or all) and a date range.

    With `from`/`to`, rows without a date are left out (their day is unknown).
    """
    if start and end and start > end:
        raise BadRequest(f"'from' ({start}) must not be after 'to' ({end}).")
    where = [rows.c.ingestion_id.not_in(_unfinished_uploads())]
    team = known_team(conn, team, where)
    if team is not None:
        where.append(rows.c.team == team)
    if start is not None:
        where.append(rows.c.date >= start)
    if end is not None:
        where.append(rows.c.date <= end)
    s = source(where)
    team_figures = figures(conn, s)
    return {
        "team": team,
        "from": start.isoformat() if start else None,
        "to": end.isoformat() if end else None,
        "uploads": uploads(conn, s),
        "report": report_json(team_figures),
    }


def known_team(conn: Connection, team: str | None, where: list[Any]) -> str | None:
    """The team as stored in some done upload: exact, else the one name equal to it ignoring case;
    404 naming the known teams otherwise."""
    if team is None:
        return None
    found = conn.execute(sa.select(rows.c.team).where(*where, rows.c.team == team).limit(1)).first()
    if found is not None:
        return team
    names = list(conn.execute(sa.select(rows.c.team).where(*where, rows.c.team.is_not(None)).distinct()).scalars())
    folded = [name for name in names if name.casefold() == team.casefold()]
    if len(folded) == 1:
        return folded[0]
    names.sort()
    listed = ", ".join(names[:LISTED_TEAMS]) + (", ..." if len(names) > LISTED_TEAMS else "")
    raise NotFound(
        f"No done {PREFIX} upload has the team {team!r}; "
        + (f"teams with rows: {listed}." if names else "no pr-reviews file is loaded yet.")
    )
