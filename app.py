"""sluice: wiring only. Each handler hands its AWS event to chalicelib and shapes the answer."""

import json

from chalice import Chalice, Cron, Rate

from chalicelib import logs, migrate, pipeline, websocket
from chalicelib.github import sync as github_sync
from chalicelib.routes.github import github_routes
from chalicelib.routes.ingestions import ingestion_routes
from chalicelib.routes.meta import meta_routes
from chalicelib.routes.plays import play_routes
from chalicelib.routes.pr_reviews import pr_review_routes
from chalicelib.routes.trips import trip_routes
from chalicelib.settings import Settings, Wiring

app = Chalice(app_name="sluice")
app.experimental_feature_flags.update(["WEBSOCKETS"])
app.register_blueprint(ingestion_routes)
app.register_blueprint(trip_routes)
app.register_blueprint(github_routes)
app.register_blueprint(meta_routes)
app.register_blueprint(play_routes)
app.register_blueprint(pr_review_routes)

# The stage's upload bucket, chunk queue and chunk-worker cap, from the stage's environment_variables,
# which Chalice puts in os.environ before it imports this file to deploy or package a stage (see Wiring).
WIRING = Wiring.from_env()


@app.middleware("all")
def log_context(event, get_response):
    """Every log line names the stage, function and request (and a chunk message's ingestion and chunk)."""
    return logs.invocation(event, get_response)


@app.on_s3_event(bucket=WIRING.upload_bucket, events=["s3:ObjectCreated:*"])
def on_csv_upload(event):
    """A CSV landed in the upload bucket: ingest it (or fan its chunks out to `on_chunk_message`)."""
    pipeline.ingest_object(event.bucket, event.key, Settings.from_env(), pipeline.deadline_from(event.context))


@app.on_sqs_message(queue=WIRING.chunk_queue, batch_size=1, maximum_concurrency=WIRING.chunk_concurrency)
def on_chunk_message(event):
    """Load one chunk of a large file; a failure leaves the message for SQS to redeliver."""
    for record in event:
        pipeline.load_from_message(json.loads(record.body), Settings.from_env(), pipeline.deadline_from(event.context))


# --- WebSocket ---


@app.on_ws_connect()
def on_ws_connect(event):
    """Register the client; deployed stages first check its token (401/403 otherwise)."""
    return websocket.connect(event, Settings.from_env())


@app.on_ws_message()
def on_ws_message(event):
    """subscribe / unsubscribe / ping; anything else gets an error message back on the socket."""
    websocket.message(event, app.websocket_api, Settings.from_env())


@app.on_ws_disconnect()
def on_ws_disconnect(event):
    websocket.disconnect(event, Settings.from_env())


@app.schedule(Rate(1, unit=Rate.HOURS))
def prune_websockets(event):
    """Forget connections API Gateway closed (10 minutes idle, 2 hours at most) without a $disconnect."""
    websocket.prune_idle(Settings.from_env())


# --- GitHub sync ---


@app.schedule(Rate(30, unit=Rate.MINUTES))
def every_30_min(event):
    """Issues and pull requests of every repository, then the organisation's members."""
    return github_sync.run_job("every_30_min")


@app.schedule(Rate(10, unit=Rate.MINUTES))
def nrt_events(event):
    """Timelines (events, reviews) of the issues and PRs that changed; transfers and deletions met."""
    return github_sync.run_job("nrt_events")


@app.schedule(Cron(0, 5, "*", "*", "?", "*"))
def daily(event):
    """The sweep (transfers, deletions, merged state of closed PRs) and the organisation's teams."""
    return github_sync.run_job("daily")


# --- deployment ---


@app.lambda_function(name="migrate")
def migrate_database(event, context):
    """`alembic upgrade head` against the stage's database; invoked once after each deploy."""
    return {"revision": migrate.upgrade(Settings.from_env().database_url)}
