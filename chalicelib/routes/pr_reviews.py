"""The pr-reviews routes: one upload's report with its plots, and a team's report across uploads."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib import results
from chalicelib.datasets.pr_reviews import queries
from chalicelib.datasets.pr_reviews.steps import PREFIX
from chalicelib.datasets.pr_reviews.tables import TEAM_CHARS
from chalicelib.routes import params as p
from chalicelib.routes.common import engine, settings
from chalicelib.routes.http import AUTH, base_url, endpoint, query_params

pr_review_routes = Blueprint(__name__)

INGESTION_ID = p.Id("ingestion_id", "the ingestion id of a pr-reviews upload (see GET /ingestions)")
TEAM_REPORT = p.Query(
    p.Text("team", "one team's rows only, e.g. Platform (default: every team)", max_len=TEAM_CHARS),
    p.Date("from", "first day of the rows' `date` (inclusive; rows without a date are then left out)"),
    p.Date("to", "last day of the rows' `date` (inclusive)"),
)


@pr_review_routes.route("/pr-reviews/reports/{ingestion_id}", methods=["GET"], **AUTH)
@endpoint("One upload's report (the seed Ath's statistics) and its eight plots with URLs; 425 while the file "
          "is loading, 422 if it failed", path=(INGESTION_ID,), errors=(400, 404, 422, 425))
def upload_report(ingestion_id: str) -> dict[str, Any]:
    request = pr_review_routes.current_request
    p.Query().parse(query_params(request))
    asked = p.path_value(INGESTION_ID, ingestion_id)
    current = settings()
    with engine(current).connect() as conn:
        answer = queries.upload_report(conn, asked)
    bucket = results.bucket_for(current, answer.pop("_bucket"))
    names = answer.pop("plot_names")
    s3 = results.client()
    base = base_url(request)
    prefix = results.prefix(PREFIX, answer["report_of"])
    answer["plots"] = [{"name": name, "key": prefix + name, "url": results.url(s3, bucket, prefix + name, base)}
                       for name in names]
    answer["plot_urls_expire_in_seconds"] = results.URL_SECONDS if results.deployed() else None
    return answer


@pr_review_routes.route("/pr-reviews/report", methods=["GET"], **AUTH)
@endpoint("The report's statistics over every done pr-reviews upload, for one team or all, in a date range",
          TEAM_REPORT, errors=(400, 404))
def team_report() -> dict[str, Any]:
    q = TEAM_REPORT.parse(query_params(pr_review_routes.current_request))
    with engine().connect() as conn:
        return queries.team_report(conn, q["team"], q["from"], q["to"])
