"""Helpers the route modules share: the engine for this call's settings."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from chalicelib.db import get_engine
from chalicelib.settings import Settings


def settings() -> Settings:
    return Settings.from_env()


def engine(current: Settings | None = None) -> Engine:
    return get_engine((current or settings()).database_url)
