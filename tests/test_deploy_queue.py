"""The chunk queue in a deployed stage: a message this stage cannot place goes to the dead-letter
queue, loudly, never dropped; a late message for a finished ingestion is acknowledged quietly."""

from __future__ import annotations

import json
import logging

import pytest

from chalicelib.errors import UnknownIngestion
from tests.support.ingest import ingest


def _deliver(client, body: dict) -> None:
    event = client.events.generate_sqs_event(message_bodies=[json.dumps(body)], queue_name="sluice-dev-chunks")
    client.lambda_.invoke("on_chunk_message", event)


def test_a_message_for_an_unknown_ingestion_fails_loudly(client, caplog):
    with caplog.at_level(logging.ERROR, logger="sluice.pipeline"):
        with pytest.raises(UnknownIngestion, match="Ingestion 987654 does not exist in stage local"):
            _deliver(client, {"ingestion_id": 987654, "seq": 0})
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "987654" in record.getMessage() and "stage local" in record.getMessage()
    assert record.ingestion_id == 987654


def test_a_late_message_for_a_finished_ingestion_is_acknowledged(client, aws, caplog):
    done = ingest(client, aws, "trips/a.csv", b"region,origin_coord,destination_coord,datetime,datasource\n")
    assert done["status"] in ("done", "failed")
    with caplog.at_level(logging.WARNING):
        _deliver(client, {"ingestion_id": done["id"], "seq": 0})  # returns: SQS deletes the message
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
