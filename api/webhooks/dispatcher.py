"""The webhook dispatcher: fan audit events out to deliveries, then send the due deliveries.

Fan-out reads ``audit_events`` past the ``webhooks`` cursor and inserts one delivery per
matching subscription in the same transaction that advances the cursor; the cursor row is
locked first, so several dispatchers on PostgreSQL take turns and the unique
(subscription, event) index makes a repeat harmless. Audit ids are assigned under the chain's
head lock, so an id is visible only after every smaller one is: the cursor never skips one.

Sending claims due deliveries with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL and a
guarded UPDATE everywhere), posts them with httpx outside any transaction, and records each
answer: delivered, retry after ``webhook_backoff_s × 2^(attempts-1)`` (±20 % jitter), or dead
after ``webhook_max_attempts``. A receiver that fails gives back the rest of its batch, so a
slow or broken one costs one timeout per round and never holds up the others."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from prometheus_client import Counter
from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from api.webhooks import events, formats, signing
from core.crypto import secret_box
from core.db import session_scope
from core.errors import ConfigError
from core.models import AuditEvent, EventCursor, WebhookDelivery, WebhookSubscription
from core.settings import Settings, get_settings
from core.timeutil import as_utc, utcnow

log = logging.getLogger(__name__)

CURSOR = "webhooks"
FANOUT_BATCH = 500
FANOUT_ROUNDS = 20  # batches per dispatch_once, so a long backlog does not starve sending
CLAIM_BATCH = 200
PER_SUBSCRIPTION = 5  # deliveries per receiver per round, sent in event order
CONCURRENCY = 16  # requests in flight across receivers
MAX_BACKOFF_S = 6 * 3600.0
MAX_ANSWER_BYTES = 65536
USER_AGENT = "EdgeWarden-Webhook/0.1"

FAILURES = Counter(
    "edgewarden_webhook_failures_total",
    "Webhook delivery attempts that failed (HTTP error, timeout, robot errcode != 0)",
    ["format"],
)
DELIVERIES = Counter(
    "edgewarden_webhook_deliveries_total",
    "Webhook delivery attempts by result: delivered, retry (scheduled again) or dead",
    ["result"],
)


@dataclass
class DispatchStats:
    """What one round did; ``busy`` tells the loop to go again without sleeping."""

    events: int = 0
    queued: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0

    @property
    def busy(self) -> bool:
        return bool(self.queued or self.delivered or self.retried or self.dead)


@dataclass
class Job:
    """One claimed delivery, with everything needed to send it outside a transaction."""

    delivery_id: int
    subscription_id: int
    fmt: str
    url: str
    secret: str | None
    payload: dict[str, Any]
    error: str | None = None  # set when it cannot even be sent (undecryptable secret)


@dataclass
class Result:
    job: Job
    ok: bool = False
    status: int | None = None
    error: str | None = None
    released: bool = False


@dataclass
class Request:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


# --- requests ------------------------------------------------------------------------------


def prepare(
    fmt: str, url: str, secret: str | None, payload: dict[str, Any], delivery_id: int
) -> Request:
    """The exact request for one delivery: body bytes, our headers, signatures."""
    ts = str(int(time.time()))
    body = formats.encode(formats.render(fmt, payload))
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "X-EdgeWarden-Event": str(payload["type"]),
        "X-EdgeWarden-Delivery": str(delivery_id),
        "X-EdgeWarden-Timestamp": ts,
    }
    if fmt == "generic" and secret:
        headers["X-EdgeWarden-Signature"] = signing.generic_signature(secret, ts, body)
    if fmt == "dingtalk" and secret:
        url = signing.dingtalk_url(url, secret)
    return Request(url, headers, body)


async def send_one(client: httpx.AsyncClient, job: Job) -> Result:
    """POST one delivery; any network error or refusal is a failed attempt, never an exception."""
    if job.error is not None:
        return Result(job, error=job.error)
    req = prepare(job.fmt, job.url, job.secret, job.payload, job.delivery_id)
    try:
        async with client.stream("POST", req.url, content=req.body, headers=req.headers) as resp:
            answer = b""
            async for chunk in resp.aiter_bytes():
                answer += chunk
                if len(answer) >= MAX_ANSWER_BYTES:
                    break
            ok, error = formats.outcome(job.fmt, resp.status_code, answer)
            return Result(job, ok=ok, status=resp.status_code, error=error)
    except httpx.TimeoutException:
        return Result(job, error="timed out")
    except httpx.HTTPError as exc:
        return Result(job, error=f"{type(exc).__name__}: {exc}"[:500])


async def _send_all(jobs: list[Job], settings: Settings) -> list[Result]:
    if not jobs:
        return []
    by_sub: dict[int, list[Job]] = defaultdict(list)
    for job in jobs:
        by_sub[job.subscription_id].append(job)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one_receiver(queue: list[Job], client: httpx.AsyncClient) -> list[Result]:
        results: list[Result] = []
        for i, job in enumerate(queue):
            async with gate:
                result = await send_one(client, job)
            results.append(result)
            if not result.ok:  # give the rest back: this receiver is failing right now
                results += [Result(j, released=True) for j in queue[i + 1 :]]
                break
        return results

    timeout = httpx.Timeout(settings.webhook_timeout_s)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        groups = await asyncio.gather(*(one_receiver(q, client) for q in by_sub.values()))
    return [r for group in groups for r in group]


# --- fan-out -------------------------------------------------------------------------------


def _insert(session: Session, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _lock_cursor(session: Session, now: datetime) -> EventCursor:
    session.execute(
        _insert(session, EventCursor)
        .values(name=CURSOR, last_id=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    # The UPDATE takes the row lock (PostgreSQL) or the write lock (SQLite) before reading.
    session.execute(
        update(EventCursor)
        .where(EventCursor.name == CURSOR)
        .values(last_id=EventCursor.last_id)
        .execution_options(synchronize_session=False)
    )
    return session.execute(
        select(EventCursor)
        .where(EventCursor.name == CURSOR)
        .execution_options(populate_existing=True)
    ).scalar_one()


def _wants(sub: WebhookSubscription, kind: str, at: datetime) -> bool:
    if sub.event_types and kind not in sub.event_types:
        return False
    return as_utc(at) >= as_utc(sub.created_at)  # events from before the subscription are not its


def fan_out(session: Session, now: datetime) -> tuple[int, int, bool]:
    """One batch: (events seen, deliveries queued, more to read) — the caller commits."""
    cursor = _lock_cursor(session, now)
    high = session.scalar(select(func.max(AuditEvent.id))) or 0
    if high <= cursor.last_id:
        return 0, 0, False
    rows = list(
        session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.id > cursor.last_id,
                AuditEvent.id <= high,
                or_(
                    AuditEvent.action.in_(events.audit_actions_prefilter()),
                    AuditEvent.action.like("case.%"),
                ),
            )
            .order_by(AuditEvent.id)
            .limit(FANOUT_BATCH)
        )
    )
    more = len(rows) == FANOUT_BATCH
    subs = list(session.scalars(select(WebhookSubscription).where(WebhookSubscription.enabled)))
    seen, values = 0, []
    for audit in rows:
        kind = events.event_type(audit.action)
        if kind is None:
            continue
        seen += 1
        targets = [s for s in subs if _wants(s, kind, audit.at)]
        if not targets:
            continue
        payload = events.build(session, audit)
        if payload is None:
            continue
        for sub in targets:
            if sub.county_codes and payload["county_code"] not in sub.county_codes:
                continue
            values.append(
                {
                    "subscription_id": sub.id,
                    "event_id": payload["id"],
                    "event_type": kind,
                    "payload": payload,
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
            )
    queued = 0
    if values:
        inserted = session.scalars(
            _insert(session, WebhookDelivery)
            .values(values)
            .on_conflict_do_nothing(index_elements=["subscription_id", "event_id"])
            .returning(WebhookDelivery.id)
        ).all()
        queued = len(inserted)
    cursor.last_id = rows[-1].id if more else high
    cursor.updated_at = now
    return seen, queued, more


def _fan_out_all(database_url: str, now: datetime, stats: DispatchStats) -> None:
    for _ in range(FANOUT_ROUNDS):
        with session_scope(database_url) as session:
            seen, queued, more = fan_out(session, now)
        stats.events += seen
        stats.queued += queued
        if not more:
            return


# --- claim and record ----------------------------------------------------------------------


def _lease(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.webhook_timeout_s * (PER_SUBSCRIPTION + 1) + 30)


def claim(database_url: str, now: datetime, settings: Settings) -> list[Job]:
    """Take due deliveries of enabled subscriptions, at most PER_SUBSCRIPTION per receiver."""
    with session_scope(database_url) as session:
        due = session.execute(
            select(WebhookDelivery.id, WebhookDelivery.subscription_id)
            .join(WebhookSubscription, WebhookDelivery.subscription_id == WebhookSubscription.id)
            .where(
                WebhookDelivery.state == "pending",
                WebhookDelivery.next_attempt_at <= now,
                WebhookSubscription.enabled,
            )
            .order_by(WebhookDelivery.subscription_id, WebhookDelivery.id)
            .limit(CLAIM_BATCH)
            .with_for_update(skip_locked=True, of=WebhookDelivery)
        ).all()
        per_sub: dict[int, int] = defaultdict(int)
        claimed: list[int] = []
        until = now + _lease(settings)
        for delivery_id, sub_id in due:
            if per_sub[sub_id] >= PER_SUBSCRIPTION:
                continue
            won = session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery_id,
                    WebhookDelivery.state == "pending",
                    WebhookDelivery.next_attempt_at <= now,
                )
                .values(next_attempt_at=until)
                .execution_options(synchronize_session=False)
            )
            if getattr(won, "rowcount", 0) == 1:
                per_sub[sub_id] += 1
                claimed.append(delivery_id)
        if not claimed:
            return []
        rows = session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.id.in_(claimed))
            .order_by(WebhookDelivery.id)
        ).all()
        subs = {
            s.id: s
            for s in session.scalars(
                select(WebhookSubscription).where(
                    WebhookSubscription.id.in_({r.subscription_id for r in rows})
                )
            )
        }
        return [_job(r, subs[r.subscription_id], settings) for r in rows]


def _job(delivery: WebhookDelivery, sub: WebhookSubscription, settings: Settings) -> Job:
    secret, error = None, None
    if sub.secret_enc:
        try:
            secret = secret_box(settings).decrypt(sub.secret_enc)
        except ConfigError as exc:
            error = str(exc)
    return Job(delivery.id, sub.id, sub.format, sub.url, secret, dict(delivery.payload), error)


def backoff(settings: Settings, attempts: int) -> timedelta:
    """Delay before the next try after ``attempts`` failed ones: exponential with jitter."""
    base = settings.webhook_backoff_s * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(base * random.uniform(0.8, 1.2), MAX_BACKOFF_S))


def apply_result(
    delivery: WebhookDelivery, result: Result, now: datetime, settings: Settings
) -> str:
    """Update one delivery for one answer; returns delivered, retry, dead or released."""
    if result.released:
        delivery.next_attempt_at = now
        return "released"
    delivery.attempts += 1
    delivery.last_status = result.status
    delivery.last_error = result.error
    if result.ok:
        delivery.state = "delivered"
        delivery.delivered_at = utcnow()
        DELIVERIES.labels(result="delivered").inc()
        return "delivered"
    FAILURES.labels(format=result.job.fmt).inc()
    if delivery.attempts >= settings.webhook_max_attempts:
        delivery.state = "dead"
        DELIVERIES.labels(result="dead").inc()
        log.warning(
            "webhook delivery %s dead after %s attempts: %s",
            delivery.id,
            delivery.attempts,
            result.error,
        )
        return "dead"
    delivery.next_attempt_at = now + backoff(settings, delivery.attempts)
    DELIVERIES.labels(result="retry").inc()
    return "retry"


def record(
    database_url: str,
    results: list[Result],
    now: datetime,
    settings: Settings,
    stats: DispatchStats,
) -> None:
    if not results:
        return
    with session_scope(database_url) as session:
        for result in results:
            delivery = session.get(WebhookDelivery, result.job.delivery_id)
            if delivery is None or delivery.state != "pending":
                continue  # deleted with its subscription, or settled by a person meanwhile
            outcome = apply_result(delivery, result, now, settings)
            if outcome == "delivered":
                stats.delivered += 1
            elif outcome == "retry":
                stats.retried += 1
            elif outcome == "dead":
                stats.dead += 1
            else:
                stats.released += 1


# --- entry points --------------------------------------------------------------------------


async def dispatch_once(
    database_url: str, settings: Settings | None = None, now: datetime | None = None
) -> DispatchStats:
    """One round: fan out new audit events, send what is due (as of ``now``), record answers."""
    settings = settings or get_settings()
    when = as_utc(now) if now is not None else utcnow()
    stats = DispatchStats()
    await asyncio.to_thread(_fan_out_all, database_url, when, stats)
    jobs = await asyncio.to_thread(claim, database_url, when, settings)
    results = await _send_all(jobs, settings)
    await asyncio.to_thread(record, database_url, results, when, settings, stats)
    return stats


async def run_dispatcher(
    database_url: str, stop: asyncio.Event, settings: Settings | None = None
) -> None:
    """Dispatch until ``stop`` is set; a round in progress finishes (sends are bounded by the
    timeout), so shutdown never loses an answer. Errors are logged and the loop goes on."""
    settings = settings or get_settings()
    log.info("webhook dispatcher started (poll %.1f s)", settings.webhook_poll_s)
    while not stop.is_set():
        busy = False
        try:
            busy = (await dispatch_once(database_url, settings)).busy
        except Exception:
            log.exception("webhook dispatch round failed; trying again")
        if busy:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.webhook_poll_s)
    log.info("webhook dispatcher stopped")


async def _send_single(job: Job, settings: Settings) -> Result:
    timeout = httpx.Timeout(settings.webhook_timeout_s)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        return await send_one(client, job)


def send_now(job: Job, settings: Settings | None = None) -> Result:
    """Send one delivery from synchronous code (the API's test ping); bounded by the timeout."""
    return asyncio.run(_send_single(job, settings or get_settings()))
