"""What every router shares: role checks, county scoping in SQL, cursor pages, idempotency.

Scoping is a WHERE clause added to the query (属地原则, Jincheng art. 4, Jilin art. 4), never a
filter over a response: a county operator's query cannot select another county's rows, and a
row outside the caller's counties answers 404 exactly like a row that does not exist."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Header, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, delete, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.auth import ActorDep
from api.problems import Problem
from core.actors import Actor
from core.models import County, IdempotencyRecord, Institution, Role
from core.settings import get_settings
from core.timeutil import utcnow

T = TypeVar("T")

# ---------------------------------------------------------------- inputs

# Shared by every router: inputs that PostgreSQL would
# refuse (NUL bytes, ids beyond INTEGER) are refused here with a 422 instead of a 500.
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
NO_NUL = r"^[^\x00]*$"
INSTITUTION_CODE = r"^[A-Z]\d{11}$"
MAX_ID = 2**31 - 1  # INTEGER columns on PostgreSQL

CountyCode = Annotated[str | None, Query(pattern=r"^\d{6}$", description="county code")]
InstCode = Annotated[
    str | None,
    Query(pattern=INSTITUTION_CODE, description="institution code (a letter and 11 digits)"),
]
InstPath = Annotated[
    str, Path(pattern=INSTITUTION_CODE, description="institution code (a letter and 11 digits)")
]
Name = Annotated[str | None, Query(min_length=1, max_length=100, pattern=NO_CONTROL)]
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]


# ---------------------------------------------------------------- roles

WRITERS = (Role.CITY_ADMIN, Role.COUNTY_OPERATOR)


def require(*roles: Role) -> Callable[[Actor], Actor]:
    """A dependency that lets only ``roles`` through (auditors and viewers never write)."""
    allowed = frozenset(roles)

    def check(actor: ActorDep) -> Actor:
        if actor.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise Problem(403, f"role {actor.role.value} may not do this; needs one of: {names}")
        return actor

    return check


ReaderDep = ActorDep
WriterDep = Annotated[Actor, Depends(require(*WRITERS))]
AdminDep = Annotated[Actor, Depends(require(Role.CITY_ADMIN))]
AuditReaderDep = Annotated[Actor, Depends(require(Role.CITY_ADMIN, Role.AUDITOR))]

# ---------------------------------------------------------------- scoping


def scoped_institution_ids(actor: Actor) -> Select[Any]:
    """The ids of the institutions ``actor`` may see, as a subquery."""
    return (
        select(Institution.id)
        .join(County, Institution.county_id == County.id)
        .where(County.code.in_(sorted(actor.county_codes)))
    )


def in_scope(column: Any, actor: Actor) -> ColumnElement[bool]:
    """``column`` (an institution id) lies in ``actor``'s counties; always true city-wide.

    Rows with no institution (NULL) are city-level and hidden from county-scoped callers."""
    if actor.city_wide:
        return true()
    return column.in_(scoped_institution_ids(actor))


def scoped(stmt: Select[Any], actor: Actor) -> Select[Any]:
    """Restrict a query over Institution to the caller's counties."""
    if actor.city_wide:
        return stmt
    return stmt.where(in_scope(Institution.id, actor))


def may_act_on(session: Session, actor: Actor, institution_id: int | None) -> None:
    """Refuse a change on an institution outside the caller's counties (404, see module doc)."""
    if actor.role == Role.CITY_ADMIN:
        return
    if actor.role != Role.COUNTY_OPERATOR or institution_id is None:
        raise Problem(403, f"role {actor.role.value} may not change this")
    found = session.scalar(
        select(Institution.id).where(
            Institution.id == institution_id, in_scope(Institution.id, actor)
        )
    )
    if found is None:
        raise Problem(404, "no such object in your counties")


# ---------------------------------------------------------------- pages


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` back as ``cursor`` for the next one."""

    items: list[T]
    next_cursor: str | None = None


def encode_cursor(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(422, "cursor is not one this API handed out; start again without it") from exc


class PageParams:
    """``cursor`` and ``limit`` query parameters; the cursor is opaque to callers."""

    def __init__(
        self,
        cursor: Annotated[
            str | None, Query(max_length=200, description="next_cursor of the previous page")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> None:
        self.cursor = cursor
        self.limit = limit

    def after_id(self) -> int | None:
        if self.cursor is None:
            return None
        value = decode_cursor(self.cursor)
        if not isinstance(value, int):
            raise Problem(422, "cursor is not one this API handed out; start again without it")
        return value


PageDep = Annotated[PageParams, Depends()]


def page_by_id(
    session: Session,
    stmt: Select[Any],
    id_column: Any,
    params: PageParams,
    *,
    descending: bool = True,
) -> tuple[list[Any], str | None]:
    """Keyset pagination on an integer id (newest first by default): stable under inserts."""
    after = params.after_id()
    if after is not None:
        stmt = stmt.where(id_column < after if descending else id_column > after)
    stmt = stmt.order_by(id_column.desc() if descending else id_column.asc()).limit(
        params.limit + 1
    )
    rows: Sequence[Any] = list(session.scalars(stmt))
    more = len(rows) > params.limit
    rows = rows[: params.limit]
    next_cursor = encode_cursor(rows[-1].id) if more and rows else None
    return list(rows), next_cursor


# ---------------------------------------------------------------- idempotency


class Idempotency:
    """``Idempotency-Key`` on a POST: the first answer is stored and replayed to retries.

    Usage in a handler::

        if (replay := idem.replay(session, actor)) is not None:
            return replay
        ...do the work in ``session``...
        return idem.respond(201, body)

    The key row is inserted in the request's own transaction, so it commits with the work or
    not at all; a concurrent duplicate waits on the unique index and then replays. The same
    key with a different body is refused (422), as RFC draft-ietf-httpapi-idempotency-key says.
    """

    def __init__(self, key: str | None, method: str, path: str, body_hash: str) -> None:
        self.key = key
        self.method = method
        self.path = path
        self.body_hash = body_hash
        self._record: IdempotencyRecord | None = None

    def replay(self, session: Session, actor: Actor) -> JSONResponse | None:
        if not self.key:
            return None
        ttl = timedelta(hours=get_settings().idempotency_ttl_h)
        session.execute(
            delete(IdempotencyRecord)
            .where(IdempotencyRecord.created_at < utcnow() - ttl)
            .execution_options(synchronize_session=False)
        )
        existing = self._find(session, actor)
        if existing is None:
            rec = IdempotencyRecord(
                actor=actor.name,
                key=self.key,
                method=self.method,
                path=self.path,
                request_hash=self.body_hash,
            )
            try:
                with session.begin_nested():
                    session.add(rec)
                    session.flush()
            except IntegrityError:
                existing = self._find(session, actor)
            else:
                self._record = rec
                return None
        if existing is None:  # pragma: no cover - the row vanished between insert and read
            raise Problem(409, "a request with this Idempotency-Key is in progress; retry shortly")
        if existing.request_hash != self.body_hash or existing.path != self.path:
            raise Problem(
                422,
                "this Idempotency-Key was used for a different request; use a new key",
            )
        if existing.status_code is None:
            raise Problem(409, "a request with this Idempotency-Key is in progress; retry shortly")
        return JSONResponse(
            existing.response_body,
            status_code=existing.status_code,
            headers={"Idempotent-Replayed": "true"},
        )

    def _find(self, session: Session, actor: Actor) -> IdempotencyRecord | None:
        found: IdempotencyRecord | None = session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.actor == actor.name, IdempotencyRecord.key == self.key
            )
        )
        return found

    def respond(self, status: int, body: Any) -> JSONResponse:
        encoded = jsonable_encoder(body)
        if self._record is not None:
            self._record.status_code = status
            self._record.response_body = encoded
        return JSONResponse(encoded, status_code=status)


async def idempotency(
    request: Request,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=200,
            description="retries with the same key get the first answer back",
        ),
    ] = None,
) -> Idempotency:
    body = await request.body()
    digest = hashlib.sha256(body).hexdigest()
    return Idempotency(key, request.method, request.url.path, digest)


IdempotencyDep = Annotated[Idempotency, Depends(idempotency)]
