"""The plays routes: one upload's result files, and totals across every done upload."""

from __future__ import annotations

import datetime as dt
from typing import Any

from chalice import Blueprint

from chalicelib import results
from chalicelib.datasets import plays
from chalicelib.errors import BadRequest
from chalicelib.routes import params as p
from chalicelib.routes.common import engine
from chalicelib.routes.http import AUTH, base_url, endpoint, page, query_params

play_routes = Blueprint(__name__)

INGESTION_ID = p.Id("ingestion_id", "the ingestion of a plays file (see /ingestions?dataset=plays)")
TOTALS = p.Query(
    p.Text("song", "one song, named exactly as in the files (byte for byte)", max_len=plays.SONG_CHARS),
    p.Date("from", "first date (inclusive)"),
    p.Date("to", "last date (inclusive)"),
    p.Limit(),
    p.Cursor("after", "the 'next' of the previous page", parts=("str", "str")),
)


def _request() -> Any:
    return play_routes.current_request


@play_routes.route("/plays/results/{ingestion_id}", methods=["GET"], **AUTH)
@endpoint("A plays file's totals per (song, date): its CSV part files with URLs, and a summary",
          path=(INGESTION_ID,), errors=(400, 404, 422, 425))
def play_results(ingestion_id: str) -> dict:
    p.Query().parse(query_params(_request()))
    with engine().connect() as conn:
        return plays.result_answer(conn, p.path_value(INGESTION_ID, ingestion_id), results.client(),
                                   base_url(_request()))


@play_routes.route("/plays/totals", methods=["GET"], **AUTH)
@endpoint("Plays per (song, date) summed over every done upload, in (song, date) order",
          TOTALS, errors=(400, 404))
def play_totals() -> dict:
    q = TOTALS.parse(query_params(_request()))
    plays.check_span(q["from"], q["to"])
    after = _after(q["after"])
    with engine().connect() as conn:
        total = plays.song_total(conn, q["song"], q["from"], q["to"]) if q["song"] is not None else None
        items = plays.totals_page(conn, q["song"], q["from"], q["to"], q["limit"], after)
    answer = page(items, q["limit"], lambda item: p.encode_cursor([item["song"], item["date"]]))
    if total is not None:
        answer["song"], answer["total_plays"] = q["song"], total
    return answer


def _after(cursor: list[Any] | None) -> tuple[str, dt.date] | None:
    if cursor is None:
        return None
    try:
        return cursor[0], dt.date.fromisoformat(cursor[1])
    except ValueError:
        raise BadRequest("'after' must be the 'next' value of a previous page.") from None
