"""sluice: wiring only. Each handler hands its AWS event to chalicelib and shapes the answer."""

import json

from chalice import Chalice

from chalicelib import pipeline
from chalicelib.routes.ingestions import ingestion_routes
from chalicelib.routes.trips import trip_routes
from chalicelib.settings import Settings

app = Chalice(app_name="sluice")
app.experimental_feature_flags.update(["WEBSOCKETS"])
app.register_blueprint(ingestion_routes)
app.register_blueprint(trip_routes)

# The S3 trigger's bucket is fixed at deploy time; keep it equal to INGEST_BUCKET in .chalice/config.json.
UPLOAD_BUCKET = "sluice-uploads"
# The chunk queue's name; its URL is INGEST_QUEUE_URL in .chalice/config.json.
CHUNK_QUEUE = "sluice-chunks"


@app.on_s3_event(bucket=UPLOAD_BUCKET, events=["s3:ObjectCreated:*"])
def on_csv_upload(event):
    """A CSV landed in the upload bucket: ingest it (or fan its chunks out to `on_chunk_message`)."""
    pipeline.ingest_object(event.bucket, event.key, Settings.from_env(), pipeline.deadline_from(event.context))


@app.on_sqs_message(queue=CHUNK_QUEUE, batch_size=1)
def on_chunk_message(event):
    """Load one chunk of a large file; a failure leaves the message for SQS to redeliver."""
    for record in event:
        pipeline.load_from_message(json.loads(record.body), Settings.from_env(), pipeline.deadline_from(event.context))
