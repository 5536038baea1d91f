"""Inventory: counties and institutions (scoped to the caller's counties)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from api.auth import SessionDep
from api.deps import Page, PageDep, ReaderDep, page_by_id, scoped
from api.problems import Problem
from core.models import County, Institution

router = APIRouter(tags=["inventory"])


class CountyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str


class InstitutionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    kind: str
    status: str
    protected: bool
    county: CountyOut


@router.get("/institutions", response_model=Page[InstitutionOut])
def list_institutions(
    session: SessionDep,
    actor: ReaderDep,
    page: PageDep,
    county: Annotated[str | None, Query(pattern=r"^\d{6}$", description="county code")] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
) -> Page[InstitutionOut]:
    stmt = scoped(select(Institution), actor).options(selectinload(Institution.county))
    if county:
        stmt = stmt.where(Institution.county.has(County.code == county))
    if status:
        stmt = stmt.where(Institution.status == status)
    if kind:
        stmt = stmt.where(Institution.kind == kind)
    rows, cursor = page_by_id(session, stmt, Institution.id, page, descending=False)
    return Page[InstitutionOut](
        items=[InstitutionOut.model_validate(r) for r in rows], next_cursor=cursor
    )


@router.get("/institutions/{code}", response_model=InstitutionOut)
def get_institution(code: str, session: SessionDep, actor: ReaderDep) -> Institution:
    stmt = scoped(select(Institution), actor).where(Institution.code == code)
    found: Institution | None = session.scalar(stmt.options(selectinload(Institution.county)))
    if found is None:
        raise Problem(404, f"no institution {code} in your counties")
    return found
