"""API tokens: random secrets shown once, stored only as SHA-256, each with a role."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pacs_node.db.base import utcnow
from pacs_node.db.tables import ApiToken

TOKEN_PREFIX = "pn_"  # noqa: S105 (a marker that makes leaked tokens easy to grep for)
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""``last_used_at`` is written at most this often per token, not on every request."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Role(StrEnum):
    """What a token may do: viewers read, senders store (STOW-RS) and nothing else, admins do
    everything."""

    VIEWER = "viewer"
    SENDER = "sender"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        """True when this role includes ``needed``: its own, or any for an admin."""
        return self is Role.ADMIN or self is needed


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed (never its secret)."""

    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name and role."""

    name: str
    role: Role


def hash_token(secret: str) -> str:
    """SHA-256 (hex) of a token secret, as stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _info(token: ApiToken) -> TokenInfo:
    return TokenInfo(token.name, token.role, token.created_at, token.revoked_at, token.last_used_at)


def create_token(session: Session, name: str, role: Role | str) -> tuple[TokenInfo, str]:
    """Create a token; return it and its secret (shown once, never stored).

    Raises:
        ValueError: if the name is malformed, already taken, or the role unknown.
    """
    role = Role(role)
    if not _NAME.match(name):
        raise ValueError("token name: 1-64 letters, digits, '.', '_' or '-'")
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise ValueError(f"a token named {name!r} exists")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(name=name, token_sha256=hash_token(secret), role=role.value)
    session.add(token)
    session.flush()
    return _info(token), secret


def list_tokens(session: Session) -> list[TokenInfo]:
    """All tokens, revoked ones included, by name."""
    return [_info(t) for t in session.scalars(select(ApiToken).order_by(ApiToken.name))]


def revoke_token(session: Session, name: str) -> None:
    """Revoke a token: it stops working at once.

    Raises:
        LookupError: if no active token has that name.
    """
    done = session.execute(
        update(ApiToken)
        .where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    ).rowcount  # type: ignore[attr-defined]
    if done != 1:
        raise LookupError(f"no active token named {name!r}")


def authenticate(session: Session, secret: str) -> Principal | None:
    """The principal of an active token, or None; notes when it was last used."""
    token = session.scalar(
        select(ApiToken).where(
            ApiToken.token_sha256 == hash_token(secret), ApiToken.revoked_at.is_(None)
        )
    )
    if token is None:
        return None
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        token.last_used_at = now
    return Principal(token.name, Role(token.role))
