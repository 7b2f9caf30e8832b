"""Token access control: every data route names the role it needs.

A caller sends its token as ``Authorization: Bearer <token>``. A browser that cannot set that
header (the OHIF viewer) sends it in the session cookie of ``POST /api/viewer-session`` instead;
the cookie counts only for reading (GET on a route a viewer may use), so it can never store or
act, whatever the token's role (and, SameSite=Strict, another site cannot make it read).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from pacs_node.api.context import ApiContext, get_context
from pacs_node.api.tokens import Principal, Role, authenticate

SESSION_COOKIE = "pacs_node_session"
_bearer = HTTPBearer(auto_error=False, description="API token (pacs-node tokens create)")
_session = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="viewer session (POST /api/viewer-session): reads only",
)


def require(role: Role) -> Callable[..., Principal]:
    """A dependency that admits callers whose token has ``role`` (admins have every role).

    The bearer token is used when there is one; else, for a read of a viewer route, the session
    cookie's.

    Raises:
        HTTPException: 401 without a valid active token, 403 when the role is insufficient.
    """

    def dependency(
        request: Request,
        context: Annotated[ApiContext, Depends(get_context)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        session_token: Annotated[str | None, Depends(_session)],
    ) -> Principal:
        secret = None if credentials is None else credentials.credentials
        if secret is None and role is Role.VIEWER and request.method == "GET":
            secret = session_token
        return _admit(context, _present(secret), role)

    return dependency


def viewer_bearer_token(
    context: Annotated[ApiContext, Depends(get_context)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The bearer token (never the cookie's) of a caller with the viewer role: what a viewer
    session holds.

    Raises:
        HTTPException: 401 without a valid active bearer token, 403 for a sender's.
    """
    secret = _present(None if credentials is None else credentials.credentials)
    _admit(context, secret, Role.VIEWER)
    return secret


def _present(secret: str | None) -> str:
    """``secret``, when the caller sent one.

    Raises:
        HTTPException: 401 when it did not.
    """
    if secret is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return secret


def _admit(context: ApiContext, secret: str, role: Role) -> Principal:
    """The principal of ``secret`` if it is an active token with ``role``.

    Raises:
        HTTPException: 401 if it is not a valid active token, 403 when the role is insufficient.
    """
    with context.sessions.begin() as session:
        principal = authenticate(session, secret)
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid or revoked token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not principal.role.allows(role):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the {role} role")
    return principal


Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Sender = Annotated[Principal, Depends(require(Role.SENDER))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


def remote_address(request: Request) -> str | None:
    """The caller's address, for the audit log."""
    return request.client.host if request.client else None
