"""pr-reviews files taken back out (DELETE, a new version of the key) and loaded again: rows, report
and plots go together, and the team report follows."""

from __future__ import annotations

import json
import time

import sqlalchemy as sa

from chalicelib.db import get_engine
from tests.support.ingest import BUCKET, get, ingest, invoke
from tests.support.pr_reviews import PLOT_NAMES, csv_bytes


def _table_counts(url: str) -> tuple[int, int]:
    with get_engine(url).connect() as conn:
        return (conn.execute(sa.text("select count(*) from pr_reviews")).scalar(),
                conn.execute(sa.text("select count(*) from pr_review_reports")).scalar())


def _plots(s3, ingestion_id: int) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"results/pr-reviews/{ingestion_id}/").get("Contents", [])
    return sorted(o["Key"].rsplit("/", 1)[1] for o in listed)


OLD = csv_bytes([(100, "Platform", "2023-01-01", 10), (300, "Platform", "2023-01-02", 30)])
NEW = csv_bytes([(100, "Platform", "2023-01-01", 10), (500, "Platform", "2023-01-02", 50), (0, "Mobile", "2023-01-03", 0)])
KEPT = csv_bytes([(7, "Mobile", "2023-01-04", 1)])


def test_delete_takes_rows_report_and_plots_out(client, aws, app_env):
    gone = ingest(client, aws, "pr-reviews/gone.csv", OLD)
    kept = ingest(client, aws, "pr-reviews/kept.csv", KEPT)
    assert _plots(aws, gone["id"]) == PLOT_NAMES and _table_counts(app_env) == (3, 2)
    deleted = client.http.delete(f"/ingestions/{gone['id']}")
    assert deleted.status_code == 200 and json.loads(deleted.body)["rows_removed"] == 2
    assert _table_counts(app_env) == (1, 1) and _plots(aws, gone["id"]) == []
    assert _plots(aws, kept["id"]) == PLOT_NAMES
    response = client.http.get(f"/pr-reviews/reports/{gone['id']}")
    assert response.status_code == 404 and "deleted" in json.loads(response.body)["error"]
    team = get(client, "/pr-reviews/report")
    assert team["uploads"] == 1 and team["report"]["teams"] == ["Mobile"]


def test_a_new_version_of_a_key_replaces_the_old_report(client, aws, app_env):
    old = ingest(client, aws, "pr-reviews/2023-01.csv", OLD)
    new = ingest(client, aws, "pr-reviews/2023-01.csv", NEW)
    assert get(client, f"/ingestions/{old['id']}")["superseded_by"] == new["id"]
    response = client.http.get(f"/pr-reviews/reports/{old['id']}")
    assert response.status_code == 404
    assert f"ingestion {new['id']}" in json.loads(response.body)["error"]
    assert _plots(aws, old["id"]) == [] and _plots(aws, new["id"]) == PLOT_NAMES
    body = get(client, f"/pr-reviews/reports/{new['id']}")
    assert body["report"]["total_num_observations"] == 3 and body["report"]["teams"] == ["Mobile", "Platform"]
    assert _table_counts(app_env) == (3, 1)
    team = get(client, "/pr-reviews/report?team=Platform")
    assert team["uploads"] == 1 and team["report"]["stats"]["mean"]["review_time"] == 300


def test_the_same_bytes_after_a_delete_load_again_with_their_report_and_plots(client, aws, app_env):
    first = ingest(client, aws, "pr-reviews/again.csv", OLD)
    before = get(client, f"/pr-reviews/reports/{first['id']}")["report"]
    client.http.delete(f"/ingestions/{first['id']}")
    invoke(client, "pr-reviews/again.csv")  # the deleted object's event replayed: nothing comes back
    assert _table_counts(app_env) == (0, 0)
    time.sleep(1.1)  # S3's LastModified has one-second resolution
    again = ingest(client, aws, "pr-reviews/again.csv", OLD)
    assert again["status"] == "done" and again["rows_loaded"] == 2
    assert get(client, f"/pr-reviews/reports/{again['id']}")["report"] == before
    assert _plots(aws, again["id"]) == PLOT_NAMES and _table_counts(app_env) == (2, 1)
