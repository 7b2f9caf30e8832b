"""retrievals from sources, and who asked for a job and which prior it was compared with

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 22:40:00.000000

``retrievals`` records each study the node fetched from a source (on demand, or as the prior of
another study); ``jobs.requested_by`` names who asked for a retrieved study, and
``jobs.prior_job_id`` the prior study's job a job compared its findings with.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pacs_node.db.base

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        "retrievals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "source",
            sa.String(length=64),
            nullable=False,
            comment="the source's name (PACS_NODE_SOURCES)",
        ),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column(
            "purpose", sa.String(length=16), nullable=False, comment="RetrievalPurpose value"
        ),
        sa.Column(
            "requested_by", sa.String(length=64), nullable=False, comment="token name or cli:<user>"
        ),
        sa.Column(
            "for_job_id",
            sa.Integer(),
            nullable=True,
            comment="a prior: the job of the current study that asked",
        ),
        sa.Column("state", sa.String(length=16), nullable=False, comment="RetrievalState value"),
        sa.Column("completed", sa.Integer(), nullable=False, comment="sub-operations"),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("warning", sa.Integer(), nullable=False),
        sa.Column(
            "status", sa.String(length=16), nullable=True, comment="final DIMSE status (hex)"
        ),
        sa.Column("reason", sa.Text(), nullable=True, comment="why it failed"),
        sa.Column(
            "job_id", sa.Integer(), nullable=True, comment="the job its arrival completed into"
        ),
        sa.Column("requested_at", pacs_node.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", pacs_node.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["for_job_id"], ["jobs.id"], name=op.f("fk_retrievals_for_job_id_jobs")
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_retrievals_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retrievals")),
    )
    with op.batch_alter_table("retrievals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_retrievals_requested_at"), ["requested_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_retrievals_study_instance_uid"), ["study_instance_uid"], unique=False
        )

    op.add_column(
        "jobs",
        sa.Column(
            "requested_by",
            sa.String(length=64),
            nullable=True,
            comment="who asked for it (retrieved on demand): token name or cli:<user>",
        ),
    )
    op.add_column(
        "jobs",
        sa.Column(
            "prior_job_id",
            sa.Integer(),
            nullable=True,
            comment="jobs.id of the prior study's job this one was compared with",
        ),
    )


def downgrade() -> None:
    """Revert."""
    # Plain DROP COLUMNs: batch mode would copy the jobs table, which the rows that refer to
    # it forbid on SQLite.
    with op.batch_alter_table("jobs", recreate="never") as batch_op:
        batch_op.drop_column("prior_job_id")
        batch_op.drop_column("requested_by")
    op.drop_table("retrievals")
