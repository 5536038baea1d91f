"""unauthorized_ip from flows (Jincheng art. 11, Jilin art. 15): the ingress link of a flow is
(exporter's device, input ifIndex) → Interface.link_id → link's institution; a source that is
not allocated to that institution is a candidate, folded per source."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import V4_FIELDS, data_set, template_set, v4_record, v5, v9
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from collector.netflow.pipeline import Pipeline
from core.db import make_engine
from core.models import (
    BackbonePrefix,
    County,
    Detection,
    Device,
    DeviceRole,
    Exporter,
    Institution,
    InstitutionKind,
    Interface,
    IpAllocation,
    Link,
    LinkKind,
    Observation,
)
from rules.policy import BUILTIN_DIR, POLICY_DIRS_ENV

IGNORED = "192.168.9.9"


@pytest.fixture
def policy_with_ignore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``jincheng`` with the NOC's probe beacon on the ignore list."""
    text = (BUILTIN_DIR / "jincheng.yaml").read_text()
    assert "  ignore_addresses: []" in text
    d = tmp_path / "policies"
    d.mkdir()
    (d / "jincheng.yaml").write_text(
        text.replace("  ignore_addresses: []", f'  ignore_addresses: ["{IGNORED}"]')
    )
    monkeypatch.setenv(POLICY_DIRS_ENV, str(d))


def _seed(s: Session) -> dict[str, int]:
    county = County(code="140502", name="城区", policy="jincheng")
    s.add(county)
    s.flush()
    ids: dict[str, int] = {}
    for n in (1, 2):
        dev = Device(
            name=f"edge-{n}",
            mgmt_address=f"127.0.0.{n}",
            device_type="cisco_ios",
            role=DeviceRole.EDGE_ROUTER,
        )
        s.add(dev)
        s.flush()
        ids[f"dev{n}"] = dev.id
    for name, prefix in (("A", "10.1.0.0/16"), ("B", "10.9.0.0/16")):
        inst = Institution(
            code=f"H140502{ord(name):05d}",
            name=f"医院{name}",
            kind=InstitutionKind.HOSPITAL,
            county_id=county.id,
        )
        s.add(inst)
        s.flush()
        link = Link(
            institution_id=inst.id,
            kind=LinkKind.LEASED_LINE,
            device_id=ids["dev1"],
            interface=f"Gi0/0/{name}",
        )
        s.add_all([link, IpAllocation(institution_id=inst.id, prefix=prefix)])
        s.flush()
        ids[name], ids[f"link{name}"] = inst.id, link.id
    s.add_all(
        [
            BackbonePrefix(prefix="10.0.0.0/8", description="backbone"),
            # one address, two exporters (two routers behind one NAT-less collector address)
            Exporter(address="127.0.0.1", observation_domain=0, device_id=ids["dev1"]),
            Exporter(address="127.0.0.1", observation_domain=1, device_id=ids["dev2"]),
            # device 1: ifIndex 5 is A's line, 6 is B's, 7 is not a customer line
            Interface(device_id=ids["dev1"], if_index=5, name="Gi0/0/A", link_id=ids["linkA"]),
            Interface(device_id=ids["dev1"], if_index=6, name="Gi0/0/B", link_id=ids["linkB"]),
            Interface(device_id=ids["dev1"], if_index=7, name="Gi0/0/0", link_id=None),
            # device 2 uses ifIndex 5 for B's line: ifIndex alone does not name a link
            Interface(device_id=ids["dev2"], if_index=5, name="Gi0/1/B", link_id=ids["linkB"]),
        ]
    )
    s.commit()
    return ids


def _v9(domain: int, records: list[bytes]) -> bytes:
    return v9([template_set(300, V4_FIELDS, ipfix=False), data_set(300, records)], source_id=domain)


def test_unauthorized_ip_from_the_ingress_link(db_url: str, policy_with_ignore: None) -> None:
    engine = make_engine(db_url)
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as s:
        ids = _seed(s)
    pipeline = Pipeline(factory, "jincheng")
    backbone = "10.200.0.1"
    datagrams = [
        v5(
            [
                {"src": "10.1.0.5", "dst": backbone, "input_if": 5},  # A's own address: fine
                {"src": "10.9.0.5", "dst": backbone, "input_if": 5},  # B's address on A's line
                {"src": "192.168.7.7", "dst": backbone, "input_if": 5},  # unallocated
                {"src": "192.168.7.7", "dst": "10.200.0.2", "input_if": 5, "dport": 80},
                {"src": "192.168.8.8", "dst": backbone, "input_if": 7},  # no link behind
                {"src": IGNORED, "dst": backbone, "input_if": 6},  # ignored by policy
                {"src": "192.168.6.6", "dst": backbone, "input_if": 99},  # unknown ifIndex
            ]
        ),
        # v9, domain 0 = device 1: ifIndex 6 is B's line
        _v9(0, [v4_record(src="172.31.0.1", dst=backbone, input_if=6)]),
        # v9, domain 1 = device 2: ifIndex 5 is B's line there (not A's)
        _v9(1, [v4_record(src="172.31.0.2", dst=backbone, input_if=5)]),
    ]
    pipeline.process([(d, "127.0.0.1") for d in datagrams])
    pipeline.flush()

    with factory() as s:
        rows = s.scalars(select(Observation).where(Observation.kind == "unauthorized_ip")).all()
        got = {(o.institution_id, o.src_addr): o for o in rows}
        assert set(got) == {
            (ids["A"], "10.9.0.5"),
            (ids["A"], "192.168.7.7"),
            (ids["B"], "172.31.0.1"),
            (ids["B"], "172.31.0.2"),
        }
        folded = got[(ids["A"], "192.168.7.7")]
        assert folded.flows == 2 and folded.dst_addr is None and folded.dst_port is None
        # evidence keeps real records (one per key per batch), destination included
        assert [(r["src_addr"], r["dst_addr"]) for r in folded.sample] == [
            ("192.168.7.7", backbone)
        ]
        assert folded.link_id == ids["linkA"]
        assert got[(ids["B"], "172.31.0.2")].device_id == ids["dev2"]
        dets = s.scalars(select(Detection).where(Detection.kind == "unauthorized_ip")).all()
        assert {(d.institution_id, d.evidence["src_addr"]) for d in dets} == set(got)
        assert all(d.link_id is not None and d.case_id is not None for d in dets)
    engine.dispose()


def test_interfaces_mapped_later_reach_the_classifier_on_reload(db_url_sqlite: str) -> None:
    engine = make_engine(db_url_sqlite)
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as s:
        ids = _seed(s)
    pipeline = Pipeline(factory, "jincheng", reload_interval=3600)
    flow = [(v5([{"src": "192.168.5.5", "dst": "10.200.0.1", "input_if": 8}]), "127.0.0.1")]
    pipeline.process(flow)
    assert len(pipeline.aggregator) == 0  # ifIndex 8 is not known yet
    with factory() as s:  # the SNMP collector maps a new interface to A's line
        s.add(Interface(device_id=ids["dev1"], if_index=8, name="Gi0/0/8", link_id=ids["linkA"]))
        s.commit()
    assert not pipeline.reload_if_due()  # not due yet: tables unchanged
    pipeline.process(flow)
    assert len(pipeline.aggregator) == 0
    pipeline.reload_interval = 0
    assert pipeline.reload_if_due()
    pipeline.process(flow)
    assert len(pipeline.aggregator) == 1
    engine.dispose()
