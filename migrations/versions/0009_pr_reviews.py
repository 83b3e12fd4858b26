"""Tables of the pr-reviews dataset (issue 12).

Revision ID: 0009_pr_reviews
Revises: 0008_events
"""

from __future__ import annotations

revision = "0009_pr_reviews"
down_revision = "0008_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
