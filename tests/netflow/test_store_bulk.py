"""The bulk writer (store_observations + rules.engine.observe) gives the same database as the
one-by-one path it replaced (tests/netflow/legacy_engine.py), row for row, on both backends.

The scenario walks every branch the bulk path answers from preloaded state: new detections
opening strike cases and joining them, the same observation twice in one batch, corroboration
by thresholds and by a second source (an SNMP observation), cuts upgraded to auto, a protected
institution, an observation that names only a link, one that names nothing, a closed case whose
later traffic is a new finding (after-case key), and upserts that add counts, widen times and
fill the bounded evidence sample across flushes."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

import pytest
from legacy_engine import observe_one_by_one, store_one_by_one
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from collector.netflow.aggregate import Aggregate
from collector.netflow.store import ExporterRegistry, load_registry, store_observations
from core.db import make_engine
from core.models import (
    AuditEvent,
    Case,
    CaseEvent,
    County,
    Detection,
    Device,
    DeviceRole,
    EnforcementAction,
    Exporter,
    Institution,
    InstitutionKind,
    Link,
    LinkKind,
    Observation,
    ObservationSource,
)
from rules.engine import observe

T0_MS = 1_740_800_000_000  # 2025-03-01
StoreFn = Callable[[Session, Sequence[Aggregate], ExporterRegistry, int], list[Observation]]


@pytest.fixture
def twin_urls(db_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """Two fresh migrated databases of the same backend (bulk path, one-by-one path)."""
    if db_url.startswith("sqlite"):
        import shutil
        from pathlib import Path

        path = Path(db_url.removeprefix("sqlite:///"))
        twin = path.with_name("oracle.db")
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), twin)
        yield db_url, f"sqlite:///{twin}"
        return
    pg = request.getfixturevalue("pg_server")
    name = f"ew_twin_{uuid.uuid4().hex[:8]}"
    url = pg.create_database(name, template=request.getfixturevalue("_pg_template"))
    try:
        yield db_url, url
    finally:
        pg.drop_database(name)


def _seed(s: Session) -> dict[str, int]:
    county = County(code="140502", name="城区", policy="jincheng")
    device = Device(
        name="edge-01",
        mgmt_address="127.0.0.1",
        device_type="cisco_ios",
        role=DeviceRole.EDGE_ROUTER,
    )
    s.add_all([county, device])
    s.flush()
    ids: dict[str, int] = {"device": device.id}
    for name, protected in (("A", False), ("B", True), ("C", False)):
        inst = Institution(
            code=f"H140502{ord(name):05d}",
            name=f"医院{name}",
            kind=InstitutionKind.HOSPITAL,
            county_id=county.id,
            protected=protected,
            agreement_start=date(2025, 1, 1),
            agreement_end=date(2025, 12, 31),
        )
        s.add(inst)
        s.flush()
        link = Link(
            institution_id=inst.id,
            kind=LinkKind.LEASED_LINE,
            device_id=device.id,
            interface=f"Gi0/0/{name}",
        )
        s.add(link)
        s.flush()
        ids[name], ids[f"link{name}"] = inst.id, link.id
    s.add(
        Exporter(
            address="127.0.0.1",
            observation_domain=0,
            sampling_rate=1,
            enabled=True,
            device_id=device.id,
        )
    )
    s.commit()
    return ids


def _agg(inst: int, kind: str, n: int, t: int, flows: int, octets: int, span_s: int) -> Aggregate:
    port = {"outbound_internet": 443, "remote_control": 3389, "internet_vpn": 1194}[kind]
    return Aggregate(
        inst,
        kind,
        f"10.0.{inst}.{n}",
        f"203.0.113.{n}",
        port,
        6 if kind != "internet_vpn" else 17,
        link_id=None,
        exporter=("127.0.0.1", 0),
        first_ms=T0_MS + t * 1000,
        last_ms=T0_MS + (t + span_s) * 1000,
        flows=flows,
        packets=flows * 3,
        octets=octets,
        sample=[{"round": t, "i": j} for j in range(flows)],
    )


def _round(ids: dict[str, int], r: int) -> list[Aggregate]:
    """Round 1: weak first sightings; round 2: the same keys grow (A's pass the thresholds)
    plus new keys; round 3: traffic after A's case was closed, and a new key."""
    a, b, c = ids["A"], ids["B"], ids["C"]
    t = {1: 0, 2: 600, 3: 7200}[r]
    weak = dict(flows=1, octets=100, span_s=5)
    strong = dict(flows=3, octets=5000, span_s=120)
    out = [
        _agg(a, "outbound_internet", 1, t, **(strong if r == 2 else weak)),
        _agg(a, "outbound_internet", 2, t, **weak),
        _agg(a, "remote_control", 3, t, **(strong if r == 2 else weak)),
        _agg(b, "outbound_internet", 4, t, **weak),
        _agg(b, "internet_vpn", 5, t, **weak),
        _agg(c, "outbound_internet", 6, t, **weak),
    ]
    if r >= 2:
        out += [
            _agg(b, "outbound_internet", 7, t, **strong),
            _agg(c, "remote_control", 8, t, **weak),
        ]
    if r == 3:
        out.append(_agg(a, "outbound_internet", 9, t, **weak))
    return out


def _extra(s: Session, ids: dict[str, int], r: int) -> list[Observation]:
    """Observations of other sources handed to observe with the NetFlow ones."""
    at = datetime.fromtimestamp(T0_MS / 1000 + {1: 0, 2: 600, 3: 7200}[r], UTC)
    rows = []
    if r == 2:  # SNMP saw B too: second source for B's outbound_internet
        rows.append(
            Observation(
                key="snmp:B",
                source=ObservationSource.SNMP,
                kind="outbound_internet",
                institution_id=ids["B"],
                first_seen=at,
                last_seen=at,
                flows=0,
            )
        )
    rows.append(  # names only C's link
        Observation(
            key=f"snmp:link:{r}",
            source=ObservationSource.SNMP,
            kind="unauthorized_ip",
            institution_id=None,
            link_id=ids["linkC"],
            src_addr="10.9.9.9",
            first_seen=at,
            last_seen=at,
            flows=0,
        )
    )
    rows.append(  # names nothing: not a finding
        Observation(
            key=f"manual:{r}",
            source=ObservationSource.MANUAL,
            kind="outbound_internet",
            first_seen=at,
            last_seen=at,
        )
    )
    s.add_all(rows)
    s.flush()
    return rows


def _scenario(
    url: str, store_fn: StoreFn, observe_fn: Callable[..., list[Detection]]
) -> dict[str, Any]:
    engine = make_engine(url)
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as s:
        ids = _seed(s)
        registry = load_registry(s)
    created: list[list[str]] = []
    for r in (1, 2, 3):
        aggs = _round(ids, r)
        for start in range(0, len(aggs), 4):  # chunks, each its own transactions (Pipeline.write)
            with factory() as s:
                stored = store_fn(s, aggs[start : start + 4], registry, 5)
                batch = stored + _extra(s, ids, r) if start == 0 else stored
                s.commit()
                dets = observe_fn(s, [*batch, batch[0]], actor="collector:netflow")
                created.append(sorted(d.key for d in dets))
                s.commit()
        if r == 2:  # A's case is handled and closed between the flushes of round 2 and 3
            with factory() as s:
                case = s.scalars(select(Case).where(Case.institution_id == ids["A"])).first()
                assert case is not None
                case.is_open = False
                case.closed_at = datetime.fromtimestamp(T0_MS / 1000 + 3600, UTC)
                s.commit()
    with factory() as s:
        out = _project(s, created)
    engine.dispose()
    return out


def _project(s: Session, created: list[list[str]]) -> dict[str, Any]:
    """Everything both paths write, with observation ids replaced by observation keys (ids
    differ on PostgreSQL: ON CONFLICT consumes sequence values) and clock times dropped."""
    obs_key = {o.id: o.key for o in s.scalars(select(Observation))}

    def norm(value: Any) -> Any:
        text = re.sub(r"obs:(\d+)", lambda m: f"obs:{obs_key[int(m.group(1))]}", str(value))
        return re.sub(
            r"observation (\d+)", lambda m: f"observation {obs_key[int(m.group(1))]}", text
        )

    def rows(model: Any, cols: Sequence[str]) -> list[tuple[Any, ...]]:
        return [
            tuple(norm(getattr(r, c)) for c in cols)
            for r in s.scalars(select(model).order_by(model.id))
        ]

    observations = sorted(
        (
            o.key,
            o.kind,
            o.institution_id,
            o.link_id,
            o.exporter_id,
            o.device_id,
            o.src_addr,
            o.dst_addr,
            o.dst_port,
            o.protocol,
            o.first_seen,
            o.last_seen,
            o.flows,
            o.packets,
            o.octets,
            o.sample,
        )
        for o in s.scalars(select(Observation))
    )
    return {
        "created": [sorted(norm(k) for k in keys) for keys in created],
        "observations": observations,
        "detections": sorted(
            (
                norm(d.key),
                d.kind,
                d.institution_id,
                d.link_id,
                obs_key.get(d.observation_id or 0),
                d.corroborated,
                d.counted,
                d.case_id,
                d.severity,
                norm(d.evidence),
                d.detected_at,
            )
            for d in s.scalars(select(Detection))
        ),
        "cases": rows(
            Case,
            [
                "id",
                "institution_id",
                "kind",
                "counts",
                "strike",
                "step",
                "state",
                "is_open",
                "opened_at",
                "required_documents",
            ],
        ),
        "events": rows(
            CaseEvent,
            [
                "id",
                "case_id",
                "event",
                "from_state",
                "to_state",
                "reason",
                "detection_id",
                "data",
                "at",
            ],
        ),
        "actions": rows(
            EnforcementAction,
            [
                "id",
                "case_id",
                "link_id",
                "kind",
                "mode",
                "state",
                "corroborated",
                "approved_by",
                "reason",
            ],
        ),
        "audit": rows(
            AuditEvent, ["id", "actor", "action", "object_type", "object_id", "reason", "data"]
        ),
    }


def test_bulk_path_writes_what_one_by_one_writes(twin_urls: tuple[str, str]) -> None:
    bulk_url, oracle_url = twin_urls
    bulk = _scenario(bulk_url, store_observations, observe)
    oracle = _scenario(oracle_url, store_one_by_one, observe_one_by_one)
    for part in oracle:
        assert bulk[part] == oracle[part], part
    # the scenario reached the branches it is meant to exercise
    assert any(":after-case:" in d[0] for d in bulk["detections"])
    assert any(a[5] == "approved" and a[7] == "policy:jincheng" for a in bulk["actions"])
    assert any(e[2] == "evidence" for e in bulk["events"])
    assert any(a[2] == "detection.corroborated" for a in bulk["audit"])
    link_only = [d for d in bulk["detections"] if d[1] == "unauthorized_ip"]
    assert link_only and link_only[0][3] is not None
    (grown,) = [o for o in bulk["observations"] if o[0].endswith(":203.0.113.1:443:6")]
    assert grown[12] == 1 + 3 + 1 and len(grown[15]) == 5  # flows add up, sample bounded


def test_store_upsert_adds_counts_and_widens_times(db_url: str) -> None:
    engine = make_engine(db_url)
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as s:
        ids = _seed(s)
        registry = load_registry(s)
        later = _agg(ids["A"], "outbound_internet", 1, 100, flows=2, octets=10, span_s=10)
        earlier = _agg(ids["A"], "outbound_internet", 1, 0, flows=4, octets=20, span_s=5)
        (o1,) = store_observations(s, [later], registry)
        s.commit()
        (o2,) = store_observations(s, [earlier], registry)
        s.commit()
        assert o1.id == o2.id and o2.flows == 6 and o2.octets == 30 and o2.packets == 18
        assert o2.first_seen == datetime.fromtimestamp(T0_MS / 1000, UTC)
        assert o2.last_seen == datetime.fromtimestamp(T0_MS / 1000 + 110, UTC)
        assert len(o2.sample) == 5 and o2.sample[:2] == later.sample
        assert o2.exporter_id is not None and o2.device_id == ids["device"]
    engine.dispose()
