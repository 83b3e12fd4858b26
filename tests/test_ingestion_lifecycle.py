"""An ingestion's life beyond one clean load: duplicates, new versions of a key, failures, retry, delete.

Pins issue 15's defects: a duplicate decided before the key was checked, a failed file blocking its
own fix, a failed file still showing rows_loaded, a corrected file doubling the good rows; and the
maintainer's re-drive and removal, on both databases.
"""

from __future__ import annotations

import json
import time

import boto3
import sqlalchemy as sa

from chalicelib import notify
from chalicelib.datasets import trips
from chalicelib.db import get_engine
from tests.support.ingest import get, ingest, ingestion_for, invoke, upload

HEADER = b"region,origin_coord,destination_coord,datetime,datasource\n"


def _rows(n: int, region: bytes = b"Turin", day: int = 1) -> bytes:
    return b"".join(
        region + b",POINT (7.%02d 44.99),POINT (7.72 45.06),2018-05-%02d 0%d:54:04,baba_car\n" % (i, day, i % 10)
        for i in range(n)
    )


def _counts(client) -> dict[str, int]:
    return {c["region"]: c["trips"] for c in get(client, "/trips/counts")["items"]}


def _rollup_totals(db_url: str) -> dict[str, int]:
    with get_engine(db_url).connect() as conn:
        return {t.name: int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(t.c.trips), 0))).scalar())
                for t in (trips.region_weeks, trips.datasource_weeks, trips.cell_weeks, trips.groups)}


# --- the key first, then duplicates --------------------------------------------------------------


def test_same_bytes_under_a_key_no_dataset_takes_fail_like_any_file_there(client, aws, app_env):
    body = HEADER + _rows(20)
    assert ingest(client, aws, "trips/2018-05.csv", body)["status"] == "done"
    weather = ingest(client, aws, "weather/x.csv", body)
    assert weather["status"] == "failed" and "No dataset matches" in weather["error"]
    notes = ingest(client, aws, "trips/notes.txt", body)
    assert notes["status"] == "failed" and "is not a CSV file" in notes["error"]
    assert weather["duplicate_of"] is None and notes["duplicate_of"] is None


def test_a_file_that_failed_under_a_wrong_folder_does_not_block_its_fix(client, aws, app_env):
    body = HEADER + _rows(20)
    wrong = ingest(client, aws, "trip/2018-05.csv", body)
    assert wrong["status"] == "failed"
    right = ingest(client, aws, "trips/2018-05.csv", body)
    assert right["status"] == "done" and right["duplicate_of"] is None and right["rows_loaded"] == 20
    assert _counts(client) == {"Turin": 20}


def test_the_same_bytes_under_another_key_are_a_duplicate_of_the_loaded_file(client, aws, app_env):
    body = HEADER + _rows(20)
    first = ingest(client, aws, "trips/a.csv", body)
    second = ingest(client, aws, "trips/b.csv", body)
    assert second["status"] == "done" and second["duplicate_of"] == first["id"] and second["rows_loaded"] == 0
    assert _counts(client) == {"Turin": 20}


def test_a_failed_file_says_nothing_of_it_is_kept_and_counts_what_was_taken_out(client, aws, app_env, monkeypatch):
    monkeypatch.setenv("CHUNK_BYTES", "1024")
    bad = b"Turin,nowhere,POINT (1 1),2018-05-01 00:00:00,x\n" * 5
    failed = ingest(client, aws, "trips/mostly-bad.csv", HEADER + _rows(20) + bad)
    assert failed["status"] == "failed" and "nothing from this file was kept" in failed["error"]
    assert failed["rows_loaded"] == 0 and failed["rows_removed"] == 20 and failed["rows_rejected"] == 5
    assert _counts(client) == {}


# --- a key names one file: new versions replace old ones ------------------------------------------


def test_a_corrected_file_under_the_same_key_replaces_the_old_version(client, aws, app_env):
    messages: list[dict] = []
    notify.add_listener(messages.append)
    try:
        old = ingest(client, aws, "trips/2018-05.csv", HEADER + _rows(97) + _rows(3, b"Prague"))
        new = ingest(client, aws, "trips/2018-05.csv", HEADER + _rows(97) + _rows(5, b"Hamburg", day=2))
    finally:
        notify.remove_listener(messages.append)
    assert new["id"] != old["id"] and new["status"] == "done" and new["rows_loaded"] == 102
    old = get(client, f"/ingestions/{old['id']}")
    assert old["superseded_by"] == new["id"] and old["rows_loaded"] == 0 and old["rows_removed"] == 100
    assert _counts(client) == {"Turin": 97, "Hamburg": 5}
    assert _rollup_totals(app_env) == {"trip_region_weeks": 102, "trip_datasource_weeks": 102,
                                       "trip_cell_weeks": 204, "trip_groups": 102}
    told = [m["ingestion"] for m in messages if m["ingestion"]["id"] == old["id"]]
    assert told and told[-1]["superseded_by"] == new["id"]


def test_a_new_version_that_fails_leaves_the_old_one_in_place(client, aws, app_env):
    old = ingest(client, aws, "trips/2018-05.csv", HEADER + _rows(30))
    new = ingest(client, aws, "trips/2018-05.csv", b"colour,size\nred,2\n")
    assert new["status"] == "failed"
    assert get(client, f"/ingestions/{old['id']}")["superseded_by"] is None
    assert _counts(client) == {"Turin": 30}


def test_replaying_an_old_versions_event_changes_nothing(client, aws, app_env):
    ingest(client, aws, "trips/k.csv", HEADER + _rows(10))
    ingest(client, aws, "trips/k.csv", HEADER + _rows(12))
    invoke(client, "trips/k.csv")  # the newest object's event again
    assert _counts(client) == {"Turin": 12}
    assert len([i for i in get(client, "/ingestions")["items"] if i["key"] == "trips/k.csv"]) == 2


# --- a maintainer re-drives and removes -----------------------------------------------------------


def test_delete_takes_every_row_out_and_is_idempotent(client, aws, app_env):
    done = ingest(client, aws, "trips/gone.csv", HEADER + _rows(40))
    ingest(client, aws, "trips/stays.csv", HEADER + _rows(7, b"Prague"))
    first = client.http.delete(f"/ingestions/{done['id']}")
    assert first.status_code == 200 and json.loads(first.body)["status"] == "deleted"
    assert json.loads(first.body)["rows_removed"] == 40
    again = client.http.delete(f"/ingestions/{done['id']}")
    assert again.status_code == 200 and json.loads(again.body) == json.loads(first.body)
    assert _counts(client) == {"Prague": 7}
    assert _rollup_totals(app_env)["trip_cell_weeks"] == 14
    assert client.http.delete("/ingestions/999999").status_code == 404


def test_the_same_bytes_may_be_uploaded_again_after_a_delete(client, aws, app_env):
    body = HEADER + _rows(15)
    done = ingest(client, aws, "trips/again.csv", body)
    client.http.delete(f"/ingestions/{done['id']}")
    invoke(client, "trips/again.csv")  # a replayed event of the deleted object: nothing happens
    assert _counts(client) == {}
    time.sleep(1.1)  # S3's LastModified has one-second resolution
    again = ingest(client, aws, "trips/again.csv", body)
    assert again["id"] == done["id"] and again["status"] == "done" and again["rows_loaded"] == 15
    assert _counts(client) == {"Turin": 15}


def test_retry_loads_a_failed_file_again_once_its_cause_is_gone(client, aws, app_env):
    from tests.test_broken_input import _allow_region, _refuse_region

    _refuse_region(app_env, "Turin")
    try:
        failed = ingest(client, aws, "trips/retry.csv", HEADER + _rows(25))
    finally:
        _allow_region(app_env, "Turin")
    assert failed["status"] == "failed"
    response = client.http.post(f"/ingestions/{failed['id']}/retry")
    assert response.status_code == 200, response.body
    assert json.loads(response.body)["status"] == "done" and json.loads(response.body)["rows_loaded"] == 25
    assert _counts(client) == {"Turin": 25}
    again = client.http.post(f"/ingestions/{failed['id']}/retry")
    assert again.status_code == 409 and "is done" in json.loads(again.body)["error"]
    assert _counts(client) == {"Turin": 25}


def test_retry_resumes_a_stuck_running_ingestion(client, aws, app_env, monkeypatch):
    monkeypatch.setenv("CHUNK_BYTES", "1024")
    queue = boto3.client("sqs").create_queue(QueueName="nobody-reads-this")["QueueUrl"]
    monkeypatch.setenv("INGEST_QUEUE_URL", queue)  # the chunks go to a queue no worker reads
    upload(aws, "trips/stuck.csv", HEADER + _rows(60))
    invoke(client, "trips/stuck.csv")
    stuck = ingestion_for(client, "trips/stuck.csv")
    assert stuck["status"] == "running" and stuck["rows_loaded"] == 0
    monkeypatch.delenv("INGEST_QUEUE_URL")
    response = client.http.post(f"/ingestions/{stuck['id']}/retry")
    assert response.status_code == 200 and json.loads(response.body)["status"] == "done"
    assert _counts(client) == {"Turin": 60}


def test_retry_answers_409_for_duplicates_and_404_for_unknown_ids(client, aws, app_env):
    body = HEADER + _rows(5)
    ingest(client, aws, "trips/one.csv", body)
    dup = ingest(client, aws, "trips/two.csv", body)
    response = client.http.post(f"/ingestions/{dup['id']}/retry")
    assert response.status_code == 409 and "duplicate" in json.loads(response.body)["error"]
    assert client.http.post("/ingestions/4242/retry").status_code == 404
    assert client.http.post("/ingestions/x/retry").status_code == 400
