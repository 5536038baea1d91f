"""Webhook subscriptions, their deliveries and the dead-letter list (issue #7).

City administrators manage subscriptions; auditors may read them. The signing secret is
write-only, and query values of the URL (WeCom's ``key``, DingTalk's ``access_token`` are
credentials) are masked in every answer and audit entry (Jilin art. 33)."""

from __future__ import annotations

import secrets as pysecrets
import urllib.parse
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, select

from api.auth import SessionDep
from api.deps import AdminDep, AuditReaderDep, IdPath, Page, PageDep, page_by_id
from api.problems import Problem
from api.webhooks import events
from api.webhooks.dispatcher import Job, apply_result, send_now
from core import audit
from core.crypto import secret_box
from core.models import County, WebhookDelivery, WebhookSubscription
from core.settings import get_settings
from core.timeutil import utcnow

router = APIRouter(tags=["webhooks"])

EventType = Literal[
    "detection.created",
    "case.opened",
    "case.transitioned",
    "action.verified",
    "action.failed",
    "deadline.overdue",
]
Format = Literal["generic", "wecom", "dingtalk"]
DeliveryState = Literal["pending", "delivered", "dead"]
CountyCode = Annotated[str, Field(pattern=r"^\d{6}$")]
_URL = r"^https?://[^\s/?#]+[^\s]*$"
OBJECT = "webhook_subscription"


def _parsable(url: str) -> str:
    """Refuse URLs the HTTP client could not use (e.g. a malformed IPv6 host) with a 422."""
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises on a bad port
    except ValueError as exc:
        raise ValueError(f"not a usable URL: {exc}") from None
    if not parts.hostname:
        raise ValueError("not a usable URL: no host")
    return url


def redact_url(url: str) -> str:
    """The URL with every query value replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if not parts.query:
        return url
    query = "&".join(
        f"{k}=***" for k, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    )
    return urllib.parse.urlunsplit(parts._replace(query=query))


WebhookUrl = Annotated[str, Field(max_length=500, pattern=_URL), AfterValidator(_parsable)]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    url: WebhookUrl = Field(description="http(s) URL of the receiver")
    event_types: list[EventType] = Field(min_length=1)
    format: Format = "generic"
    secret: str | None = Field(
        default=None,
        min_length=8,
        max_length=200,
        description="HMAC key (generic, required) or DingTalk's SEC… signing secret; write-only",
    )
    county_codes: list[CountyCode] = Field(default_factory=list, description="empty: all")
    enabled: bool = True

    @field_validator("event_types", "county_codes")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return sorted(set(value))


class WebhookPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    url: WebhookUrl | None = None
    event_types: list[EventType] | None = Field(default=None, min_length=1)
    format: Format | None = None
    secret: str | None = Field(default=None, min_length=8, max_length=200)
    county_codes: list[CountyCode] | None = None
    enabled: bool | None = None


class WebhookOut(BaseModel):
    id: int
    name: str
    url: str = Field(description="query values masked")
    event_types: list[str]
    format: str
    county_codes: list[str]
    enabled: bool
    has_secret: bool
    created_by: str
    created_at: datetime

    @classmethod
    def of(cls, sub: WebhookSubscription) -> WebhookOut:
        return cls(
            id=sub.id,
            name=sub.name,
            url=redact_url(sub.url),
            event_types=list(sub.event_types),
            format=sub.format,
            county_codes=list(sub.county_codes),
            enabled=sub.enabled,
            has_secret=bool(sub.secret_enc),
            created_by=sub.created_by,
            created_at=sub.created_at,
        )


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    subscription_id: int
    event_id: str
    event_type: str
    state: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]


def _get(session: SessionDep, webhook_id: IdPath) -> WebhookSubscription:
    sub = session.get(WebhookSubscription, webhook_id)
    if sub is None:
        raise Problem(404, f"no webhook subscription {webhook_id}")
    return sub


def _check(session: SessionDep, sub: WebhookSubscription, self_id: int | None = None) -> None:
    """Rules that span fields: a generic receiver must be able to check the signature, and
    county filters must name counties of the inventory."""
    if sub.format == "generic" and not sub.secret_enc:
        raise Problem(422, "a generic webhook needs a secret (at least 8 characters) to sign")
    if sub.county_codes:
        known = set(session.scalars(select(County.code).where(County.code.in_(sub.county_codes))))
        unknown = sorted(set(sub.county_codes) - known)
        if unknown:
            raise Problem(422, f"unknown county codes: {', '.join(unknown)}")
    same_name = select(WebhookSubscription.id).where(WebhookSubscription.name == sub.name)
    if self_id is not None:
        same_name = same_name.where(WebhookSubscription.id != self_id)
    clash = session.scalar(same_name)
    if clash is not None:
        raise Problem(409, f"a webhook named {sub.name!r} exists already (id {clash})")


def _summary(sub: WebhookSubscription) -> dict[str, Any]:
    return {
        "name": sub.name,
        "url": redact_url(sub.url),
        "format": sub.format,
        "event_types": list(sub.event_types),
        "county_codes": list(sub.county_codes),
        "enabled": sub.enabled,
    }


@router.get("/webhooks", response_model=Page[WebhookOut])
def list_webhooks(session: SessionDep, actor: AuditReaderDep, page: PageDep) -> Page[WebhookOut]:
    rows, cursor = page_by_id(
        session, select(WebhookSubscription), WebhookSubscription.id, page, descending=False
    )
    return Page[WebhookOut](items=[WebhookOut.of(r) for r in rows], next_cursor=cursor)


@router.post("/webhooks", response_model=WebhookOut, status_code=201)
def create_webhook(body: WebhookIn, session: SessionDep, actor: AdminDep) -> WebhookOut:
    sub = WebhookSubscription(
        name=body.name,
        url=body.url,
        event_types=list(body.event_types),
        format=body.format,
        secret_enc=secret_box().encrypt(body.secret) if body.secret else None,
        county_codes=list(body.county_codes),
        enabled=body.enabled,
        created_by=actor.name,
        created_at=utcnow(),
    )
    _check(session, sub)
    session.add(sub)
    session.flush()
    audit.record(
        session,
        actor=actor.name,
        action="webhook.create",
        object_type=OBJECT,
        object_id=sub.id,
        reason=f"webhook {sub.name} for {', '.join(sub.event_types)}",
        data=_summary(sub),
    )
    return WebhookOut.of(sub)


@router.get("/webhooks/{webhook_id}", response_model=WebhookOut)
def get_webhook(webhook_id: IdPath, session: SessionDep, actor: AuditReaderDep) -> WebhookOut:
    return WebhookOut.of(_get(session, webhook_id))


@router.patch("/webhooks/{webhook_id}", response_model=WebhookOut)
def update_webhook(
    webhook_id: IdPath, body: WebhookPatch, session: SessionDep, actor: AdminDep
) -> WebhookOut:
    sub = _get(session, webhook_id)
    changes = body.model_dump(exclude_unset=True)
    for name in ("name", "url", "format", "enabled"):
        if name in changes:
            if changes[name] is None:
                raise Problem(422, f"{name} cannot be null")
            setattr(sub, name, changes[name])
    if "event_types" in changes:
        if not changes["event_types"]:
            raise Problem(422, "event_types cannot be null or empty")
        sub.event_types = sorted(set(changes["event_types"]))
    if "county_codes" in changes:
        sub.county_codes = sorted(set(changes["county_codes"] or []))
    if "secret" in changes:  # null clears it (allowed for WeCom and unsigned DingTalk)
        secret = changes["secret"]
        sub.secret_enc = secret_box().encrypt(secret) if secret else None
    with session.no_autoflush:
        _check(session, sub, self_id=sub.id)
    session.flush()
    audit.record(
        session,
        actor=actor.name,
        action="webhook.update",
        object_type=OBJECT,
        object_id=sub.id,
        reason=f"changed {', '.join(sorted(changes)) or 'nothing'}",
        data={**_summary(sub), "secret_changed": "secret" in changes},
    )
    return WebhookOut.of(sub)


@router.delete("/webhooks/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: IdPath, session: SessionDep, actor: AdminDep) -> Response:
    sub = _get(session, webhook_id)
    gone = session.execute(
        delete(WebhookDelivery)
        .where(WebhookDelivery.subscription_id == sub.id)
        .execution_options(synchronize_session=False)
    )
    summary = _summary(sub)
    session.delete(sub)
    session.flush()
    audit.record(
        session,
        actor=actor.name,
        action="webhook.delete",
        object_type=OBJECT,
        object_id=webhook_id,
        reason=f"webhook {summary['name']} deleted with its deliveries",
        data={**summary, "deliveries_deleted": int(getattr(gone, "rowcount", 0) or 0)},
    )
    return Response(status_code=204)


@router.get("/webhooks/{webhook_id}/deliveries", response_model=Page[DeliveryOut])
def list_deliveries(
    webhook_id: IdPath,
    session: SessionDep,
    actor: AuditReaderDep,
    page: PageDep,
    state: Annotated[DeliveryState | None, Query(description="dead: the dead-letter list")] = None,
) -> Page[DeliveryOut]:
    _get(session, webhook_id)
    stmt = select(WebhookDelivery).where(WebhookDelivery.subscription_id == webhook_id)
    if state:
        stmt = stmt.where(WebhookDelivery.state == state)
    rows, cursor = page_by_id(session, stmt, WebhookDelivery.id, page)
    return Page[DeliveryOut](
        items=[DeliveryOut.model_validate(r) for r in rows], next_cursor=cursor
    )


@router.post("/webhooks/deliveries/{delivery_id}/retry", response_model=DeliveryOut)
def retry_delivery(delivery_id: IdPath, session: SessionDep, actor: AdminDep) -> WebhookDelivery:
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise Problem(404, f"no webhook delivery {delivery_id}")
    if delivery.state != "dead":
        raise Problem(
            409, f"delivery {delivery_id} is {delivery.state}; only dead deliveries are retried"
        )
    delivery.state = "pending"
    delivery.attempts = 0
    delivery.next_attempt_at = utcnow()
    session.flush()
    audit.record(
        session,
        actor=actor.name,
        action="webhook.retry",
        object_type="webhook_delivery",
        object_id=delivery.id,
        reason=f"dead delivery of event {delivery.event_id} queued again",
        data={"subscription": delivery.subscription_id, "event_type": delivery.event_type},
    )
    return delivery


class PingOut(BaseModel):
    delivered: bool
    status: int | None
    error: str | None
    delivery: DeliveryOut


@router.post("/webhooks/{webhook_id}/test", response_model=PingOut)
def test_webhook(webhook_id: IdPath, session: SessionDep, actor: AdminDep) -> PingOut:
    """Send a ``ping`` event now and answer with the receiver's verdict. A failed ping lands
    in the dead-letter list (it is not retried on its own)."""
    settings = get_settings()
    sub = _get(session, webhook_id)
    now = utcnow()
    payload = events.ping(sub.name, now.isoformat(), pysecrets.token_hex(8))
    delivery = WebhookDelivery(
        subscription_id=sub.id,
        event_id=payload["id"],
        event_type=events.PING,
        payload=payload,
        state="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    session.flush()
    audit.record(
        session,
        actor=actor.name,
        action="webhook.test",
        object_type=OBJECT,
        object_id=sub.id,
        reason=f"test ping to webhook {sub.name}",
        data={"delivery": delivery.id},
    )
    secret = secret_box(settings).decrypt(sub.secret_enc) if sub.secret_enc else None
    job = Job(delivery.id, sub.id, sub.format, sub.url, secret, payload)
    session.commit()  # never hold the database while waiting on a receiver
    result = send_now(job, settings)
    outcome = apply_result(delivery, result, now, settings)
    if outcome == "retry":
        delivery.state = "dead"
    session.flush()
    return PingOut(
        delivered=result.ok,
        status=result.status,
        error=result.error,
        delivery=DeliveryOut.model_validate(delivery),
    )
