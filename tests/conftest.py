"""Shared fixtures: a fresh database per test, on SQLite and (when reachable, always in CI) PostgreSQL.

Each pytest run creates its own PostgreSQL database (`sluice_test_<random>`) next to the `test`
database and drops it at the end, so parallel runs on one server never see each other's rows.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from chalicelib.db import dispose_engines, get_engine
from chalicelib.migrate import upgrade

PG_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_reachable() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this run, dropped afterwards."""
    reason = _postgres_reachable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL must be reachable in CI at {PG_ADMIN_URL}: {reason}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL} ({reason})")
    name = f"sluice_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    dispose_engines()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_all(url: str) -> None:
    engine = get_engine(url)
    names = [n for n in sa.inspect(engine).get_table_names() if n != "alembic_version"]
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    """The URL of an empty, migrated database: SQLite in a temp file, or this run's PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'sluice.sqlite'}"
        upgrade(url)
        yield url
        get_engine(url).dispose()
    else:
        url = request.getfixturevalue("postgres_url")
        _truncate_all(url)
        yield url


@pytest.fixture
def engine(db_url):
    return get_engine(db_url)


# --- AWS (moto) and the Chalice test client -------------------------------------------------------

BUCKET = "sluice-test-uploads"


@pytest.fixture
def aws(monkeypatch):
    """moto's in-process S3/SQS/SSM with fake credentials; yields an S3 client with BUCKET created."""
    import boto3
    from moto import mock_aws

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        yield s3


@pytest.fixture
def app_env(db_url, aws, monkeypatch):
    """The environment a handler sees: this test's database and bucket, no queue."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("INGEST_BUCKET", BUCKET)
    monkeypatch.delenv("INGEST_QUEUE_URL", raising=False)
    return db_url


@pytest.fixture
def client(app_env):
    from chalice.test import Client

    from app import app

    with Client(app, stage_name="local") as test_client:
        yield test_client
