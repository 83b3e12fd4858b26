"""WebSocket connection registry: who is connected, since when, last seen, and what each watches.

Revision ID: 0003_websocket
Revises: 0002_github
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_websocket"
down_revision = "0002_github"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "websocket_connections",
        sa.Column("connection_id", sa.String(128), primary_key=True),
        sa.Column("connected_at", sa.DateTime, nullable=False),
        sa.Column("last_seen_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_websocket_connections_last_seen", "websocket_connections", ["last_seen_at"])
    op.create_table(
        "websocket_subscriptions",
        sa.Column(
            "connection_id",
            sa.String(128),
            sa.ForeignKey("websocket_connections.connection_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("ingestion_id", sa.String(20), primary_key=True),
    )
    op.create_index("ix_websocket_subscriptions_ingestion", "websocket_subscriptions", ["ingestion_id"])


def downgrade() -> None:
    op.drop_index("ix_websocket_subscriptions_ingestion", table_name="websocket_subscriptions")
    op.drop_table("websocket_subscriptions")
    op.drop_index("ix_websocket_connections_last_seen", table_name="websocket_connections")
    op.drop_table("websocket_connections")
