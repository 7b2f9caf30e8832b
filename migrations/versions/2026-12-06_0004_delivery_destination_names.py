"""deliveries refer to their destination by name

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 18:00:00.000000

Deliveries recorded ``AE@host:port`` (DICOM) or ``host:port`` (HL7). Destinations now have
names: a DICOM one is named after its AE title unless the site names it (``NAME=AE@host:port``),
the HL7 endpoint is ``hl7``. Existing rows take those default names; a row whose default name is
already taken by another delivery of the same result keeps its old text (it then fails as an
unknown destination and can be replayed by name).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OLD_COMMENT = "AE@host:port or host:port"
NEW_COMMENT = "the destination's name (PACS_NODE_DESTINATIONS, hl7)"


def _default_name(channel: str, address: str) -> str:
    if channel == "hl7":
        return "hl7"
    return address.split("@", 1)[0] if "@" in address else address


def upgrade() -> None:
    """Apply."""
    connection = op.get_bind()
    deliveries = sa.table(
        "deliveries",
        sa.column("id", sa.Integer),
        sa.column("result_id", sa.Integer),
        sa.column("channel", sa.String),
        sa.column("destination", sa.String),
    )
    rows = connection.execute(
        sa.select(
            deliveries.c.id, deliveries.c.result_id, deliveries.c.channel, deliveries.c.destination
        )
    ).all()
    taken = {(row.result_id, row.destination) for row in rows}
    for row in rows:
        name = _default_name(row.channel, row.destination)
        if name == row.destination or (row.result_id, name) in taken:
            continue
        taken.add((row.result_id, name))
        connection.execute(
            sa.update(deliveries).where(deliveries.c.id == row.id).values(destination=name)
        )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.alter_column(
            "destination",
            existing_type=sa.String(length=128),
            comment=NEW_COMMENT,
            existing_comment=OLD_COMMENT,
            existing_nullable=False,
        )


def downgrade() -> None:
    """Revert the comment (the names cannot be turned back into addresses)."""
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.alter_column(
            "destination",
            existing_type=sa.String(length=128),
            comment=OLD_COMMENT,
            existing_comment=NEW_COMMENT,
            existing_nullable=False,
        )
