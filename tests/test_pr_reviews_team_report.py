"""GET /pr-reviews/report?team=&from=&to=: the report's statistics over every done upload's rows,
checked against pandas over the same rows; failed, unfinished and duplicate uploads left out."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.support.ingest import get, ingest, invoke, upload
from tests.support.pr_reviews import csv_bytes, expected_report, normalised, read_file
from tools.generate_pr_reviews import generate


@pytest.fixture
def uploads(client, aws, tmp_path):
    """Three done uploads (one with missing cells and Excel dates), a duplicate and a failed file;
    returns the done files' rows as pandas reads them."""
    frames = []
    for seed, options in ((1, {}), (2, {"missing": 0.05, "excel_dates": 0.5}),
                          (3, {"teams": ["Platform", "Security", "Growth"], "start": "2023-03-15", "end": "2023-05-31"})):
        path = tmp_path / f"prs-{seed}.csv"
        generate(path, 1000, seed=seed, **options)
        ingestion = ingest(client, aws, f"pr-reviews/{seed}.csv", path.read_bytes())
        assert ingestion["status"] == "done", ingestion
        frames.append(read_file(path.read_bytes()))
    duplicate = ingest(client, aws, "pr-reviews/again.csv", (tmp_path / "prs-1.csv").read_bytes())
    assert duplicate["duplicate_of"] is not None
    failed = ingest(client, aws, "pr-reviews/failed.csv",
                    csv_bytes([(5, "Platform", "2023-01-01", 5)] + [("x", "Platform", "2023-01-01", 5)] * 3))
    assert failed["status"] == "failed"
    return pd.concat(frames, ignore_index=True)


def _check(body: dict, df: pd.DataFrame) -> None:
    assert normalised(body["report"]) == normalised(expected_report(df))


BAD_QUERIES = [
    ("from=2023-03-01&to=2023-02-01", "must not be after"),
    ("from=2023-02-30", "real date"),
    ("to=yesterday", "a date like"),
    ("team=" + "x" * 129, "at most 128"),
    ("teams=Platform", "Unknown parameter"),
]


def test_team_reports_over_every_done_upload(client, uploads):
    """One set of uploads (they take a while to make), every question asked of it."""
    body = get(client, "/pr-reviews/report")
    assert (body["team"], body["from"], body["to"], body["uploads"]) == (None, None, None, 3)
    assert body["report"]["total_num_observations"] == 3000
    _check(body, uploads)

    body = get(client, "/pr-reviews/report?team=Platform&from=2023-02-01&to=2023-04-15")
    dates = uploads["date"]
    rows = uploads[(uploads["team"] == "Platform") & (dates >= "2023-02-01") & (dates <= "2023-04-15")]
    assert (body["team"], body["from"], body["to"], body["uploads"]) == ("Platform", "2023-02-01", "2023-04-15", 3)
    assert len(rows) > 100 and body["report"]["teams"] == ["Platform"]
    _check(body, rows)

    body = get(client, "/pr-reviews/report?from=2023-04-01")  # a range leaves out rows without a date
    assert body["uploads"] == 1  # only the third file reaches April
    _check(body, uploads[uploads["date"] >= "2023-04-01"])
    assert body["report"]["num_missing_values"]["date"] == 0

    body = get(client, "/pr-reviews/report?team=Growth&to=2023-01-31")  # a known team, no rows in range
    assert body["uploads"] == 0 and body["report"]["total_num_observations"] == 0
    assert body["report"]["stats"]["mean"]["review_time"] is None and body["report"]["teams"] == []

    assert get(client, "/pr-reviews/report?team=platform")["team"] == "Platform"  # case folded
    missing = client.http.get("/pr-reviews/report?team=Nobody")
    assert missing.status_code == 404
    error = json.loads(missing.body)["error"]
    assert "'Nobody'" in error and "Platform" in error and "Security" in error

    for query, phrase in BAD_QUERIES:
        response = client.http.get(f"/pr-reviews/report?{query}")
        assert response.status_code == 400 and phrase in json.loads(response.body)["error"], query


def test_rows_of_an_unfinished_upload_are_left_out(client, aws, tmp_path, monkeypatch):
    """An upload still loading (its finishing failed on S3 here) adds nothing until it is done."""
    import boto3

    def fail_plot_puts(params, **_):
        from botocore.awsrequest import AWSResponse

        if "results/" in params.get("url_path", "") or "/results/" in params.get("url", ""):
            parsed = {"Error": {"Code": "InternalError", "Message": "test"},
                      "ResponseMetadata": {"HTTPStatusCode": 500, "HTTPHeaders": {}}}
            return AWSResponse("https://example.invalid", 500, {}, None), parsed
        return None

    done = csv_bytes([(10, "Platform", "2023-01-01", 5), (20, "Platform", "2023-01-02", 5)])
    ingest(client, aws, "pr-reviews/done.csv", done)
    boto3.DEFAULT_SESSION.events.register("before-call.s3.PutObject", fail_plot_puts)
    try:
        upload(aws, "pr-reviews/running.csv", csv_bytes([(1000, "Platform", "2023-01-03", 5)]))
        with pytest.raises(Exception):  # noqa: B017 - the S3 error escapes the handler, to be retried
            invoke(client, "pr-reviews/running.csv")
    finally:
        boto3.DEFAULT_SESSION.events.unregister("before-call.s3.PutObject", fail_plot_puts)
    body = get(client, "/pr-reviews/report?team=Platform")
    assert body["uploads"] == 1 and body["report"]["stats"]["mean"]["review_time"] == 15
    invoke(client, "pr-reviews/running.csv")  # the retry finishes it
    body = get(client, "/pr-reviews/report?team=Platform")
    assert body["uploads"] == 2 and body["report"]["stats"]["median"]["review_time"] == 20
