"""node identity; series origin; stored copy hash and ignored different copies of instances

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 12:00:00.000000
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

import pacs_node.db.base

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply; the node identity is created here, once, with fresh random bits."""
    node_identity = op.create_table(
        "node_identity",
        sa.Column("id", sa.Integer(), nullable=False, comment="always 1: one row"),
        sa.Column("node_id", sa.String(length=32), nullable=False, comment="random 128 bits, hex"),
        sa.Column("created_at", pacs_node.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_node_identity_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_identity")),
    )
    op.bulk_insert(
        node_identity,
        [{"id": 1, "node_id": uuid.uuid4().hex, "created_at": pacs_node.db.base.utcnow()}],
    )
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "origin",
                sa.String(length=16),
                server_default="source",
                nullable=False,
                comment="InstanceOrigin of its instances: only source images open a study",
            )
        )
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "sha256",
                sa.String(length=64),
                nullable=True,
                comment="of the stored file; NULL for instances stored before it was kept",
            )
        )
        batch_op.add_column(
            sa.Column(
                "different_copies",
                sa.Integer(),
                server_default="0",
                nullable=False,
                comment="copies with other content sent later under this SOP Instance UID, "
                "not stored",
            )
        )


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_column("different_copies")
        batch_op.drop_column("sha256")
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.drop_column("origin")
    op.drop_table("node_identity")
