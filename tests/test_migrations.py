"""`alembic upgrade head` brings an empty database to the current schema, on both dialects."""

import sqlalchemy as sa


def test_upgrade_creates_every_table(engine):
    names = set(sa.inspect(engine).get_table_names())
    assert {"ingestions", "ingestion_chunks", "ingestion_rejects", "trips", "trip_region_weeks"} <= names


def test_upgrade_is_idempotent(db_url):
    from chalicelib.migrate import upgrade

    upgrade(db_url)  # already at head: must be a no-op, not an error
    with sa.create_engine(db_url).connect() as conn:
        assert conn.execute(sa.text("select count(*) from alembic_version")).scalar() == 1


def test_an_older_database_upgrades_to_head(db_url):
    """Down to the first revision (as a database from the first release), then up again."""
    from alembic import command
    from alembic.config import Config

    from chalicelib.db import get_engine
    from chalicelib.migrate import ROOT, upgrade

    engine = get_engine(db_url)
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0001_ingestions_and_trips")
        conn.commit()
    older = set(sa.inspect(engine).get_table_names())
    assert "trips" in older and not any(n.startswith(("github_", "websocket_")) for n in older)
    upgrade(db_url)
    newer = set(sa.inspect(engine).get_table_names())
    assert any(n.startswith("github_") for n in newer) and any(n.startswith("websocket_") for n in newer)
