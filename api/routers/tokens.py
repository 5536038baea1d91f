"""API tokens (city_admin only): list, create (the token is shown once), revoke.

Only the SHA-256 of a token is stored, so a lost token cannot be shown again: create a new one
and revoke the old. ``POST /tokens`` takes no ``Idempotency-Key``: a replayed answer would have
to store the clear token, which must never be written anywhere."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from api.auth import SessionDep
from api.deps import AdminDep, IdPath, Page, PageDep, page_by_id
from api.problems import Problem
from core import audit
from core.models import ApiToken, Role, User
from core.timeutil import utcnow
from core.tokens import create_token, hash_token

router = APIRouter(tags=["tokens"])

County = Annotated[str, Field(pattern=r"^\d{6}$", description="county code")]


class TokenIn(BaseModel):
    name: str | None = Field(
        None, min_length=1, max_length=100, description="user name; reused if it exists"
    )
    role: Role
    counties: list[County] = Field(
        default_factory=list, max_length=200, description="county_operator: at least one"
    )
    expires_days: int | None = Field(None, ge=1, le=3650, description="default: never")


class TokenOut(BaseModel):
    """A token as stored: never the token itself or its hash."""

    id: int
    prefix: str
    user: str
    role: Role
    counties: list[str]
    disabled: bool
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="shown once; store it now, it cannot be shown again")


def _out(row: ApiToken) -> dict[str, Any]:
    user = row.user
    return {
        "id": row.id,
        "prefix": row.prefix,
        "user": user.name,
        "role": user.role,
        "counties": sorted(c.code for c in user.counties),
        "disabled": user.disabled,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "revoked_at": row.revoked_at,
        "last_used_at": row.last_used_at,
    }


def _query() -> Any:
    return select(ApiToken).options(selectinload(ApiToken.user).selectinload(User.counties))


@router.get("/tokens", response_model=Page[TokenOut])
def list_tokens(
    session: SessionDep,
    actor: AdminDep,
    page: PageDep,
    user: Annotated[str | None, Query(max_length=100)] = None,
    active: Annotated[bool | None, Query(description="only unrevoked (true) or revoked")] = None,
) -> Page[TokenOut]:
    stmt = _query()
    if user:
        stmt = stmt.where(ApiToken.user.has(User.name == user))
    if active is True:
        stmt = stmt.where(ApiToken.revoked_at.is_(None))
    elif active is False:
        stmt = stmt.where(ApiToken.revoked_at.is_not(None))
    rows, cursor = page_by_id(session, stmt, ApiToken.id, page)
    return Page[TokenOut](items=[TokenOut(**_out(r)) for r in rows], next_cursor=cursor)


@router.post("/tokens", status_code=201, response_model=TokenCreated)
def create(body: TokenIn, session: SessionDep, actor: AdminDep) -> JSONResponse:
    """A new token for a (new or existing) user; the clear token is in this answer only."""
    if body.counties and body.role in (Role.CITY_ADMIN, Role.AUDITOR):
        raise Problem(422, f"role {body.role.value} is city-wide: leave counties empty for it")
    _, token = create_token(
        session,
        role=body.role,
        counties=list(dict.fromkeys(body.counties)),
        name=body.name,
        actor=actor.name,
    )
    row = session.scalars(_query().where(ApiToken.token_hash == hash_token(token))).one()
    if body.expires_days is not None:
        row.expires_at = utcnow() + timedelta(days=body.expires_days)
        session.flush()
    out = TokenCreated(**_out(row), token=token)
    return JSONResponse(
        jsonable_encoder(out),
        status_code=201,
        headers={"Cache-Control": "no-store", "Location": f"/api/v1/tokens/{row.id}"},
    )


@router.delete("/tokens/{token_id}", response_model=TokenOut)
def revoke(token_id: IdPath, session: SessionDep, actor: AdminDep) -> TokenOut:
    """Revoke a token now; its next use answers 401. Revoking twice changes nothing."""
    row = session.scalar(_query().where(ApiToken.id == token_id))
    if row is None:
        raise Problem(404, f"no token {token_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.record(
            session,
            actor=actor.name,
            action="token.revoke",
            object_type="user",
            object_id=row.user_id,
            reason=f"token {row.prefix}… revoked",
            # keys naming "token" are masked by core.audit's scrubber: use neutral names
            data={"api_key_id": row.id, "prefix": row.prefix, "user": row.user.name},
        )
    return TokenOut(**_out(row))
