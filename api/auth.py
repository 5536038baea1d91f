"""Bearer-token authentication; every route but the health checks depends on it.

Failed attempts are audited and rate-limited per client address: after
``auth_fail_limit`` failures inside ``auth_fail_window_s`` the client gets 429 until the window
passes, so a leaked prefix cannot be brute-forced through the API. The limiter is per process;
behind several API processes each applies it on its own."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.problems import Problem
from core.actors import Actor
from core.audit import record
from core.db import session_scope
from core.settings import get_settings
from core.tokens import authenticate

_bearer = HTTPBearer(auto_error=False)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class FailureLimiter:
    """Sliding window of failure times per client address."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _trim(self, client: str, now: float) -> deque[float]:
        hits = self._hits.setdefault(client, deque())
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        return hits

    def blocked_for(self, client: str) -> float:
        """Seconds until ``client`` may try again; 0 when it may try now."""
        now = time.monotonic()
        with self._lock:
            hits = self._trim(client, now)
            if len(hits) < self.limit:
                return 0.0
            return max(hits[0] + self.window_s - now, 0.001)

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._trim(client, now).append(now)
            if len(self._hits) > 100_000:  # bounded memory under a spray of addresses
                self._hits = {k: v for k, v in self._hits.items() if v}


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request, committed when the handler succeeds."""
    with session_scope(request.app.state.database_url) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def _limiter(request: Request) -> FailureLimiter:
    limiter: FailureLimiter | None = getattr(request.app.state, "auth_limiter", None)
    if limiter is None:
        settings = get_settings()
        limiter = FailureLimiter(settings.auth_fail_limit, settings.auth_fail_window_s)
        request.app.state.auth_limiter = limiter
    return limiter


def current_actor(
    request: Request,
    session: SessionDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """The caller, from ``Authorization: Bearer TOKEN``; failures are audited."""
    client = request.client.host if request.client else "?"
    limiter = _limiter(request)
    wait = limiter.blocked_for(client)
    if wait:
        raise Problem(
            429,
            f"too many failed authentications from {client}; try again in {wait:.0f} s",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    if creds is None or creds.scheme.lower() != "bearer":
        raise Problem(
            401, "send Authorization: Bearer TOKEN (edgewarden token create)", headers=_CHALLENGE
        )
    user = authenticate(session, creds.credentials)
    if user is None:
        limiter.failed(client)
        record(
            session,
            actor=f"anonymous@{client}",
            action="auth.failed",
            object_type="api",
            object_id=request.url.path[:64],
            reason="unknown, revoked or expired token",
        )
        session.commit()
        raise Problem(401, "unknown, revoked or expired token", headers=_CHALLENGE)
    return Actor.from_user(user)


ActorDep = Annotated[Actor, Depends(current_actor)]
