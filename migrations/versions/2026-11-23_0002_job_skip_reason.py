"""job skip reason: a study out of intended use gets a not-analysed SR before it ends skipped

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "skip_reason",
                sa.Text(),
                nullable=True,
                comment="out of intended use: the job sends a not-analysed SR, then ends skipped",
            )
        )
    # Jobs skipped before this revision were out of intended use too (they sent nothing).
    op.execute("UPDATE jobs SET skip_reason = reason WHERE state = 'skipped'")


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("skip_reason")
