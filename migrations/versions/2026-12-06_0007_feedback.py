"""reviewers' feedback on findings and segmentations, and reference segmentations sent back

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 23:30:00.000000

``feedback`` holds a verdict (accept, reject, amend) per finding (disc level and abnormality)
or per segmentation, kept by study across job versions, with the model that made the call; a
corrected SEG sent back to the node is an ``amend`` of the segmentation that names the stored
instance. A new table only: nothing existing is altered.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import pacs_node.db.base

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column(
            "subject", sa.String(length=16), nullable=False, comment="finding or segmentation"
        ),
        sa.Column(
            "level", sa.String(length=16), nullable=True, comment="a finding: its disc level"
        ),
        sa.Column(
            "abnormality",
            sa.String(length=32),
            nullable=True,
            comment="a finding: its abnormality",
        ),
        sa.Column(
            "verdict", sa.String(length=8), nullable=False, comment="accept, reject or amend"
        ),
        sa.Column(
            "amended_value",
            sa.String(length=500),
            nullable=True,
            comment="amend: present/absent for a finding, a note for the segmentation",
        ),
        sa.Column("comment", sa.String(length=1000), nullable=True),
        sa.Column(
            "given_by",
            sa.String(length=64),
            nullable=False,
            comment="token name, cli:<user>, or ae:<AE title> for a reference SEG",
        ),
        sa.Column("given_at", pacs_node.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(length=64), nullable=True),
        sa.Column("checkpoint_sha256", sa.String(length=64), nullable=True),
        sa.Column("config_hash", sa.String(length=64), nullable=True),
        sa.Column(
            "reference_instance_id",
            sa.Integer(),
            nullable=True,
            comment="a reference segmentation: the SEG received",
        ),
        sa.CheckConstraint(
            "(subject = 'finding') = (level IS NOT NULL AND abnormality IS NOT NULL)",
            name=op.f("ck_feedback_finding_names_level"),
        ),
        sa.CheckConstraint(
            "(verdict = 'amend') = (amended_value IS NOT NULL)",
            name=op.f("ck_feedback_amend_value"),
        ),
        sa.CheckConstraint(
            "subject IN ('finding', 'segmentation')", name=op.f("ck_feedback_subject")
        ),
        sa.CheckConstraint(
            "verdict IN ('accept', 'reject', 'amend')", name=op.f("ck_feedback_verdict")
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_feedback_job_id_jobs")),
        sa.ForeignKeyConstraint(
            ["reference_instance_id"],
            ["instances.id"],
            name=op.f("fk_feedback_reference_instance_id_instances"),
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_feedback_study_id_studies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
    )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_feedback_given_at"), ["given_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_feedback_job_id"), ["job_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_feedback_model_name_checkpoint_sha256_config_hash"),
            ["model_name", "checkpoint_sha256", "config_hash"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_feedback_study_id"), ["study_id"], unique=False)


def downgrade() -> None:
    """Revert."""
    op.drop_table("feedback")
