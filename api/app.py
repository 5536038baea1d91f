"""The FastAPI application: REST under /api/v1, health and metrics.

County scoping is applied in the queries (属地原则, Jincheng art. 4, Jilin art. 4): a county
operator's query never selects another county's rows."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Select, select, text
from sqlalchemy.orm import selectinload

from api.auth import ActorDep, SessionDep
from core.actors import Actor
from core.models import County, Institution
from core.settings import get_settings


class CountyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str


class InstitutionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    kind: str
    status: str
    protected: bool
    county: CountyOut


def scoped(stmt: Select[Any], actor: Actor) -> Select[Any]:
    if actor.city_wide:
        return stmt
    return stmt.join(Institution.county).where(County.code.in_(actor.county_codes))


def create_app(database_url: str | None = None) -> FastAPI:
    app = FastAPI(title="Edge Warden", version="0.1.0")
    app.state.database_url = database_url or get_settings().database_url

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz(session: SessionDep) -> dict[str, str]:
        session.execute(text("SELECT 1"))
        return {"status": "ready"}

    @app.get("/metrics", include_in_schema=False)
    def metrics(_actor: ActorDep) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/institutions", response_model=list[InstitutionOut])
    def list_institutions(
        session: SessionDep,
        actor: ActorDep,
        county: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
        after: Annotated[str | None, Query(description="cursor: last code seen")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[Institution]:
        stmt = scoped(select(Institution), actor).options(selectinload(Institution.county))
        if county:
            stmt = stmt.where(Institution.county.has(County.code == county))
        if after:
            stmt = stmt.where(Institution.code > after)
        return list(session.scalars(stmt.order_by(Institution.code).limit(limit)))

    @app.get("/api/v1/institutions/{code}", response_model=InstitutionOut)
    def get_institution(code: str, session: SessionDep, actor: ActorDep) -> Institution:
        stmt = scoped(select(Institution), actor).where(Institution.code == code)
        found: Institution | None = session.scalar(stmt.options(selectinload(Institution.county)))
        if found is None:
            raise HTTPException(404, f"no institution {code} in your counties")
        return found

    return app
