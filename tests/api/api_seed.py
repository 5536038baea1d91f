"""Seeding shared by the authorization matrix, schemathesis and bench/api_latency.py.

Two counties of the sample inventory get realistic rows made the way the service makes them
(the rules engine records detections, opens cases and queues cuts; the enforcer queue approves
one), so the API answers what it would answer in production. Device secrets are replaced by
distinctive strings before the import so that a leak is unmistakable in a response body.

``bulk_seed`` fills a PostgreSQL database at benchmark scale with core INSERT statements."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session

from core.crypto import secret_box
from core.documents import add_document
from core.inventory import import_file
from core.models import (
    ApiToken,
    AuditHead,
    Base,
    Case,
    CaseEvent,
    County,
    Deadline,
    Detection,
    Device,
    EnforcementAction,
    Incident,
    Institution,
    IpAllocation,
    Link,
    Observation,
    ObservationSource,
    Report,
    Role,
    Sweep,
    Vendor,
    WebhookDelivery,
    WebhookSubscription,
)
from core.settings import get_settings
from core.tokens import create_token
from rules import engine

SAMPLE = Path(__file__).resolve().parents[2] / "lab" / "sample" / "inventory-small.yaml"
COUNTY_A = "140521"  # 沁水县: the county operator's own county
COUNTY_B = "140522"  # 阳城县: the other county, whose objects must never leak
SEED_ACTOR = "api-seed"
ROLES = ("viewer", "auditor", "city_admin", "county_operator")


@dataclass
class CountySeed:
    """What one county owns: values to fill path parameters and strings that identify it."""

    code: str
    ids: dict[str, int] = field(default_factory=dict)  # resource -> one representative id
    all_ids: dict[str, set[int]] = field(default_factory=dict)  # resource -> every id
    codes: dict[str, str] = field(default_factory=dict)  # resource -> a code/name key
    markers: set[str] = field(default_factory=set)  # codes, names, prefixes, accounts, devices


@dataclass
class Seed:
    a: CountySeed
    b: CountySeed
    city: dict[str, int | str]  # city-level objects: tokens, users, webhooks, sweeps, ...
    tokens: dict[str, str]  # role -> clear bearer token (county_operator is county A's)
    secrets: set[str]  # clear device secrets, webhook secret, token hashes

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def _secret_inventory(tmp_dir: Path) -> tuple[Path, set[str]]:
    """The sample inventory with distinctive device secrets (communities there equal device
    names, which the API may show); returns the file and the clear secrets."""
    doc = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    secrets: set[str] = set()
    for dev in doc["devices"]:
        snmp, ssh = dev.get("snmp", {}), dev.get("ssh", {})
        if "community" in snmp:
            snmp["community"] = f"c0mmunity-S3CRET-{dev['name']}"
        for key in ("auth_key", "priv_key"):
            if key in snmp:
                snmp[key] = f"{key}-S3CRET-{dev['name']}"
        for key in ("password", "secret"):
            if key in ssh:
                ssh[key] = f"ssh-{key}-S3CRET-{dev['name']}"
        secrets |= {str(snmp.get(k)) for k in ("community", "auth_key", "priv_key") if k in snmp}
        secrets |= {str(ssh.get(k)) for k in ("password", "secret") if k in ssh}
    path = tmp_dir / "inventory-seed.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path, secrets


def _county_objects(session: Session, tmp_dir: Path, code: str, n: int) -> CountySeed:
    """Detections, a case with its queued cuts, a document, an incident and a report."""
    cs = CountySeed(code=code)
    insts = list(
        session.scalars(
            select(Institution)
            .join(County, Institution.county_id == County.id)
            .where(County.code == code)
            .order_by(Institution.id)
        )
    )
    leased = next(i for i in insts if any(ln.interface for ln in i.links))
    second = next(i for i in insts if i.id != leased.id and i.links)
    link = next(ln for ln in leased.links if ln.interface)
    prefix = session.scalars(
        select(IpAllocation.prefix).where(IpAllocation.institution_id == leased.id)
    ).first()
    host = str(next(ipaddress.ip_network(prefix or "10.0.0.0/30").hosts()))
    at = datetime.now(UTC) - timedelta(hours=2)
    det = engine.detect(
        session,
        "outbound_internet",
        leased,
        actor=SEED_ACTOR,
        evidence={"src_addr": host, "dst_addr": "203.0.113.7", "institution": leased.code},
        source=ObservationSource.PROBE,
        link=link,
        corroborated=True,
        key=f"seed:{code}:outbound",
        at=at,
    )
    assert det is not None and det.case_id is not None, "the engine opened no case"
    det2 = engine.detect(
        session,
        "remote_control",
        second,
        actor=SEED_ACTOR,
        evidence={"src_addr": host, "dst_port": 5938, "note": f"seeded {n}"},
        source=ObservationSource.MANUAL,
        key=f"seed:{code}:remote",
        at=at + timedelta(minutes=1),
    )
    obs = Observation(
        key=f"seed:{code}:obs",
        source=ObservationSource.NETFLOW,
        kind="remote_control",
        institution_id=second.id,
        src_addr=host,
        dst_addr="198.51.100.9",
        dst_port=3389,
        protocol=6,
        first_seen=at,
        last_seen=at + timedelta(minutes=5),
        flows=5,
        packets=50,
        octets=5000,
    )
    session.add(obs)
    session.flush()
    engine.observe(session, [obs], actor=SEED_ACTOR)
    case = session.get(Case, det.case_id)
    assert case is not None
    actions = list(
        session.scalars(select(EnforcementAction).where(EnforcementAction.case_id == case.id))
    )
    assert actions, "the engine queued no cut"
    from enforcer import queue  # enforcer is below api; tests may use it

    if actions[0].state == "proposed":
        queue.approve(session, actions[0].id, actor="city_admin-seed", reason="seeded approval")
    # Stored the way the upload endpoint stores it (content-addressed under documents_dir).
    doc = add_document(
        session,
        case=case,
        kind="written_explanation",
        filename=f"explanation-{leased.code}.pdf",
        data=b"%PDF-1.4\n% " + leased.code.encode() + b" \xe6\x83\x85\xe5\x86\xb5\n%%EOF\n",
        actor=SEED_ACTOR,
        settings=get_settings(),
        allowed_kinds=["written_explanation"],
    )
    incident = Incident(
        institution_id=leased.id, kind="virus", title=f"病毒 {leased.code}", description="seed"
    )
    session.add(incident)
    session.flush()
    report_path = tmp_dir / f"report-{code}.md"
    report_path.write_text(f"# report {leased.code}\n", encoding="utf-8")
    report = Report(
        case_id=case.id,
        format="md",
        sha256=hashlib.sha256(report_path.read_bytes()).hexdigest(),
        path=str(report_path),
        generated_by=SEED_ACTOR,
    )
    session.add(report)
    session.flush()

    inst_ids = [i.id for i in insts]
    case_ids = set(session.scalars(select(Case.id).where(Case.institution_id.in_(inst_ids))))
    devices = list(
        session.scalars(
            select(Device).join(County, Device.county_id == County.id).where(County.code == code)
        )
    )
    cs.all_ids = {
        "institution": set(inst_ids),
        "link": set(session.scalars(select(Link.id).where(Link.institution_id.in_(inst_ids)))),
        "detection": set(
            session.scalars(select(Detection.id).where(Detection.institution_id.in_(inst_ids)))
        ),
        "case": case_ids,
        "action": set(
            session.scalars(
                select(EnforcementAction.id).where(EnforcementAction.case_id.in_(case_ids))
            )
        ),
        "document": {doc.id},
        "incident": {incident.id},
        "report": {report.id},
        "device": {d.id for d in devices},
        "event": set(session.scalars(select(CaseEvent.id).where(CaseEvent.case_id.in_(case_ids)))),
        "observation": set(
            session.scalars(select(Observation.id).where(Observation.institution_id.in_(inst_ids)))
        ),
        "deadline": set(session.scalars(select(Deadline.id).where(Deadline.case_id.in_(case_ids)))),
    }
    cs.ids = {
        "institution": leased.id,
        "link": link.id,
        "detection": det.id,
        "case": case.id,
        "action": actions[0].id,
        "document": doc.id,
        "incident": incident.id,
        "report": report.id,
        "device": link.device_id,
        "observation": obs.id,
    }
    if det2 is not None:
        cs.all_ids["detection"].add(det2.id)
    cs.codes = {"institution": leased.code, "county": code, "device": link.device.name}
    for inst in insts:
        cs.markers |= {inst.code, inst.name}
        cs.markers |= {ln.vpdn_account for ln in inst.links if ln.vpdn_account}
        cs.markers |= {str(a.prefix).split("/")[0] for a in inst.allocations}
    cs.markers |= {d.name for d in devices}
    cs.markers.add(host)
    return cs


def seed_world(session: Session, tmp_dir: Path) -> Seed:
    """Inventory, two counties of objects, a webhook, a sweep and the four role tokens;
    committed."""
    path, secrets = _secret_inventory(tmp_dir)
    import_file(session, path, actor=SEED_ACTOR)
    session.flush()
    a = _county_objects(session, tmp_dir, COUNTY_A, 1)
    b = _county_objects(session, tmp_dir, COUNTY_B, 2)
    tokens: dict[str, str] = {}
    for role in ROLES:
        counties = [COUNTY_A] if role == "county_operator" else []
        _, tokens[role] = create_token(
            session, role=Role(role), counties=counties, name=f"seed-{role}", actor=SEED_ACTOR
        )
    # A second operator, of county B: its user and token are objects of the matrix too.
    b_user, _ = create_token(
        session, role=Role.COUNTY_OPERATOR, counties=[COUNTY_B], name="seed-b-operator"
    )
    webhook_secret = "whsec-S3CRET-seeded-webhook"
    hook = WebhookSubscription(
        name="seed-noc",
        url="http://127.0.0.1:9/hook",
        event_types=["case.opened"],
        secret_enc=secret_box().encrypt(webhook_secret),
        created_by=SEED_ACTOR,
    )
    sweep = Sweep(trigger="api", requested_by=SEED_ACTOR, status="ok", devices_total=1)
    session.add_all([hook, sweep])
    session.flush()
    delivery = WebhookDelivery(
        subscription_id=hook.id,
        event_id="seed-1",
        event_type="case.opened",
        payload={"case": a.ids["case"]},
        state="dead",
        attempts=5,
        last_error="connection refused",
    )
    session.add(delivery)
    session.flush()
    secrets.add(webhook_secret)
    secrets |= set(session.scalars(select(ApiToken.token_hash)))
    vendor_id = session.scalars(select(Vendor.id).order_by(Vendor.id)).first()
    token_id = session.scalars(
        select(ApiToken.id).where(ApiToken.user_id == b_user.id).order_by(ApiToken.id)
    ).first()
    city: dict[str, int | str] = {
        "user": b_user.id,
        "token": token_id or 0,
        "webhook": hook.id,
        "subscription": hook.id,
        "delivery": delivery.id,
        "sweep": sweep.id,
        "policy": "jincheng",
        "audit": session.scalar(select(AuditHead.last_id)) or 1,
    }
    if vendor_id is not None:
        city["vendor"] = vendor_id
    session.commit()
    return Seed(a=a, b=b, city=city, tokens=tokens, secrets=secrets)


def row_counts(session: Session) -> dict[str, int]:
    """Rows per table and the audit head: a write that happened shows here."""
    counts = {
        t.name: session.scalar(select(func.count()).select_from(t)) or 0
        for t in Base.metadata.sorted_tables
    }
    head = session.scalar(select(AuditHead.last_id))
    counts["audit_head.last_id"] = head or 0
    return counts


# --- benchmark scale ------------------------------------------------------------------------


def bulk_seed(
    engine_: Engine,
    *,
    institutions: int = 10_000,
    detections: int = 100_000,
    cases: int = 10_000,
    county_codes: tuple[str, ...] = ("140502", COUNTY_A, COUNTY_B, "140524", "140525", "140581"),
    seed: int = 7,
) -> dict[str, int]:
    """Bulk INSERTs (executemany of core statements) at the issue's scale on a migrated
    database that already holds the sample inventory (counties, devices, carriers)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    with engine_.begin() as conn:
        county_ids: dict[str, int] = {
            code: cid
            for code, cid in conn.execute(
                select(County.code, County.id).where(County.code.in_(county_codes))
            )
        }
        device_id = conn.execute(select(Device.id).order_by(Device.id)).scalars().first()
        assert device_id is not None, "import the sample inventory first"
        start = conn.scalar(select(func.coalesce(func.max(Institution.id), 0))) or 0
        inst_rows = []
        for i in range(institutions):
            code = county_codes[i % len(county_codes)]
            inst_rows.append(
                {
                    "id": start + 1 + i,
                    "code": f"B{code}{i:06d}",
                    "name": f"压测机构{i}",
                    "kind": "pharmacy" if i % 3 else "hospital",
                    "county_id": county_ids[code],
                    "status": "active",
                    "protected": False,
                    "agreement_start": date(2026, 1, 1),
                    "agreement_end": date(2026, 12, 31),
                    "created_at": now,
                    "updated_at": now,
                }
            )
        conn.execute(insert(Institution), inst_rows)
        inst_ids = [r["id"] for r in inst_rows]
        link_start = conn.scalar(select(func.coalesce(func.max(Link.id), 0))) or 0
        link_rows = [
            {
                "id": link_start + 1 + n,
                "institution_id": iid,
                "kind": "leased_line",
                "device_id": device_id,
                "interface": f"GigabitEthernet9/0/{n}",
                "state": "up",
                "created_at": now,
                "updated_at": now,
            }
            for n, iid in enumerate(inst_ids)
        ]
        conn.execute(insert(Link), link_rows)
        link_of = {r["institution_id"]: r["id"] for r in link_rows}
        case_start = conn.scalar(select(func.coalesce(func.max(Case.id), 0))) or 0
        case_rows = []
        case_inst = rng.sample(inst_ids, min(cases, len(inst_ids)))
        for n, iid in enumerate(case_inst):
            opened = now - timedelta(minutes=rng.randrange(0, 60 * 24 * 300))
            is_open = n % 4 != 0
            case_rows.append(
                {
                    "id": case_start + 1 + n,
                    "institution_id": iid,
                    "policy": "jincheng",
                    "kind": "outbound_internet",
                    "counts": True,
                    "strike": 1 + n % 3,
                    "step": "first_finding",
                    "state": "cut" if is_open else "reconnected",
                    "is_open": is_open,
                    "required_documents": ["written_explanation"],
                    "opened_at": opened,
                    "updated_at": opened,
                    "closed_at": None if is_open else opened + timedelta(days=3),
                    "version": 1,
                }
            )
        conn.execute(insert(Case), case_rows)
        case_of = {r["institution_id"]: r["id"] for r in case_rows}
        det_start = conn.scalar(select(func.coalesce(func.max(Detection.id), 0))) or 0
        kinds = ("outbound_internet", "remote_control", "unauthorized_ip", "network_extension")
        chunk: list[dict[str, Any]] = []
        for n in range(detections):
            iid = inst_ids[rng.randrange(len(inst_ids))]
            at = now - timedelta(seconds=rng.randrange(0, 3600 * 24 * 300))
            chunk.append(
                {
                    "id": det_start + 1 + n,
                    "key": f"bench:{n}",
                    "kind": kinds[n % len(kinds)],
                    "institution_id": iid,
                    "link_id": link_of[iid],
                    "source": "netflow",
                    "severity": "high",
                    "corroborated": n % 2 == 0,
                    "evidence": json.loads(
                        json.dumps({"src_addr": f"10.{n % 250}.{n % 199}.7", "flows": n % 17})
                    ),
                    "detected_at": at,
                    "case_id": case_of.get(iid),
                    "counted": False,
                    "created_at": at,
                    "updated_at": at,
                }
            )
            if len(chunk) == 10_000:
                conn.execute(insert(Detection), chunk)
                chunk = []
        if chunk:
            conn.execute(insert(Detection), chunk)
    if engine_.dialect.name == "postgresql":
        with engine_.begin() as conn:
            for table in ("institutions", "links", "cases", "detections"):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
            conn.exec_driver_sql("ANALYZE")
    return {"institutions": institutions, "detections": detections, "cases": len(case_rows)}


__all__ = [
    "COUNTY_A",
    "COUNTY_B",
    "ROLES",
    "CountySeed",
    "Seed",
    "bulk_seed",
    "row_counts",
    "seed_world",
]
