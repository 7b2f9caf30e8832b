"""the model's quality check on each job: whether its results need review, and why

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 09:00:00.000000

``jobs.needs_review`` is the verdict of the model's study-level quality check ("low confidence:
review"), null for a job no model ran on (a study out of intended use, or one not yet analysed,
and every job from before this revision); ``jobs.review_reasons`` the check's reasons, one per
line.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    op.add_column(
        "jobs",
        sa.Column(
            "needs_review",
            sa.Boolean(),
            nullable=True,
            comment="the model's quality check asks for review; null when no model ran",
        ),
    )
    op.add_column(
        "jobs",
        sa.Column(
            "review_reasons",
            sa.Text(),
            nullable=True,
            comment="the check's reasons for review, one per line",
        ),
    )


def downgrade() -> None:
    """Revert."""
    # Plain DROP COLUMNs: batch mode would copy the jobs table, which the rows that refer to
    # it forbid on SQLite.
    with op.batch_alter_table("jobs", recreate="never") as batch_op:
        batch_op.drop_column("review_reasons")
        batch_op.drop_column("needs_review")
