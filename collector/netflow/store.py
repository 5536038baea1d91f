"""Inventory in, observations out: what the NetFlow pipeline reads from and writes to the
database. Kept apart from decoding so the pipeline itself stays free of SQL."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.netflow.aggregate import Aggregate
from collector.netflow.classify import Classifier
from core import audit
from core.models import BackbonePrefix, Exporter, IpAllocation, Observation, ObservationSource

log = logging.getLogger(__name__)

ACTOR = "collector:netflow"


@dataclass(frozen=True)
class RegisteredExporter:
    id: int
    address: str
    observation_domain: int
    sampling_rate: int
    device_id: int | None


@dataclass
class ExporterRegistry:
    """Enabled exporters by address; v9/IPFIX must also match the observation domain."""

    by_address: dict[str, list[RegisteredExporter]] = field(default_factory=dict)

    def knows(self, address: str) -> bool:
        return address in self.by_address

    def match(self, address: str, domain: int, version: int) -> RegisteredExporter | None:
        rows = self.by_address.get(address)
        if not rows:
            return None
        for row in rows:
            if row.observation_domain == domain:
                return row
        # NetFlow v5 has no observation domain (engine type/id instead): address is enough.
        return rows[0] if version == 5 else None

    def sampling(self) -> dict[str, int]:
        return {a: rows[0].sampling_rate for a, rows in self.by_address.items() if rows}


def load_registry(session: Session) -> ExporterRegistry:
    reg = ExporterRegistry()
    for e in session.scalars(select(Exporter).where(Exporter.enabled.is_(True))):
        reg.by_address.setdefault(e.address, []).append(
            RegisteredExporter(e.id, e.address, e.observation_domain, e.sampling_rate, e.device_id)
        )
    return reg


def load_classifier(session: Session, policy_name: str) -> Classifier:
    from rules.detection import load_detection_rules

    rules = load_detection_rules(policy_name)
    allocations = session.execute(select(IpAllocation.prefix, IpAllocation.institution_id)).all()
    backbone = session.scalars(select(BackbonePrefix.prefix)).all()
    return Classifier.build(
        allocations=[(p, i) for p, i in allocations],
        backbone=list(backbone),
        ignore=rules.ignore_addresses,
        remote_control=rules.remote_control,
        internet_vpn=rules.internet_vpn,
    )


def observation_key(agg: Aggregate) -> str:
    inst, kind, src, dst, port, proto = agg.key
    return f"netflow:{kind}:{inst}:{src}:{dst}:{port}:{proto}"


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def store_observations(
    session: Session,
    aggregates: Sequence[Aggregate],
    registry: ExporterRegistry,
    sample_size: int = 5,
) -> list[Observation]:
    """Upsert one Observation per aggregate key (counts add up, times widen, sample bounded)."""
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


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def alert_unknown_exporter(session: Session, address: str, datagrams: int) -> None:
    """One warning + audit entry per unregistered source (forged flows must not cut links)."""
    log.warning("NetFlow from unregistered exporter %s dropped (%d datagrams)", address, datagrams)
    audit.record(
        session,
        actor=ACTOR,
        action="netflow.unknown_exporter",
        object_type="exporter",
        object_id=address,
        reason="datagrams from an address that is not a registered, enabled exporter: dropped",
        data={"address": address, "datagrams": datagrams},
    )
