"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API returns has a ``title`` (what kind of failure), a ``detail`` a person can
act on, and the ``status``; validation failures add ``errors`` with one entry per bad field.
Domain errors are raised as plain exceptions by the lower packages and mapped here, so the
rules engine and the enforcer need know nothing about HTTP."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import (
    Conflict,
    EdgeWardenError,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "https://edgewarden.invalid/problems/"

_TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Not allowed for your role",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict with the current state",
    413: "Too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


class Problem(Exception):
    """Raise from a handler to answer with a problem detail."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or _TITLES.get(status, "Error")
        self.kind = kind
        self.headers = headers
        self.extra = extra


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    title: str | None = None,
    kind: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": _TYPE_BASE + (kind or str(status)),
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    body.update(extra)
    return JSONResponse(
        body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {})
    )


def _status_of(exc: EdgeWardenError) -> int:
    # Imported here: api sits on top and may know every package's errors.
    from enforcer.errors import ActionNotFound, InvalidTransition, TargetRefused
    from rules.errors import PolicyError, TransitionRefused

    if isinstance(exc, NotFound | ActionNotFound):
        return 404
    if isinstance(exc, PermissionDenied):
        return 403
    if isinstance(exc, Conflict | TransitionRefused | InvalidTransition | TargetRefused):
        return 409
    if isinstance(exc, ValidationFailed | PolicyError):
        return 422
    return 400


def install(app: FastAPI) -> None:
    """Route every error through :func:`problem_response`."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            request,
            exc.status,
            exc.detail,
            title=exc.title,
            kind=exc.kind,
            headers=exc.headers,
            **exc.extra,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return problem_response(request, exc.status_code, detail, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(str(p) for p in err.get("loc", ())),
                "reason": err.get("msg", "invalid"),
            }
            for err in exc.errors()
        ]
        summary = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:5])
        return problem_response(request, 422, summary or "invalid input", errors=errors)

    @app.exception_handler(EdgeWardenError)
    async def _domain(request: Request, exc: EdgeWardenError) -> JSONResponse:
        extra: dict[str, Any] = {}
        problems = getattr(exc, "problems", None)
        if problems:
            extra["errors"] = [{"reason": p} for p in problems]
        article = getattr(exc, "article", "")
        if article:
            extra["article"] = article
        return problem_response(request, _status_of(exc), str(exc), **extra)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            request,
            500,
            "the service failed on this request; it is logged, and nothing was half-written",
        )
