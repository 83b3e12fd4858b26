"""Configuration, read from the environment when asked for, never at import time."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SQLITE_PATH = Path("data") / "sluice.sqlite"


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def default_database_url() -> str:
    return f"sqlite:///{DEFAULT_SQLITE_PATH}"


def _database_url() -> str:
    """DATABASE_URL; in deployed stages the URL (it holds a password) comes from SSM instead."""
    from chalicelib.secrets import value_or_parameter

    url = os.environ.get("DATABASE_URL", "").strip()
    name = os.environ.get("DATABASE_URL_PARAMETER", "").strip()
    return value_or_parameter(url, name) or default_database_url()


@dataclass(frozen=True)
class Settings:
    """Everything sluice reads from its environment (see the README's Configuration table)."""

    database_url: str
    ingest_bucket: str
    ingest_queue_url: str
    chunk_bytes: int
    ingest_workers: int
    max_reject_share: float
    max_errors_kept: int
    grid_deg: float
    hour_bucket: int
    github_api_url: str
    github_token: str
    github_token_parameter: str
    github_org: str
    github_repos: tuple[str, ...]
    websocket_api_id: str
    websocket_stage: str
    websocket_token: str
    stage: str
    websocket_token_parameter: str = ""
    websocket_endpoint_url: str = ""
    results_bucket: str = ""
    max_line_bytes: int = 1024 * 1024
    max_attempts: int = 3

    @classmethod
    def from_env(cls) -> Settings:
        repos = tuple(r.strip() for r in os.environ.get("GITHUB_REPOS", "").split(",") if r.strip())
        return cls(
            database_url=_database_url(),
            ingest_bucket=os.environ.get("INGEST_BUCKET", "").strip(),
            ingest_queue_url=os.environ.get("INGEST_QUEUE_URL", "").strip(),
            chunk_bytes=max(_int("CHUNK_BYTES", 4 * 1024 * 1024), 1024),
            ingest_workers=max(_int("INGEST_WORKERS", 2), 1),
            max_reject_share=_float("MAX_REJECT_SHARE", 0.1),
            max_errors_kept=_int("MAX_ERRORS_KEPT", 20),
            grid_deg=_float("GRID_DEG", 0.005),
            hour_bucket=_int("HOUR_BUCKET", 1),
            github_api_url=os.environ.get("GITHUB_API_URL", "").strip() or "https://api.github.com",
            github_token=os.environ.get("GITHUB_TOKEN", "").strip(),
            github_token_parameter=os.environ.get("GITHUB_TOKEN_PARAMETER", "").strip(),
            github_org=os.environ.get("GITHUB_ORG", "").strip(),
            github_repos=repos,
            websocket_api_id=os.environ.get("WEBSOCKET_API_ID", "").strip(),
            websocket_stage=os.environ.get("WEBSOCKET_STAGE", "").strip() or "api",
            websocket_token=os.environ.get("WEBSOCKET_TOKEN", "").strip(),
            stage=os.environ.get("STAGE", "").strip() or "local",
            websocket_token_parameter=os.environ.get("WEBSOCKET_TOKEN_PARAMETER", "").strip(),
            websocket_endpoint_url=os.environ.get("WEBSOCKET_ENDPOINT_URL", "").strip(),
            results_bucket=os.environ.get("RESULTS_BUCKET", "").strip(),
            max_line_bytes=max(_int("MAX_LINE_BYTES", 1024 * 1024), 1024),
            max_attempts=max(_int("MAX_ATTEMPTS", 3), 1),
        )
