"""The WebSocket handlers, driven with hand-built events through Chalice's test client, on both
databases; what the clients received is read back from moto's API Gateway management API."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
import sqlalchemy as sa

from chalicelib import ingestions, websocket
from tests.support.ingest import ingest, ingestion_for, invoke, upload
from tests.support.websocket import (
    API_ID,
    connect,
    disconnect,
    every_status,
    fail_sends,
    ingestion_messages,
    send,
    sent,
    statuses,
    subscribe,
)

HEADER = b"region,origin_coord,destination_coord,datetime,datasource\n"
ROW = b"Turin,POINT (7.67283791328688 44.995710924205),POINT (7.72036863753512 45.0678238539384),2018-05-21 02:54:04,baba_car\n"


def trips_csv(rows: int) -> bytes:
    return HEADER + ROW * rows


@pytest.fixture
def ws_client(client, engine, monkeypatch):
    """The local-stage test client, with notifications going to moto's management API."""
    monkeypatch.setenv("WEBSOCKET_API_ID", API_ID)
    monkeypatch.delenv("WEBSOCKET_ENDPOINT_URL", raising=False)
    websocket.reset()
    yield client
    websocket.reset()


def registry(engine) -> dict[str, set[str]]:
    """connection_id -> its subscriptions."""
    with engine.connect() as conn:
        out: dict[str, set[str]] = {
            cid: set() for cid in conn.execute(sa.select(websocket.connections.c.connection_id)).scalars()
        }
        for cid, target in conn.execute(sa.select(websocket.subscriptions)):
            out[cid].add(target)
    return out


# --- the registry and the protocol --------------------------------------------------------------


def test_connect_subscribe_disconnect_keep_the_registry(ws_client, engine):
    assert connect(ws_client, "c1") == {"statusCode": 200}  # the local stage is open: no token
    assert connect(ws_client, "c1") == {"statusCode": 200}  # a repeated $connect is harmless
    send(ws_client, "c1", {"action": "subscribe", "ingestion_id": "*"})
    send(ws_client, "c1", {"action": "subscribe", "ingestion_id": "*"})
    assert registry(engine) == {"c1": {"*"}}
    assert sent("c1") == [{"type": "subscribed", "ingestion_id": "*"}] * 2

    send(ws_client, "c1", {"action": "unsubscribe", "ingestion_id": "*"})
    assert registry(engine) == {"c1": set()}
    assert sent("c1")[-1] == {"type": "unsubscribed", "ingestion_id": "*"}

    disconnect(ws_client, "c1")
    disconnect(ws_client, "c1")
    assert registry(engine) == {}


BAD_MESSAGES = [
    ("not json", "Messages must be JSON objects"),
    ('["subscribe"]', "Messages must be JSON objects"),
    ("", "Messages must be JSON objects"),
    ({"action": "watch", "ingestion_id": "1"}, 'Unknown action "watch"'),
    ({"ingestion_id": "1"}, "Unknown action null"),
    ({"action": "subscribe"}, "subscribe needs an ingestion_id"),
    ({"action": "subscribe", "ingestion_id": "abc"}, "ingestion_id must be an ingestion's id"),
    ({"action": "subscribe", "ingestion_id": -3}, "ingestion_id must be an ingestion's id"),
    ({"action": "unsubscribe", "ingestion_id": True}, "ingestion_id must be an ingestion's id"),
    ({"action": "subscribe", "ingestion_id": "999"}, "There is no ingestion 999"),
    # Digits that are not ASCII (str.isdigit() says yes to them, int() to some), spaces, signs, fractions.
    ({"action": "subscribe", "ingestion_id": "\u00b2"}, "ingestion_id must be an ingestion's id"),
    ({"action": "subscribe", "ingestion_id": "\u0661\u0662"}, "ingestion_id must be an ingestion's id"),
    ({"action": "subscribe", "ingestion_id": "\uff11"}, "ingestion_id must be an ingestion's id"),
    ({"action": "subscribe", "ingestion_id": " 42"}, "ingestion_id must be an ingestion's id"),
    ({"action": "subscribe", "ingestion_id": "+42"}, "ingestion_id must be an ingestion's id"),
    ({"action": "subscribe", "ingestion_id": 42.0}, "ingestion_id must be an ingestion's id"),
    ({"action": "subscribe", "ingestion_id": "0"}, "ingestion_id must be an ingestion's id"),
    ({"action": "subscribe", "ingestion_id": None}, "ingestion_id must be an ingestion's id"),
    ({"action": "subscribe", "ingestion_id": ["1"]}, "ingestion_id must be an ingestion's id"),
    # Beyond PostgreSQL's integer: refused before any query, on both databases.
    ({"action": "subscribe", "ingestion_id": "2147483648"}, "ingestion_id must be an ingestion's id"),
    ({"action": "subscribe", "ingestion_id": 2**63}, "ingestion_id must be an ingestion's id"),
    ({"action": "unsubscribe", "ingestion_id": "99999999999999999999"}, "ingestion_id must be an ingestion's id"),
    ({"action": "subscribe", "ingestion_id": "2147483647"}, "There is no ingestion 2147483647"),
    # Nesting no parser should recurse into, and frames far longer than any request.
    ("[" * 100_000, "Messages must be at most 4096 bytes"),
    ("[" * 2000 + "]" * 2000, "Messages must be JSON objects"),  # within 4 KiB, past the recursion limit
    ('{"action": "subscribe", "ingestion_id": ' + "[" * 2020 + "]" * 2020 + "}", "Messages must be JSON objects"),
    ({"action": "ping", "padding": "x" * 5000}, "Messages must be at most 4096 bytes"),
    ({"action": [[[[["deep"]]]]]}, 'Unknown action [[[[["deep"]]]]]'),
]


def test_bad_messages_get_an_error_reply_not_a_crash(ws_client, engine):
    connect(ws_client, "c1")
    for body, _ in BAD_MESSAGES:
        assert send(ws_client, "c1", body) == {"statusCode": 200}
    replies = sent("c1")
    assert [r["type"] for r in replies] == ["error"] * len(BAD_MESSAGES)
    for reply, (body, expected) in zip(replies, BAD_MESSAGES, strict=True):
        assert reply["error"].startswith(expected), (body, reply)
    assert registry(engine) == {"c1": set()}

    send(ws_client, "c1", {"action": "ping"})
    assert sent("c1")[-1] == {"type": "pong"}


def test_ids_in_range_are_read_as_numbers(ws_client, engine):
    connect(ws_client, "c1")
    for target in ("7", "007", 7):
        send(ws_client, "c1", {"action": "unsubscribe", "ingestion_id": target})
    assert sent("c1") == [{"type": "unsubscribed", "ingestion_id": "7"}] * 3


def test_a_message_the_server_fails_on_still_gets_an_answer(ws_client, engine, monkeypatch, tmp_path):
    """The registry's database is not there any more (here: one without tables): the client hears so."""
    connect(ws_client, "c1")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'not-migrated.sqlite'}")
    assert send(ws_client, "c1", {"action": "subscribe", "ingestion_id": "*"}) == {"statusCode": 200}
    assert sent("c1") == [{"type": "error", "error": "The server could not handle that message; try again later."}]


# --- notifications from the pipeline -------------------------------------------------------------


def test_star_subscriber_sees_the_whole_ingestion(ws_client, aws, monkeypatch):
    monkeypatch.setenv("CHUNK_BYTES", "1024")
    subscribe(ws_client, "watcher", "*")
    ingestion = ingest(ws_client, aws, "trips/live.csv", trips_csv(40))
    assert ingestion["status"] == "done"

    assert sent("watcher")[0] == {"type": "subscribed", "ingestion_id": "*"}
    assert statuses("watcher") == ["queued", "running", "done"]
    received = ingestion_messages("watcher")
    assert received[-1] == ingestion  # the same object as GET /ingestions/{id}
    done = [m["bytes_done"] for m in received]
    assert done == sorted(done)

    # A late subscriber to that id gets its current state at once, not silence until the next change.
    subscribe(ws_client, "late", str(ingestion["id"]))
    assert sent("late") == [
        {"type": "subscribed", "ingestion_id": str(ingestion["id"])},
        {"type": "ingestion", "ingestion": ingestion},
    ]


def test_subscriber_to_one_id_sees_progress_then_done(ws_client, aws, engine, monkeypatch):
    """Through the SQS fan-out: subscribe while it runs, then each chunk's worker reports progress."""
    sqs = __import__("boto3").client("sqs")
    queue_url = sqs.create_queue(QueueName="sluice-chunks")["QueueUrl"]
    monkeypatch.setenv("INGEST_QUEUE_URL", queue_url)
    monkeypatch.setenv("CHUNK_BYTES", "1024")
    upload(aws, "trips/fanout.csv", trips_csv(20))
    invoke(ws_client, "trips/fanout.csv")
    with engine.connect() as conn:
        ingestion_id = conn.execute(sa.select(sa.func.max(ingestions.ingestions.c.id))).scalar()
    subscribe(ws_client, "one", str(ingestion_id))
    connect(ws_client, "other")

    bodies = [m["Body"] for m in _drain(sqs, queue_url)]
    assert len(bodies) > 1
    for body in bodies:
        _allow_progress_now(engine, ingestion_id)  # as if a second had passed since the last message
        ws_client.lambda_.invoke("on_chunk_message", ws_client.events.generate_sqs_event([body], "sluice-chunks"))

    messages = sent("one")
    assert messages[0] == {"type": "subscribed", "ingestion_id": str(ingestion_id)}
    received = ingestion_messages("one")
    assert received[0]["status"] == "running" and received[0]["bytes_done"] == 0  # state at subscribe
    assert [m["status"] for m in received[1:-1]] == ["running"] * len(bodies)  # one per chunk here
    assert [m["bytes_done"] for m in received] == sorted(m["bytes_done"] for m in received)
    assert received[-1]["status"] == "done" and received[-1]["rows_loaded"] == 20
    assert received[-1]["bytes_done"] == received[-1]["bytes_total"]
    assert sent("other") == []


def _drain(sqs, queue_url: str) -> list[dict]:
    messages: list[dict] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages"):
        messages += batch
        for m in batch:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return sorted(messages, key=lambda m: json.loads(m["Body"])["seq"])


def _allow_progress_now(engine, ingestion_id: int) -> None:
    table = ingestions.ingestions
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.id == ingestion_id).values(notified_at=None))


def _chunks_total(engine, ingestion_id: int) -> int:
    table = ingestions.ingestions
    with engine.connect() as conn:
        return conn.execute(sa.select(table.c.chunks_total).where(table.c.id == ingestion_id)).scalar_one()


def test_progress_within_the_interval_is_not_sent(ws_client, aws, engine, monkeypatch):
    """Many chunks, all inside one progress interval: status changes only, not one message per chunk."""
    monkeypatch.setenv("CHUNK_BYTES", "1024")
    monkeypatch.setattr("chalicelib.notify.PROGRESS_INTERVAL", dt.timedelta(hours=1))
    subscribe(ws_client, "watcher", "*")
    ingestion = ingest(ws_client, aws, "trips/throttled.csv", trips_csv(60))
    assert ingestion["status"] == "done" and _chunks_total(engine, ingestion["id"]) > 3
    assert every_status("watcher") == ["queued", "running", "done"]


def test_progress_once_the_interval_has_passed_is_sent_per_chunk(ws_client, aws, engine, monkeypatch):
    """With the interval spent before each chunk, each committed chunk sends exactly one progress message."""
    monkeypatch.setenv("CHUNK_BYTES", "1024")
    monkeypatch.setenv("INGEST_WORKERS", "1")
    monkeypatch.setattr("chalicelib.notify.PROGRESS_INTERVAL", dt.timedelta(0))
    subscribe(ws_client, "watcher", "*")
    ingestion = ingest(ws_client, aws, "trips/unthrottled.csv", trips_csv(60))
    chunks = _chunks_total(engine, ingestion["id"])
    assert ingestion["status"] == "done" and chunks > 3
    assert every_status("watcher") == ["queued", "running"] + ["running"] * chunks + ["done"]
    progress = [m["bytes_done"] for m in ingestion_messages("watcher")[2:-1]]
    assert progress == sorted(progress) and len(set(progress)) == chunks  # each one a chunk further


def test_a_chunk_message_for_a_finished_ingestion_changes_and_sends_nothing(ws_client, aws, engine, monkeypatch):
    """SQS redelivers after the end: the ingestion, its rows and what its watchers received stay as they were."""
    sqs = __import__("boto3").client("sqs")
    queue_url = sqs.create_queue(QueueName="sluice-chunks")["QueueUrl"]
    monkeypatch.setenv("INGEST_QUEUE_URL", queue_url)
    monkeypatch.setenv("CHUNK_BYTES", "1024")
    subscribe(ws_client, "watcher", "*")
    finished = {}
    for key, body in (("trips/good.csv", trips_csv(20)), ("trips/empty.csv", HEADER)):
        upload(aws, key, body)
        invoke(ws_client, key)
        bodies = [m["Body"] for m in _drain(sqs, queue_url)]
        for message in bodies:
            ws_client.lambda_.invoke("on_chunk_message", ws_client.events.generate_sqs_event([message], "sluice-chunks"))
        finished[key] = (ingestion_for(ws_client, key), bodies)
    assert finished["trips/good.csv"][0]["status"] == "done"
    assert finished["trips/empty.csv"][0]["status"] == "failed"
    before_sent, before_rows = sent("watcher"), _trip_count(engine)

    for key, (ingestion, bodies) in finished.items():
        again = bodies or [json.dumps({"ingestion_id": ingestion["id"], "seq": 0})]
        for message in again:
            _allow_progress_now(engine, ingestion["id"])
            ws_client.lambda_.invoke("on_chunk_message", ws_client.events.generate_sqs_event([message], "sluice-chunks"))
        assert ingestion_for(ws_client, key) == ingestion
    assert sent("watcher") == before_sent
    assert _trip_count(engine) == before_rows == 20


def _trip_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM trips")).scalar_one()


def test_failed_ingestion_sends_its_error(ws_client, aws):
    subscribe(ws_client, "watcher", "*")
    ingestion = ingest(ws_client, aws, "trips/bad.csv", b"city,when\nTurin,2018-05-21\n")
    assert ingestion["status"] == "failed"
    assert statuses("watcher") == ["queued", "failed"]
    last = ingestion_messages("watcher")[-1]
    assert last["error"] == ingestion["error"] and "header has no" in last["error"]


def test_unsubscribed_and_never_subscribed_clients_hear_nothing(ws_client, aws):
    subscribe(ws_client, "c1", "*")
    send(ws_client, "c1", {"action": "unsubscribe", "ingestion_id": "*"})
    connect(ws_client, "idle")
    assert ingest(ws_client, aws, "trips/quiet.csv", trips_csv(2))["status"] == "done"
    assert [m["type"] for m in sent("c1")] == ["subscribed", "unsubscribed"]
    assert sent("idle") == []


# --- gone, failing and slow clients --------------------------------------------------------------


def test_gone_client_is_forgotten(ws_client, aws, engine):
    subscribe(ws_client, "gone", "*")
    subscribe(ws_client, "alive", "*")
    assert registry(engine) == {"gone": {"*"}, "alive": {"*"}}
    fail_sends(websocket.boto_session(), {"gone": (410, "GoneException")})
    assert ingest(ws_client, aws, "trips/gone.csv", trips_csv(2))["status"] == "done"
    assert registry(engine) == {"alive": {"*"}}
    assert statuses("alive") == ["queued", "running", "done"]


def test_a_410_without_gone_exception_is_gone_too(ws_client, aws, engine):
    """API Gateway may answer 410 without naming GoneException (Chalice then raises a plain ClientError)."""
    subscribe(ws_client, "gone", "*")
    subscribe(ws_client, "alive", "*")
    hook = fail_sends(websocket.boto_session(), {"gone": (410, "")})
    assert ingest(ws_client, aws, "trips/gone-plain.csv", trips_csv(2))["status"] == "done"
    assert hook.answered == ["gone"]  # the first send found it gone; it was never tried again
    assert registry(engine) == {"alive": {"*"}}
    assert statuses("alive") == ["queued", "running", "done"]


def test_failing_send_does_not_fail_the_ingestion(ws_client, aws, engine):
    subscribe(ws_client, "broken", "*")
    subscribe(ws_client, "fine", "*")
    hook = fail_sends(websocket.boto_session(), {"broken": (500, "InternalServerError")})
    assert ingest(ws_client, aws, "trips/broken.csv", trips_csv(2))["status"] == "done"
    assert hook.answered == ["broken"] * 3
    assert registry(engine) == {"broken": {"*"}, "fine": {"*"}}  # not gone: kept for the next message
    assert statuses("fine") == ["queued", "running", "done"]


def test_hanging_send_is_cut_off_by_the_budget(ws_client, aws, monkeypatch):
    """The send to `stuck` never answers while the ingestion runs; it finishes anyway."""
    monkeypatch.setattr(websocket, "SEND_BUDGET_SECONDS", 0.2)
    release = threading.Event()
    subscribe(ws_client, "stuck", "*")
    subscribe(ws_client, "fine", "*")
    hook = fail_sends(websocket.boto_session(), {"stuck": (0, "")}, block=release)
    try:
        assert ingest(ws_client, aws, "trips/slow.csv", trips_csv(2))["status"] == "done"
        assert hook.entered == ["stuck"] * 3  # queued, running, done: each send started...
        assert hook.answered == []  # ...and none had returned when the ingestion was over
        assert statuses("fine") == ["queued", "running", "done"]
    finally:
        release.set()


# --- pruning and authentication ------------------------------------------------------------------


def test_schedule_prunes_connections_api_gateway_has_closed(ws_client, engine):
    now = ingestions.utcnow()
    with engine.begin() as conn:
        websocket.subscribe(conn, "idle", "*", now - websocket.IDLE_LIMIT * 2)
        websocket.register(conn, "old", now - websocket.MAX_LIFETIME * 2)
        websocket.touch(conn, ["old"], now)
        websocket.subscribe(conn, "fresh", "*", now)
    ws_client.lambda_.invoke("prune_websockets", ws_client.events.generate_cw_event("aws.events", "x", {}, []))
    assert registry(engine) == {"fresh": {"*"}}


@pytest.fixture
def dev_client(app_env, aws, monkeypatch):
    """A deployed stage's client: its token lives in (moto's) SSM Parameter Store."""
    import boto3
    from chalice.test import Client

    from app import app
    from chalicelib import secrets

    boto3.client("ssm").put_parameter(
        Name="/sluice/dev/websocket-token", Value="s3cret-token", Type="SecureString"
    )
    secrets.clear_cache()
    monkeypatch.delenv("WEBSOCKET_TOKEN", raising=False)
    with Client(app, stage_name="dev") as test_client:
        yield test_client
    secrets.clear_cache()


def test_deployed_stage_checks_the_token_on_connect(dev_client, engine):
    missing = connect(dev_client, "c0")
    assert missing["statusCode"] == 401 and "token is required" in missing["body"]
    wrong = connect(dev_client, "c1", query={"token": "guess"})
    assert wrong["statusCode"] == 403 and "not valid" in wrong["body"]
    assert registry(engine) == {}

    assert connect(dev_client, "c2", query={"token": "s3cret-token"})["statusCode"] == 200
    headers = {"Authorization": "Bearer s3cret-token"}
    assert connect(dev_client, "c3", headers=headers)["statusCode"] == 200
    assert registry(engine) == {"c2": set(), "c3": set()}


