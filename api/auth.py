"""Bearer-token authentication; every route but the health checks depends on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from core.actors import Actor
from core.audit import record
from core.db import session_scope
from core.tokens import authenticate

_bearer = HTTPBearer(auto_error=False)


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request, committed when the handler succeeds."""
    with session_scope(request.app.state.database_url) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def current_actor(
    request: Request,
    session: SessionDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """The caller, from ``Authorization: Bearer TOKEN``; failures are audited."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    user = authenticate(session, creds.credentials)
    if user is None:
        client = request.client.host if request.client else "?"
        record(
            session,
            actor=f"anonymous@{client}",
            action="auth.failed",
            object_type="api",
            object_id=request.url.path[:64],
            reason="unknown, revoked or expired token",
        )
        session.commit()
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "unknown, revoked or expired token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return Actor.from_user(user)


ActorDep = Annotated[Actor, Depends(current_actor)]
