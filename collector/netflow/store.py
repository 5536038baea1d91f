"""Inventory in, observations out: what the NetFlow pipeline reads from and writes to the
database. Kept apart from decoding so the pipeline itself stays free of SQL."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import case, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from collector.netflow.aggregate import PER_SOURCE_KINDS, Aggregate
from collector.netflow.classify import Classifier
from core import audit
from core.models import (
    BackbonePrefix,
    Exporter,
    Interface,
    IpAllocation,
    Link,
    Observation,
    ObservationSource,
)
from core.timeutil import utcnow

log = logging.getLogger(__name__)

ACTOR = "collector:netflow"
_T = TypeVar("_T")


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


def load_classifier(
    session: Session, policy_name: str, registry: ExporterRegistry | None = None
) -> Classifier:
    """The classification tables: allocations, backbone prefixes, the policy's ignore list and
    signatures, and the ingress map (exporter's device, input ifIndex) → (link, institution)
    from the Interface rows the SNMP collector maps to links."""
    from rules.detection import load_detection_rules

    rules = load_detection_rules(policy_name)
    if registry is None:
        registry = load_registry(session)
    allocations = session.execute(select(IpAllocation.prefix, IpAllocation.institution_id)).all()
    backbone = session.scalars(select(BackbonePrefix.prefix)).all()
    ingress = {
        (device_id, if_index): (link_id, institution_id)
        for device_id, if_index, link_id, institution_id in session.execute(
            select(Interface.device_id, Interface.if_index, Link.id, Link.institution_id).join(
                Link, Interface.link_id == Link.id
            )
        )
    }
    exporter_devices = {
        (r.address, r.observation_domain): r.device_id
        for rows in registry.by_address.values()
        for r in rows
        if r.device_id is not None
    }
    # v5 has no observation domain: the address's first exporter, as ExporterRegistry.match
    address_devices = {
        a: rows[0].device_id
        for a, rows in registry.by_address.items()
        if rows and rows[0].device_id is not None
    }
    return Classifier.build(
        allocations=[(p, i) for p, i in allocations],
        backbone=list(backbone),
        ignore=rules.ignore_addresses,
        remote_control=rules.remote_control,
        internet_vpn=rules.internet_vpn,
        ingress=ingress,
        exporter_devices=exporter_devices,
        address_devices=address_devices,
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
    """Upsert one Observation per aggregate key (counts add up, times widen, sample bounded)
    and return them, flushed, in the order of ``aggregates``.

    A few statements per 500 keys instead of ORM work per row: one SELECT of the samples of
    the keys that exist, one executemany of ``INSERT ... ON CONFLICT (key) DO UPDATE`` (SQLite
    and PostgreSQL) that adds counts and widens first/last seen in the database, so two writers
    upserting the same key both count, and one SELECT that loads the rows for the rules
    engine. The evidence sample is merged in Python from the first SELECT: a concurrent
    writer can at worst replace a sample, never lose counts."""
    if not aggregates:
        return []
    by_key = {observation_key(a): a for a in aggregates}
    keys = list(by_key)
    insert = _dialect_insert(session)
    samples: dict[str, list[dict[str, Any]]] = {}
    for part in _chunks(keys):
        q = select(Observation.key, Observation.sample).where(Observation.key.in_(part))
        samples.update((k, list(v or [])) for k, v in session.execute(q))
    now = utcnow()
    rows = []
    for key, agg in by_key.items():
        exporter = registry.match(agg.exporter[0], agg.exporter[1], 5)
        per_source = agg.kind in PER_SOURCE_KINDS
        old = samples.get(key)
        if old is None:
            sample = list(agg.sample[:sample_size])
        else:
            room = sample_size - len(old)
            sample = old + list(agg.sample[:room]) if room > 0 else old
        rows.append(
            {
                "key": key,
                "source": ObservationSource.NETFLOW,
                "kind": agg.kind,
                "institution_id": agg.institution_id,
                "link_id": agg.link_id,
                "exporter_id": exporter.id if exporter else None,
                "device_id": exporter.device_id if exporter else None,
                "src_addr": agg.src_addr,
                # unauthorized_ip is about the source alone (aggregate.py folds it so)
                "dst_addr": None if per_source else agg.dst_addr,
                "dst_port": None if per_source else agg.dst_port,
                "protocol": None if per_source else agg.protocol,
                "first_seen": _dt(agg.first_ms),
                "last_seen": _dt(agg.last_ms),
                "flows": agg.flows,
                "packets": agg.packets,
                "octets": agg.octets,
                "sample": sample,
                "created_at": now,
                "updated_at": now,
            }
        )
    table = Observation.__table__
    stmt = insert(table)
    new = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.key],
        set_={
            "flows": table.c.flows + new.flows,
            "packets": table.c.packets + new.packets,
            "octets": table.c.octets + new.octets,
            "first_seen": case(
                (new.first_seen < table.c.first_seen, new.first_seen), else_=table.c.first_seen
            ),
            "last_seen": case(
                (new.last_seen > table.c.last_seen, new.last_seen), else_=table.c.last_seen
            ),
            "sample": new.sample,
            "updated_at": new.updated_at,
        },
    )
    session.execute(stmt, rows)  # executemany: compiled once, cached
    loaded: dict[str, Observation] = {}
    for part in _chunks(keys):
        q = (
            select(Observation)
            .where(Observation.key.in_(part))
            .execution_options(populate_existing=True)
        )
        loaded.update((o.key, o) for o in session.scalars(q))
    return [loaded[k] for k in keys]


_CHUNK = 500  # keys per IN (...) list


def _chunks(values: Sequence[_T]) -> list[Sequence[_T]]:
    return [values[i : i + _CHUNK] for i in range(0, len(values), _CHUNK)]


def _dialect_insert(session: Session) -> Callable[..., Any]:
    name = session.get_bind().dialect.name
    if name == "sqlite":
        return sqlite_insert
    if name == "postgresql":
        return pg_insert
    raise ValueError(f"NetFlow observations need SQLite or PostgreSQL, not {name}")


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
