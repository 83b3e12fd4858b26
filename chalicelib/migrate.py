"""Bring a database to the current schema with the repo's Alembic migrations.

In a deployed stage the `migrate` Lambda runs this: the migrations reach its package through
`vendor/migrations`, a link to `migrations/` that Chalice copies to the package root, where ROOT
(the package root, /var/task) finds them just as it finds them at the repo root here.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def upgrade(url: str) -> str | None:
    """`alembic upgrade head` against `url`, from Python; returns the revision the database is at."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    from chalicelib.db import get_engine

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    with get_engine(url).connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        conn.commit()
        return MigrationContext.configure(conn).get_current_revision()
