"""Everything the 24-hour summary report says about a case, gathered once from the database.

Jincheng art. 17 and Jilin art. 36 name the four parts: cause (事件起因), handling (处置过程),
impact scope (影响范围) and remediation (整改措施). Every renderer (Markdown, HTML, PDF, DOCX)
and the evidence pack read this one structure, so the formats cannot disagree."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.models import (
    ActionKind,
    ActionState,
    ArpEntry,
    Case,
    CaseEvent,
    Deadline,
    Detection,
    Document,
    EnforcementAction,
    Institution,
    Link,
    Observation,
    ObservationSource,
)
from core.timeutil import as_utc, utcnow

ZONE = ZoneInfo("Asia/Shanghai")  # both regulations are Chinese; reports read in Beijing time
REPORT_DEADLINE_KIND = "summary_report"
RECTIFICATION_KINDS = ("rectification_report",)
EXPLANATION_KINDS = ("written_explanation",)

KIND_ZH = {
    "outbound_internet": "违规外连互联网",
    "dual_homed": "双网运行/一机两网",
    "remote_control": "使用远程控制软件",
    "internet_vpn": "经互联网VPN接入",
    "unauthorized_ip": "使用未分配IP地址",
    "network_extension": "延伸使用医保专线",
    "security_incident": "网络安全事件",
    "personal_data_leak": "个人信息泄露",
    "link_down": "线路中断",
}
DOC_ZH = {
    "written_explanation": "书面情况说明",
    "rectification_report": "整改报告",
    "summary_report": "总结报告",
    "incident_record": "事件记录",
    "fault_report": "故障报告",
    "confirmation": "确认函",
    "other": "其他材料",
}
SOURCE_ZH = {"netflow": "流量(NetFlow)", "snmp": "SNMP/ARP", "probe": "主动探测", "manual": "人工"}
STATE_ZH = {
    "proposed": "待审批",
    "approved": "已批准",
    "executing": "执行中",
    "verified": "已执行并核验",
    "failed": "失败",
    "cancelled": "已取消",
}


def local(at: datetime | None) -> str:
    """A timestamp as people at the bureau read it."""
    if at is None:
        return "—"
    return as_utc(at).astimezone(ZONE).strftime("%Y-%m-%d %H:%M:%S")


def duration_zh(delta: timedelta) -> str:
    """``1天2小时3分钟``; seconds are dropped (the report is not a stopwatch)."""
    minutes = max(int(delta.total_seconds() // 60), 0)
    d, rest = divmod(minutes, 24 * 60)
    h, m = divmod(rest, 60)
    parts = [
        f"{d}天" if d else "",
        f"{h}小时" if h else "",
        f"{m}分钟" if m or not (d or h) else "",
    ]
    return "".join(parts)


@dataclass
class TimelineItem:
    at: datetime
    category: str  # 检测 / 案件 / 处置指令 / 文书
    text: str

    @property
    def at_local(self) -> str:
        return local(self.at)


@dataclass
class CutPeriod:
    link_id: int
    link: str
    cut_at: datetime
    restored_at: datetime | None
    seconds: int

    @property
    def text(self) -> str:
        end = local(self.restored_at) if self.restored_at else "报告生成时仍断开"
        return f"{local(self.cut_at)} 至 {end}，共 {duration_zh(timedelta(seconds=self.seconds))}"


@dataclass
class ReportContext:
    case: dict[str, Any]
    institution: dict[str, Any]
    generated_at: datetime
    generated_by: str
    deadline: dict[str, Any]
    detections: list[dict[str, Any]]
    observations: list[dict[str, Any]]
    arp: list[dict[str, Any]]
    probe_hits: list[dict[str, Any]]
    timeline: list[TimelineItem]
    links: list[dict[str, Any]]
    cuts: list[CutPeriod]
    total_cut_seconds: int
    ips: list[str]
    terminals: list[str]
    documents: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    remediation: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"医保骨干网违规接入事件总结报告（案件 {self.case['id']}）"

    @property
    def generated_local(self) -> str:
        return local(self.generated_at)

    @property
    def total_cut_text(self) -> str:
        return duration_zh(timedelta(seconds=self.total_cut_seconds))


def _action_time(a: EnforcementAction) -> datetime:
    return as_utc(a.finished_at or a.updated_at or a.created_at)


def gather(
    session: Session, case_id: int, *, actor: str, now: datetime | None = None
) -> ReportContext:
    """Read the case and everything around it; raises NotFound for an unknown case."""
    case = session.get(Case, case_id)
    if case is None:
        raise NotFound(f"no case {case_id}")
    inst = session.get(Institution, case.institution_id)
    assert inst is not None
    generated_at = as_utc(now) if now is not None else utcnow()

    detections = list(
        session.scalars(
            select(Detection).where(Detection.case_id == case.id).order_by(Detection.detected_at)
        )
    )
    obs_ids = [d.observation_id for d in detections if d.observation_id is not None]
    observations = (
        list(session.scalars(select(Observation).where(Observation.id.in_(obs_ids))))
        if obs_ids
        else []
    )
    events = list(
        session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
        )
    )
    actions = list(
        session.scalars(
            select(EnforcementAction)
            .where(EnforcementAction.case_id == case.id)
            .order_by(EnforcementAction.id)
        )
    )
    documents = list(
        session.scalars(select(Document).where(Document.case_id == case.id).order_by(Document.id))
    )
    links = list(
        session.scalars(select(Link).where(Link.institution_id == inst.id).order_by(Link.id))
    )
    link_names = {ln.id: _link_name(ln) for ln in links}

    # ARP entries seen behind the institution's links while the case ran (terminals involved).
    case_end = as_utc(case.closed_at) if case.closed_at else generated_at
    arp_rows = list(
        session.scalars(
            select(ArpEntry)
            .where(
                or_(
                    ArpEntry.institution_id == inst.id,
                    ArpEntry.link_id.in_([ln.id for ln in links] or [-1]),
                ),
                ArpEntry.last_seen >= as_utc(case.opened_at) - timedelta(days=1),
                ArpEntry.first_seen <= case_end,
            )
            .order_by(ArpEntry.ip, ArpEntry.mac)
        )
    )

    det_rows = [
        {
            "id": d.id,
            "kind": d.kind,
            "kind_zh": KIND_ZH.get(d.kind, d.kind),
            "at": local(d.detected_at),
            "source": SOURCE_ZH.get(str(d.source), str(d.source)),
            "corroborated": "是" if d.corroborated else "否",
            "counted": d.counted,
            "evidence": _evidence_text(d.evidence),
        }
        for d in detections
    ]
    obs_rows = [
        {
            "id": o.id,
            "kind": o.kind,
            "src": o.src_addr or "—",
            "dst": o.dst_addr or "—",
            "port": o.dst_port if o.dst_port is not None else "—",
            "protocol": o.protocol if o.protocol is not None else "—",
            "flows": o.flows,
            "octets": o.octets,
            "first": local(o.first_seen),
            "last": local(o.last_seen),
        }
        for o in observations
    ]
    arp = [
        {
            "ip": a.ip,
            "mac": a.mac,
            "link": link_names.get(a.link_id or -1, "—"),
            "first": local(a.first_seen),
            "last": local(a.last_seen),
            "active": "是" if a.active else "否",
        }
        for a in arp_rows
    ]
    probe_hits = [
        r for r, d in zip(det_rows, detections, strict=True) if d.source == ObservationSource.PROBE
    ]

    timeline: list[TimelineItem] = []
    for d in detections:
        timeline.append(
            TimelineItem(
                as_utc(d.detected_at),
                "检测",
                f"发现{KIND_ZH.get(d.kind, d.kind)}（检测 {d.id}，来源"
                f"{SOURCE_ZH.get(str(d.source), str(d.source))}）",
            )
        )
    for ev in events:
        text = f"{ev.event}：{ev.from_state or '—'} → {ev.to_state}，{ev.actor}：{ev.reason}"
        timeline.append(TimelineItem(as_utc(ev.at), "案件", text))
    action_rows: list[dict[str, Any]] = []
    for a in actions:
        verb = "断开" if a.kind == ActionKind.CUT else "恢复"
        name = link_names.get(a.link_id, f"链路 {a.link_id}")
        timeline.append(
            TimelineItem(
                as_utc(a.created_at),
                "处置指令",
                f"申请{verb}{name}（指令 {a.id}，{STATE_ZH.get(str(a.state), str(a.state))}）",
            )
        )
        if a.state == ActionState.VERIFIED:
            cmds = "；".join(a.commands) if a.commands else "—"
            timeline.append(
                TimelineItem(
                    _action_time(a),
                    "处置指令",
                    f"{verb}{name}已下发并核验（指令 {a.id}，命令：{cmds}）",
                )
            )
        elif a.state == ActionState.FAILED:
            timeline.append(
                TimelineItem(_action_time(a), "处置指令", f"{verb}{name}失败：{a.last_error or ''}")
            )
        action_rows.append(
            {
                "id": a.id,
                "kind": "断开" if a.kind == ActionKind.CUT else "恢复",
                "link": name,
                "state": STATE_ZH.get(str(a.state), str(a.state)),
                "requested_by": a.requested_by,
                "approved_by": a.approved_by or "—",
                "finished": local(a.finished_at),
                "commands": list(a.commands or []),
                "verification": a.verification or "",
            }
        )
    doc_rows = []
    for doc in documents:
        timeline.append(
            TimelineItem(
                as_utc(doc.uploaded_at),
                "文书",
                f"收到{DOC_ZH.get(doc.kind, doc.kind)}《{doc.filename}》"
                f"（文书 {doc.id}，{doc.uploaded_by}）",
            )
        )
        doc_rows.append(
            {
                "id": doc.id,
                "kind": doc.kind,
                "kind_zh": DOC_ZH.get(doc.kind, doc.kind),
                "filename": doc.filename,
                "sha256": doc.sha256,
                "size": doc.size,
                "uploaded_by": doc.uploaded_by,
                "at": local(doc.uploaded_at),
            }
        )
    timeline.sort(key=lambda t: t.at)

    cuts = _cut_periods(actions, link_names, generated_at)
    ips = _ips(detections, observations, arp_rows)
    terminals = sorted({f"{a.ip} ({a.mac})" for a in arp_rows})

    deadline = session.scalars(
        select(Deadline)
        .where(Deadline.case_id == case.id, Deadline.kind == REPORT_DEADLINE_KIND)
        .order_by(Deadline.id.desc())
        .limit(1)
    ).first()

    rect_docs = [r for r in doc_rows if r["kind"] in RECTIFICATION_KINDS]
    expl_docs = [r for r in doc_rows if r["kind"] in EXPLANATION_KINDS]
    return ReportContext(
        case={
            "id": case.id,
            "policy": case.policy,
            "kind": case.kind,
            "kind_zh": KIND_ZH.get(case.kind, case.kind),
            "strike": case.strike,
            "counts": case.counts,
            "step": case.step,
            "state": case.state,
            "is_open": case.is_open,
            "consequences": case.consequences,
            "opened_at": local(case.opened_at),
            "handling_ended_at": local(case.handling_ended_at),
            "closed_at": local(case.closed_at),
            "required_documents": [DOC_ZH.get(k, k) for k in case.required_documents or []],
        },
        institution={
            "id": inst.id,
            "code": inst.code,
            "name": inst.name,
            "kind": str(inst.kind),
            "status": str(inst.status),
            "county_code": inst.county.code,
            "county_name": inst.county.name,
        },
        generated_at=generated_at,
        generated_by=actor,
        deadline=_deadline_status(deadline, generated_at),
        detections=det_rows,
        observations=obs_rows,
        arp=arp,
        probe_hits=probe_hits,
        timeline=timeline,
        links=[
            {"id": ln.id, "name": link_names[ln.id], "kind": str(ln.kind), "state": str(ln.state)}
            for ln in links
        ],
        cuts=cuts,
        total_cut_seconds=sum(c.seconds for c in cuts),
        ips=ips,
        terminals=terminals,
        documents=doc_rows,
        actions=action_rows,
        remediation={
            "text": (case.remediation or "").strip(),
            "rectification": rect_docs,
            "explanation": expl_docs,
        },
    )


def _link_name(ln: Link) -> str:
    where = ln.interface or ln.vpdn_account or "?"
    return f"链路{ln.id}（{where}）"


def _evidence_text(evidence: dict[str, Any]) -> str:
    parts = []
    for key, value in sorted((evidence or {}).items()):
        if isinstance(value, list | dict):
            value = str(value)[:120]
        parts.append(f"{key}={value}")
    return "；".join(parts)[:400] or "—"


def _cut_periods(
    actions: list[EnforcementAction], names: dict[int, str], now: datetime
) -> list[CutPeriod]:
    """From verified cuts and restores only: a request that was never executed cut nothing."""
    done = sorted(
        (a for a in actions if a.state == ActionState.VERIFIED), key=lambda a: _action_time(a)
    )
    open_cut: dict[int, datetime] = {}
    periods: list[CutPeriod] = []
    for a in done:
        at = _action_time(a)
        if a.kind == ActionKind.CUT:
            open_cut.setdefault(a.link_id, at)
        elif a.link_id in open_cut:
            start = open_cut.pop(a.link_id)
            periods.append(
                CutPeriod(
                    a.link_id,
                    names.get(a.link_id, str(a.link_id)),
                    start,
                    at,
                    int((at - start).total_seconds()),
                )
            )
    for link_id, start in open_cut.items():
        periods.append(
            CutPeriod(
                link_id,
                names.get(link_id, str(link_id)),
                start,
                None,
                int((now - start).total_seconds()),
            )
        )
    return sorted(periods, key=lambda p: (p.cut_at, p.link_id))


def _ips(
    detections: list[Detection], observations: list[Observation], arp: list[ArpEntry]
) -> list[str]:
    found: set[str] = set()

    def add(value: Any) -> None:
        if isinstance(value, str):
            try:
                found.add(str(ipaddress.ip_address(value)))
            except ValueError:
                return

    for o in observations:
        add(o.src_addr)
        add(o.dst_addr)
    for a in arp:
        add(a.ip)
    for d in detections:
        for key, value in (d.evidence or {}).items():
            if "addr" in key or key in ("ip", "src", "dst", "source", "destination", "beacon"):
                add(value)
            if isinstance(value, list):
                for v in value:
                    add(v)
    return sorted(found, key=lambda s: (":" in s, ipaddress.ip_address(s)))


def _deadline_status(deadline: Deadline | None, now: datetime) -> dict[str, Any]:
    if deadline is None:
        return {"text": "未设定（案件处置尚未结束）", "due": "—", "met": "—", "overdue": False}
    due = as_utc(deadline.due_at)
    if deadline.met_at is not None:
        met = as_utc(deadline.met_at)
        text = "已按时完成" if met <= due else "已完成（逾期）"
        return {"text": text, "due": local(due), "met": local(met), "overdue": met > due}
    if now > due:
        return {"text": "已逾期", "due": local(due), "met": "—", "overdue": True}
    return {"text": "期限内", "due": local(due), "met": "—", "overdue": False}


def allowed_document_kinds(case: Case) -> list[str]:
    """Kinds a case accepts: every document its policy names anywhere, plus the general ones."""
    from core.documents import GENERAL_KINDS
    from rules.policy import default_store

    policy = default_store().load(case.policy)
    kinds: list[str] = []
    for step in policy.steps.values():
        kinds += step.on_open.required_documents
        for spec in step.transitions.values():
            kinds += spec.requires_documents
    kinds += [d.document for d in policy.on_handling_end]
    kinds += list(GENERAL_KINDS)
    return list(dict.fromkeys(kinds))
