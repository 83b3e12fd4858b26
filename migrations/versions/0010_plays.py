"""Tables of the plays dataset (issue 13).

Revision ID: 0010_plays
Revises: 0009_pr_reviews
"""

from __future__ import annotations

revision = "0010_plays"
down_revision = "0009_pr_reviews"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
