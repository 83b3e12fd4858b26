"""Bring a database to the current schema with the repo's Alembic migrations."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def upgrade(url: str) -> None:
    """`alembic upgrade head` against `url`, from Python (the local run and the tests use this)."""
    from alembic import command
    from alembic.config import Config

    from chalicelib.db import get_engine

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    with get_engine(url).connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        conn.commit()
