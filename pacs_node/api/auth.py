"""Bearer-token access control: every data route names the role it needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pacs_node.api.context import ApiContext, get_context
from pacs_node.api.tokens import Principal, Role, authenticate

_bearer = HTTPBearer(auto_error=False, description="API token (pacs-node tokens create)")


def require(role: Role) -> Callable[..., Principal]:
    """A dependency that admits callers whose token has ``role`` (admins have every role).

    Raises:
        HTTPException: 401 without a valid active token, 403 when the role is insufficient.
    """

    def dependency(
        context: Annotated[ApiContext, Depends(get_context)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        with context.sessions.begin() as session:
            principal = authenticate(session, credentials.credentials)
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "invalid or revoked token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not principal.role.allows(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the {role} role")
        return principal

    return dependency


Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Sender = Annotated[Principal, Depends(require(Role.SENDER))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


def remote_address(request: Request) -> str | None:
    """The caller's address, for the audit log."""
    return request.client.host if request.client else None
