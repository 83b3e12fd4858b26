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
