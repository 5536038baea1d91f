"""The one-observation-at-a-time store and judge path as it was before the bulk rewrite
(commit d12156b / b9e5878), kept verbatim as the oracle the bulk path must agree with and as
the baseline of bench/netflow_store.py. It reuses the engine's private helpers for everything
after the decision (recording, escalation), so a difference can only come from the parts the
bulk path replaced: loading, key walk, corroboration, open-case lookup and the upsert."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.netflow.aggregate import Aggregate
from collector.netflow.store import ExporterRegistry, observation_key
from core import audit
from core.models import (
    Case,
    Detection,
    Institution,
    Link,
    Observation,
    ObservationSource,
)
from core.timeutil import as_utc
from rules import engine
from rules.detection import KindRule
from rules.policy import PolicyStore, resolve_store


def observe_one_by_one(
    session: Session,
    observations: Sequence[Observation],
    *,
    actor: str,
    store: PolicyStore | None = None,
) -> list[Detection]:
    policies = resolve_store(store)
    created: list[Detection] = []
    for obs in observations:
        det = _judge(session, obs, actor, policies)
        if det is not None:
            created.append(det)
    return created


def _judge(
    session: Session, obs: Observation, actor: str, policies: PolicyStore
) -> Detection | None:
    if obs.id is None:
        raise ValueError("observe() needs flushed observations (with ids)")
    institution_id = obs.institution_id
    if institution_id is None and obs.link_id is not None:
        link = session.get(Link, obs.link_id)
        institution_id = link.institution_id if link is not None else None
    if institution_id is None:
        return None
    institution = session.get(Institution, institution_id)
    if institution is None:
        return None
    policy = policies.for_institution(institution)
    rule = policy.detection.kinds.get(obs.kind)
    if rule is None:
        return None
    if policy.detection.is_ignored(obs.src_addr) or policy.detection.is_ignored(obs.dst_addr):
        return None
    if obs.source == ObservationSource.NETFLOW and obs.flows < rule.detect_min_flows:
        return None

    key = _observation_key(session, obs)
    existing = session.scalar(select(Detection).where(Detection.key == key))
    if existing is not None:
        if not existing.corroborated and _corroborated(session, obs, rule):
            existing.corroborated = True
            audit.record(
                session,
                actor=actor,
                action="detection.corroborated",
                object_type="detection",
                object_id=existing.id,
                reason=f"observation {obs.id} now meets the corroboration of {obs.kind}",
                data={"flows": obs.flows, "octets": obs.octets},
            )
            if existing.case_id is not None:
                case = session.get(Case, existing.case_id)
                if case is not None:
                    engine._upgrade_cuts(session, case, policy, actor)
        return None

    det = Detection(
        key=key,
        kind=obs.kind,
        institution_id=institution.id,
        link_id=obs.link_id,
        observation_id=obs.id,
        source=obs.source,
        severity=rule.severity,
        corroborated=_corroborated(session, obs, rule),
        evidence=engine._observation_evidence(obs),
        detected_at=as_utc(obs.last_seen),
    )
    return engine._record(session, det, institution, policy, actor)


def _observation_key(session: Session, obs: Observation) -> str:
    key = f"obs:{obs.id}"
    while True:
        det = session.scalar(select(Detection).where(Detection.key == key))
        if det is None or det.case_id is None:
            return key
        case = session.get(Case, det.case_id)
        if case is None or case.is_open or case.closed_at is None:
            return key
        if as_utc(obs.last_seen) <= as_utc(case.closed_at):
            return key
        key = f"obs:{obs.id}:after-case:{case.id}"


def _corroborated(session: Session, obs: Observation, rule: KindRule) -> bool:
    c = rule.corroboration
    if obs.source in c.trusted_sources:
        return True
    duration = (as_utc(obs.last_seen) - as_utc(obs.first_seen)).total_seconds()
    values = {"flows": obs.flows, "octets": obs.octets, "duration_s": duration}
    thresholds = c.thresholds
    if thresholds and all(values[k] >= v for k, v in thresholds.items()):
        return True
    if c.second_source and obs.institution_id is not None:
        within = timedelta(seconds=c.second_source_within_s)
        other = session.scalar(
            select(Observation.id)
            .where(
                Observation.institution_id == obs.institution_id,
                Observation.kind == obs.kind,
                Observation.source != obs.source,
                Observation.last_seen >= as_utc(obs.first_seen) - within,
                Observation.first_seen <= as_utc(obs.last_seen) + within,
            )
            .limit(1)
        )
        if other is not None:
            return True
    return False


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def store_one_by_one(
    session: Session,
    aggregates: Sequence[Aggregate],
    registry: ExporterRegistry,
    sample_size: int = 5,
) -> list[Observation]:
    """The ORM select-then-add/update upsert of collector/netflow/store.py before the rewrite."""
    if not aggregates:
        return []
    by_key = {observation_key(a): a for a in aggregates}
    existing: dict[str, Observation] = {}
    keys = list(by_key)
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        for row in session.scalars(select(Observation).where(Observation.key.in_(chunk))):
            existing[row.key] = row
    out = []
    for key, agg in by_key.items():
        exporter = registry.match(agg.exporter[0], agg.exporter[1], 5)
        obs = existing.get(key)
        if obs is None:
            obs = Observation(
                key=key,
                source=ObservationSource.NETFLOW,
                kind=agg.kind,
                institution_id=agg.institution_id,
                link_id=agg.link_id,
                exporter_id=exporter.id if exporter else None,
                device_id=exporter.device_id if exporter else None,
                src_addr=agg.src_addr,
                dst_addr=agg.dst_addr,
                dst_port=agg.dst_port,
                protocol=agg.protocol,
                first_seen=_dt(agg.first_ms),
                last_seen=_dt(agg.last_ms),
                flows=agg.flows,
                packets=agg.packets,
                octets=agg.octets,
                sample=list(agg.sample[:sample_size]),
            )
            session.add(obs)
        else:
            first, last = _dt(agg.first_ms), _dt(agg.last_ms)
            if _aware(obs.first_seen) > first:
                obs.first_seen = first
            if _aware(obs.last_seen) < last:
                obs.last_seen = last
            obs.flows += agg.flows
            obs.packets += agg.packets
            obs.octets += agg.octets
            room = sample_size - len(obs.sample or [])
            if room > 0:
                obs.sample = list(obs.sample or []) + agg.sample[:room]
        out.append(obs)
    session.flush()
    return out
