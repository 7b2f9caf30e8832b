"""storage commitment: a delivery's Transaction UID and when its commitment was requested

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 20:00:00.000000

A DICOM destination flagged ``/commit`` asks the PACS for storage commitment after the C-STORE;
the delivery then waits in the state ``committing`` (a plain string, no schema change) until the
PACS's N-EVENT-REPORT names its Transaction UID.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pacs_node.db.base

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "commitment_uid",
                sa.String(length=64),
                nullable=True,
                comment="Transaction UID of the last storage commitment request",
            )
        )
        batch_op.add_column(
            sa.Column(
                "commit_requested_at",
                pacs_node.db.base.UTCDateTime(timezone=True),
                nullable=True,
                comment="when the last storage commitment was requested (N-ACTION)",
            )
        )
        batch_op.create_index(
            batch_op.f("ix_deliveries_commitment_uid"), ["commitment_uid"], unique=False
        )


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_commitment_uid"))
        batch_op.drop_column("commit_requested_at")
        batch_op.drop_column("commitment_uid")
