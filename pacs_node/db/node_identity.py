"""The node's identity: created once by the first ``db upgrade``, read wherever results are made."""

from __future__ import annotations

from sqlalchemy.orm import Session

from pacs_node.db.tables import NodeIdentity
from pacs_node.errors import NodeError


class NodeIdentityMissingError(NodeError):
    """The database has no node identity (it was not created by ``pacs-node db upgrade``)."""


def read_node_identity(session: Session) -> NodeIdentity:
    """The node's identity row: ``node_id`` (32 hex digits, unique to this installation and
    database) and when it was created.

    Raises:
        NodeIdentityMissingError: if the database was not brought up by the migrations.
        sqlalchemy.exc.SQLAlchemyError: if the database fails.
    """
    row = session.get(NodeIdentity, 1)
    if row is None:
        raise NodeIdentityMissingError(
            "the database has no node identity; run `pacs-node db upgrade`"
        )
    return row
