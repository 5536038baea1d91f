"""Escalation policies, read-only: which exist, which counties use each, and their content.

Policies are files (``rules/policies`` and ``EDGEWARDEN_POLICY_DIRS``); they change by editing
and checking a file (``edgewarden policy check``), never through REST. A county operator sees
only its own counties among the users of a policy."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import SessionDep
from api.deps import Page, ReaderDep
from api.problems import Problem
from core.actors import Actor
from core.models import County
from core.settings import get_settings
from rules.errors import PolicyError
from rules.policy import default_store

router = APIRouter(tags=["policies"])


class PolicyOut(BaseModel):
    name: str
    title: str | None
    source: str | None
    counties: list[str]  # county codes whose effective policy this is (yours only, if scoped)
    error: str | None = None  # why the file does not load, if it does not


class PolicyDetailOut(PolicyOut):
    policy: dict[str, Any]


def counties_by_policy(session: Session, actor: Actor) -> dict[str, list[str]]:
    default = get_settings().default_policy
    counties = session.scalars(select(County).order_by(County.code)).all()  # parents in the map
    out: dict[str, list[str]] = {}
    for county in counties:
        if actor.city_wide or county.code in actor.county_codes:
            out.setdefault(county.effective_policy() or default, []).append(county.code)
    return out


@router.get("/policies", response_model=Page[PolicyOut])
def list_policies(session: SessionDep, actor: ReaderDep) -> Page[PolicyOut]:
    """Every policy in one page (there are a handful)."""
    store = default_store()
    users = counties_by_policy(session, actor)
    items = []
    for name in store.names():
        try:
            policy = store.load(name)
        except PolicyError as exc:
            items.append(
                PolicyOut(
                    name=name, title=None, source=None, counties=users.get(name, []), error=str(exc)
                )
            )
            continue
        items.append(
            PolicyOut(
                name=name, title=policy.title, source=policy.source, counties=users.get(name, [])
            )
        )
    return Page[PolicyOut](items=items, next_cursor=None)


@router.get("/policies/{name}", response_model=PolicyDetailOut)
def get_policy(name: str, session: SessionDep, actor: ReaderDep) -> PolicyDetailOut:
    store = default_store()
    if name not in store.names():
        raise Problem(404, f"no policy named {name!r}; GET /api/v1/policies lists them")
    policy = store.load(name)  # an invalid file answers 422 with every problem listed
    return PolicyDetailOut(
        name=name,
        title=policy.title,
        source=policy.source,
        counties=counties_by_policy(session, actor).get(name, []),
        policy=policy.model_dump(mode="json", by_alias=True),
    )
