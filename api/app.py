"""The FastAPI application: REST under /api/v1, health and metrics.

Routers are the modules of :mod:`api.routers`, one per area, each exporting ``router``; they
are mounted in name order so the OpenAPI document is stable."""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

import api.routers
from api import problems
from api.auth import ActorDep, SessionDep
from core.settings import get_settings

API_PREFIX = "/api/v1"


def router_modules() -> list[str]:
    return sorted(
        f"api.routers.{m.name}" for m in pkgutil.iter_modules(api.routers.__path__) if not m.ispkg
    )


def create_app(database_url: str | None = None) -> FastAPI:
    app = FastAPI(
        title="Edge Warden",
        version="0.1.0",
        description="Watches and enforces the access rules of a medical-insurance backbone's "
        "edge. Every endpoint but the health checks needs `Authorization: Bearer TOKEN`; "
        "errors are RFC 9457 problem details.",
    )
    app.state.database_url = database_url or get_settings().database_url
    problems.install(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz(session: SessionDep) -> dict[str, str]:
        session.execute(text("SELECT 1"))
        return {"status": "ready"}

    @app.get("/metrics", include_in_schema=False)
    def metrics(session: SessionDep, _actor: ActorDep) -> Response:
        from api import metrics as service_metrics

        return Response(service_metrics.render(session), media_type=CONTENT_TYPE_LATEST)

    for name in router_modules():
        module = importlib.import_module(name)
        app.include_router(module.router, prefix=API_PREFIX)
    return app
