"""The Jincheng three-strike story played through rules.engine, with real documents in a
real blob store, for the report, pack, statistics and API tests.

Enforcement outcomes are written through the enforcer's own queue calls (``queue.verified``),
with fixed finish times so that cut durations are exact; the SSH side of the enforcer is
tested in tests/enforcer against real SSH peers."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.documents import add_document
from core.models import (
    ActionKind,
    ActionState,
    ArpEntry,
    Case,
    EnforcementAction,
    Institution,
    Observation,
    ObservationSource,
    Role,
)
from core.settings import Settings, load_settings
from enforcer import queue
from rules import engine
from tests.rules.conftest import T0, World, build_world

TERMINAL_IP = "10.20.1.15"
INTERNET_IP = "203.0.113.7"
TERMINAL_MAC = "00:1b:21:aa:bb:cc"
REMEDIATION = "已拆除违规无线网卡，终端重装系统并加装准入控制。"
STRIKE3_AT = T0 + timedelta(days=30)
STRIKE3_CUT_AT = STRIKE3_AT + timedelta(minutes=1)
STRIKE3_RESTORED_AT = STRIKE3_AT + timedelta(days=1, hours=2, minutes=1)  # cut 1天2小时
REPORT_AT = STRIKE3_RESTORED_AT + timedelta(hours=1)


def pdf_bytes(text: str = "rectification") -> bytes:
    """A small but real PDF (pdftotext reads it)."""
    body = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(body) + body + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for n, obj in enumerate(objs, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % n + obj + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(
        b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    )
    return out.getvalue()


@dataclass
class Story:
    world: World
    settings: Settings
    institution: Institution
    cases: list[Case] = field(default_factory=list)

    @property
    def session(self) -> Session:
        return self.world.session


def story_settings(tmp_path: Path, db_url: str) -> Settings:
    return load_settings(
        database_url=db_url,
        documents_dir=tmp_path / "documents",
        reports_dir=tmp_path / "reports",
    )


def _finish(session: Session, case: Case, kind: ActionKind, at: datetime) -> None:
    for action in session.scalars(
        select(EnforcementAction).where(
            EnforcementAction.case_id == case.id,
            EnforcementAction.kind == kind,
            EnforcementAction.state == ActionState.APPROVED,
        )
    ):
        verb = "shutdown" if kind == ActionKind.CUT else "no shutdown"
        action.commands = ["configure terminal", f"interface {action.link.interface}", verb, "end"]
        action.transcript = f"edge-01#configure terminal\nedge-01(config-if)#{verb}\n"
        queue.verified(session, action, "worker-test", f"interface {verb} verified")
        action.finished_at = at
    session.flush()


def _upload(story: Story, case: Case, kind: str, name: str, at_text: str) -> None:
    add_document(
        story.session,
        case=case,
        kind=kind,
        filename=name,
        data=pdf_bytes(f"{kind} {at_text}"),
        actor="county-140502",
        settings=story.settings,
        allowed_kinds=[kind],
        note=f"{kind} filed",
    )


def _find(story: Story, at: datetime, n: int) -> Case:
    session = story.session
    inst = story.institution
    link = inst.links[0]
    obs = Observation(
        key=f"story:{inst.id}:{n}",
        source=ObservationSource.NETFLOW,
        kind="outbound_internet",
        institution_id=inst.id,
        link_id=link.id,
        src_addr=TERMINAL_IP,
        dst_addr=INTERNET_IP,
        dst_port=443,
        protocol=6,
        first_seen=at - timedelta(minutes=10),
        last_seen=at,
        flows=42,
        packets=900,
        octets=123456,
    )
    session.add(obs)
    session.flush()
    det = engine.detect(
        session,
        "outbound_internet",
        inst,
        actor="collector",
        evidence={"src_addr": TERMINAL_IP, "dst_addr": INTERNET_IP, "flows": 42},
        source=ObservationSource.PROBE if n == 3 else ObservationSource.MANUAL,
        corroborated=True,
        at=at,
        store=story.world.store,
    )
    assert det is not None and det.case_id is not None
    det.observation_id = obs.id
    case = session.get(Case, det.case_id)
    assert case is not None
    return case


def play(session: Session, tmp_path: Path, db_url: str) -> Story:
    """Three strikes at one hospital in county 140502; every case handled to its end."""
    world = build_world(session, tmp_path / "policies")
    inst = world.institution()
    story = Story(world, story_settings(tmp_path, db_url), inst)
    session.add(
        ArpEntry(
            device_id=world.device.id,  # type: ignore[union-attr]
            if_index=12,
            ip=TERMINAL_IP,
            mac=TERMINAL_MAC,
            link_id=inst.links[0].id,
            institution_id=inst.id,
            first_seen=T0 - timedelta(days=5),
            last_seen=STRIKE3_AT,
            active=True,
        )
    )
    # strike 1: cut, written explanation, county reconnects
    c1 = _find(story, T0, 1)
    _finish(session, c1, ActionKind.CUT, T0 + timedelta(minutes=1))
    _upload(story, c1, "written_explanation", "情况说明.pdf", "1")
    world.act(c1, "reconnect", Role.COUNTY_OPERATOR, at=T0 + timedelta(hours=2), reason="说明已收")
    _finish(session, c1, ActionKind.RESTORE, T0 + timedelta(hours=2, minutes=5))
    # strike 2: cut, rectification, the city confirms
    t2 = T0 + timedelta(days=10)
    c2 = _find(story, t2, 2)
    _finish(session, c2, ActionKind.CUT, t2 + timedelta(minutes=1))
    _upload(story, c2, "rectification_report", "整改报告-2.pdf", "2")
    world.act(c2, "reconnect", at=t2 + timedelta(hours=5), reason="整改完毕，市局确认")
    _finish(session, c2, ActionKind.RESTORE, t2 + timedelta(hours=5, minutes=2))
    # strike 3: cut; no bad consequences → handled as the second finding
    c3 = _find(story, STRIKE3_AT, 3)
    _finish(session, c3, ActionKind.CUT, STRIKE3_CUT_AT)
    world.act(c3, "no_consequences", at=STRIKE3_AT + timedelta(hours=3), reason="未造成不良后果")
    _upload(story, c3, "rectification_report", "整改报告-3.pdf", "3")
    c3.remediation = REMEDIATION
    world.act(c3, "reconnect", at=STRIKE3_RESTORED_AT - timedelta(minutes=5), reason="整改完毕")
    _finish(session, c3, ActionKind.RESTORE, STRIKE3_RESTORED_AT)
    session.commit()
    story.cases = [c1, c2, c3]
    return story
