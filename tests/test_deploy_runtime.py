"""How the code behaves inside a deployed Lambda: JSON log lines with the invocation's context, secrets
masked, database connections returned after every handler, engines fit for RDS and RDS Proxy, and the
`migrate` function."""

from __future__ import annotations

import json
import logging

import boto3
import pytest
import sqlalchemy as sa

from chalicelib import db, logs, secrets
from tests.support.ingest import ingest

LAMBDA_ENV = {"AWS_LAMBDA_FUNCTION_NAME": "sluice-dev-on_chunk_message", "STAGE": "dev"}


@pytest.fixture
def json_logs(monkeypatch):
    """The root logger as the Lambda runtime leaves it (one handler) and Chalice's "sluice" logger
    (its own handler, no propagation, level ERROR), both writing to one captured stream."""
    import io

    import app  # noqa: F401 - Chalice configures the "sluice" logger when the app is created

    stream = io.StringIO()
    saved = []
    for logger in (logging.getLogger(), logging.getLogger(logs.APP_LOGGER)):
        saved.append((logger, logger.handlers[:], logger.level))
        logger.handlers = [logging.StreamHandler(stream)]
    assert logging.getLogger(logs.APP_LOGGER).propagate is False
    for name, value in LAMBDA_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(logs, "_CONFIGURED", False)
    yield stream
    for logger, handlers, level in saved:
        logger.handlers, logger.level = handlers, level
    monkeypatch.setattr(logs, "_CONFIGURED", False)


def _lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_carry_every_field_and_the_bound_context(json_logs):
    logs.configure()
    with logs.context(stage="dev", request_id="r-1", function="f"):
        logs.bind(ingestion_id=42, chunk=7)
        logging.getLogger("sluice.pipeline").warning("chunk %s slow", 7)
    logging.getLogger("sluice.pipeline").error("outside")
    inside, outside = _lines(json_logs)
    assert inside["message"] == "chunk 7 slow" and inside["level"] == "WARNING"
    assert {k: inside[k] for k in logs.FIELDS} == {
        "stage": "dev", "function": "f", "request_id": "r-1", "ingestion_id": 42, "chunk": 7}
    assert inside["time"].endswith("Z") and inside["logger"] == "sluice.pipeline"
    assert set(logs.FIELDS) <= set(outside) and outside["ingestion_id"] is None  # present, null


def test_a_records_extra_wins_and_exceptions_are_kept(json_logs):
    logs.configure()
    with logs.context(ingestion_id=1):
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("x").exception("failed", extra={"ingestion_id": 2})
    [line] = _lines(json_logs)
    assert line["ingestion_id"] == 2 and "ValueError: boom" in line["exception"]


def test_plain_text_outside_lambda(json_logs, monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
    logs.configure()
    logging.getLogger("sluice.x").warning("hello")
    assert json_logs.getvalue() == "WARNING sluice.x: hello\n"


def test_secret_values_never_reach_a_log_line(json_logs, aws):
    boto3.client("ssm").put_parameter(Name="/sluice/dev/database-url", Type="SecureString",
                                      Value="postgresql://sluice:hunter2-secret@db:5432/sluice")
    secrets.clear_cache()
    url = secrets.parameter("/sluice/dev/database-url")
    logs.configure()
    logging.getLogger("sluice.db").error("could not connect to %s", url)
    try:
        raise RuntimeError(f"connect failed: {url}")
    except RuntimeError:
        logging.getLogger("sluice.db").exception("again")
    secrets.clear_cache()
    text = json_logs.getvalue()
    assert "hunter2-secret" not in text
    assert text.count("***") == 2  # the message and the exception


def test_botocore_never_logs_a_secret_even_at_debug(json_logs, aws, monkeypatch):
    boto3.client("ssm").put_parameter(Name="/sluice/dev/github-token", Type="SecureString", Value="ghp_n0tReal9")
    secrets.clear_cache()
    saved = {name: logging.getLogger(name).level for name in logs.QUIET}
    try:
        logs.configure(level="DEBUG")
        assert secrets.parameter("/sluice/dev/github-token") == "ghp_n0tReal9"
        logging.getLogger("sluice.deploytest").debug("read the token")
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        secrets.clear_cache()
    text = json_logs.getvalue()
    assert "read the token" in text and "ghp_n0tReal9" not in text


def test_a_chunk_message_invocation_logs_its_ingestion_chunk_request_and_stage(client, json_logs):
    event = client.events.generate_sqs_event(message_bodies=[json.dumps({"ingestion_id": 31337, "seq": 4})],
                                             queue_name="sluice-dev-chunks")
    with pytest.raises(Exception, match="31337"):
        client.lambda_.invoke("on_chunk_message", event)
    [line] = [x for x in _lines(json_logs) if x["logger"] == "sluice.pipeline"]
    assert line["ingestion_id"] == 31337 and line["chunk"] == 4
    assert line["stage"] == "local"  # the test client applies the local stage's STAGE during the call
    assert line["function"] == "on_chunk_message" and line["request_id"]


def test_an_upload_logs_its_ingestion_id_once_registered(client, aws, json_logs, monkeypatch):
    """Lines logged by on_csv_upload after the ingestion is registered carry its id (here: the
    warnings of a WebSocket client whose sends fail, answered at the HTTP boundary)."""
    from chalicelib import websocket
    from tests.support.websocket import API_ID, fail_sends, subscribe

    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")  # the local stage's open socket
    logs.configure(json_lines=True)
    monkeypatch.setenv("WEBSOCKET_API_ID", API_ID)
    monkeypatch.delenv("WEBSOCKET_ENDPOINT_URL", raising=False)
    websocket.reset()
    try:
        subscribe(client, "broken", "*")
        fail_sends(websocket.boto_session(), {"broken": (500, "InternalServerError")})
        done = ingest(client, aws, "trips/logged.csv", b"region,origin_coord,destination_coord,datetime,"
                      b"datasource\nTurin,POINT (7.6 45.0),POINT (7.7 45.1),2018-05-21 02:54:04,cheap_mobile\n")
    finally:
        websocket.reset()
    lines = [x for x in _lines(json_logs) if x["message"].startswith("could not send")]
    assert len(lines) >= 3  # queued, running, done (and progress on a slow machine)
    assert {(x["ingestion_id"], x["function"]) for x in lines} == {(done["id"], "on_csv_upload")}


def test_no_connection_is_left_checked_out_after_any_handler(client, aws, engine, caplog):
    ingest(client, aws, "trips/a.csv", b"region,origin_coord,destination_coord,datetime,datasource\n"
           b"Turin,POINT (7.6 45.0),POINT (7.7 45.1),2018-05-21 02:54:04,cheap_mobile\n")
    assert db.checked_out_connections() == 0
    assert client.http.get("/ingestions").status_code == 200
    assert db.checked_out_connections() == 0
    with engine.connect():  # a handler that kept one would be reported after it returns
        with caplog.at_level(logging.ERROR, logger="sluice.logs"):
            logs.invocation(object(), lambda event: None)
    assert "1 database connection(s) still checked out" in caplog.text


def test_migrate_function_brings_the_database_to_head(client, db_url):
    from chalicelib.migrate import ROOT

    heads = sorted(p.stem.split("_", 1)[0] for p in (ROOT / "migrations" / "versions").glob("0*.py"))
    result = client.lambda_.invoke("migrate", {}).payload
    assert result["revision"].startswith(heads[-1])
    with db.get_engine(db_url).connect() as conn:
        assert conn.execute(sa.text("select version_num from alembic_version")).scalar() == result["revision"]


# --- engines for Lambda and RDS -----------------------------------------------------------------------


def test_lambda_engines_keep_small_pinged_recycled_pools():
    url = sa.make_url("postgresql+psycopg://u:p@sluice-prod.abc.eu-west-1.rds.amazonaws.com/sluice")
    options = db.postgres_engine_options(url, in_lambda=True)
    assert options["pool_pre_ping"] is True
    assert options["pool_size"] + options["max_overflow"] <= 4  # tools/stages.py CONNECTIONS_PER_WORKER
    assert options["pool_recycle"] < 350  # below a NAT gateway's idle timeout
    assert options["connect_args"]["options"] == "-c jit=off"
    assert options["connect_args"]["keepalives"] == 1 and options["connect_args"]["connect_timeout"] <= 10


def test_rds_proxy_gets_no_startup_options_and_no_prepared_statements():
    url = sa.make_url("postgresql+psycopg://u:p@sluice-prod.proxy-abc123.eu-west-1.rds.amazonaws.com/sluice")
    assert db.is_rds_proxy(url)
    args = db.postgres_engine_options(url, in_lambda=True)["connect_args"]
    assert "options" not in args and args["prepare_threshold"] is None
    assert not db.is_rds_proxy(sa.make_url("postgresql://u@db.example.com/x"))


def test_the_engine_in_lambda_uses_those_options(monkeypatch, postgres_url):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "sluice-dev-api")
    engine = db._create_engine(postgres_url)
    try:
        assert engine.pool.size() == 2 and engine.pool._max_overflow == 2 and engine.pool._recycle == 280
        with engine.connect() as conn:
            assert conn.execute(sa.text("show jit")).scalar() == "off"
    finally:
        engine.dispose()
