"""Tables of the events dataset (issue 11).

Revision ID: 0008_events
Revises: 0007_pipeline_hardening
"""

from __future__ import annotations

revision = "0008_events"
down_revision = "0007_pipeline_hardening"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
