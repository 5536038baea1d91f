"""Audit entries → webhook events: which audit actions are events, and the payload of each.

The payload is the generic format's body and the source of the WeCom/DingTalk text. It names the
institution and its county when the audited object leads to one (detection, case, enforcement
action, case deadline), so subscriptions can be filtered by county (属地原则)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from core.models import AuditEvent, Case, Deadline, Detection, EnforcementAction, Institution, Link

EVENT_TYPES = (
    "detection.created",
    "case.opened",
    "case.transitioned",
    "action.verified",
    "action.failed",
    "deadline.overdue",
)
PING = "ping"
FORMATS = ("generic", "wecom", "dingtalk")

# Exact audit actions recorded by rules/engine.py and enforcer/queue.py.
_BY_ACTION = {
    "detection.recorded": "detection.created",
    "case.open": "case.opened",
    "enforcement.verified": "action.verified",
    "enforcement.failed": "action.failed",
    "enforcement.refused": "action.failed",
    "deadline.overdue": "deadline.overdue",
}
# Every other ``case.<event>`` of the engine is a transition (reconnect, consequences, close…).
_NOT_TRANSITIONS = {"case.open", "case.evidence"}

KIND_ZH = {
    "outbound_internet": "违规外联互联网",
    "dual_homed": "一机两网/双网运行",
    "remote_control": "远程控制软件",
    "internet_vpn": "互联网VPN接入",
    "unauthorized_ip": "使用未分配IP",
    "network_extension": "违规延伸网络",
    "security_incident": "网络安全事件",
    "data_leak": "个人信息泄露",
}


def event_type(action: str) -> str | None:
    """The webhook event type of an audit action, or None when it is not an event."""
    if action in _BY_ACTION:
        return _BY_ACTION[action]
    if action.startswith("case.") and action not in _NOT_TRANSITIONS:
        return "case.transitioned"
    return None


def audit_actions_prefilter() -> list[str]:
    """Audit actions worth reading (the ``case.*`` transitions are matched by prefix)."""
    return sorted(_BY_ACTION)


def _institution_id(session: Session, audit: AuditEvent) -> int | None:
    oid = int(audit.object_id) if audit.object_id.isdigit() else None
    if oid is None:
        return None
    finders: dict[str, Callable[[int], int | None]] = {
        "detection": lambda i: getattr(session.get(Detection, i), "institution_id", None),
        "case": lambda i: getattr(session.get(Case, i), "institution_id", None),
        "enforcement_action": lambda i: _action_institution(session, i),
        "deadline": lambda i: _deadline_institution(session, i),
    }
    finder = finders.get(audit.object_type)
    return finder(oid) if finder else None


def _action_institution(session: Session, action_id: int) -> int | None:
    action = session.get(EnforcementAction, action_id)
    if action is None:
        return None
    link = session.get(Link, action.link_id)
    return link.institution_id if link is not None else None


def _deadline_institution(session: Session, deadline_id: int) -> int | None:
    deadline = session.get(Deadline, deadline_id)
    if deadline is None or deadline.case_id is None:
        return None
    case = session.get(Case, deadline.case_id)
    return case.institution_id if case is not None else None


def _summaries(kind: str, audit: AuditEvent, inst: str) -> tuple[str, str]:
    data = audit.data or {}
    at = f"（{inst}）" if inst else ""
    at_en = f" at {inst}" if inst else ""
    if kind == "detection.created":
        k = str(data.get("kind", ""))
        return (
            f"发现违规：{KIND_ZH.get(k, k)}{at}",
            f"Detection {audit.object_id}: {k}{at_en}",
        )
    if kind == "case.opened":
        strike = data.get("strike") or 0
        zh_strike = f"第{strike}次违规，" if strike else ""
        return (
            f"立案 {audit.object_id}{at}：{zh_strike}状态 {data.get('to')}",
            f"Case {audit.object_id} opened{at_en}: strike {strike}, state {data.get('to')}",
        )
    if kind == "case.transitioned":
        name = audit.action.removeprefix("case.")
        return (
            f"案件 {audit.object_id}{at}：{name}，{data.get('from')} → {data.get('to')}",
            f"Case {audit.object_id}{at_en}: {name}, {data.get('from')} → {data.get('to')}",
        )
    if kind == "action.verified":
        return (
            f"处置已执行并验证：动作 {audit.object_id}{at}，链路状态 {data.get('link_state')}",
            f"Action {audit.object_id} verified{at_en}: link {data.get('link_state')}",
        )
    if kind == "action.failed":
        return (
            f"处置失败：动作 {audit.object_id}{at}：{audit.reason}",
            f"Action {audit.object_id} failed{at_en}: {audit.reason}",
        )
    if kind == "deadline.overdue":
        return (
            f"期限已逾期：{audit.reason}{at}",
            f"Deadline {audit.object_id} overdue{at_en}: {audit.reason}",
        )
    return (audit.reason, audit.reason)


def build(session: Session, audit: AuditEvent) -> dict[str, Any] | None:
    """The payload for one audit entry, or None when the entry is not a webhook event."""
    kind = event_type(audit.action)
    if kind is None:
        return None
    inst_id = _institution_id(session, audit)
    inst = session.get(Institution, inst_id) if inst_id is not None else None
    institution = None
    county_code = None
    if inst is not None:
        institution = {"code": inst.code, "name": inst.name}
        county_code = inst.county.code
    zh, en = _summaries(kind, audit, f"{inst.code} {inst.name}" if inst else "")
    return {
        "id": str(audit.id),
        "type": kind,
        "time": audit.at.isoformat(),
        "object": {"type": audit.object_type, "id": audit.object_id},
        "institution": institution,
        "county_code": county_code,
        "summary_zh": zh,
        "summary_en": en,
        "actor": audit.actor,
        "reason": audit.reason,
        "audit_action": audit.action,
        "data": audit.data or {},
    }


def ping(subscription_name: str, at: str, nonce: str) -> dict[str, Any]:
    """The test event of ``POST /webhooks/{id}/test``."""
    return {
        "id": f"ping-{nonce}",
        "type": PING,
        "time": at,
        "object": {"type": "webhook", "id": subscription_name},
        "institution": None,
        "county_code": None,
        "summary_zh": f"Edge Warden 测试消息：订阅 {subscription_name} 已连通",
        "summary_en": f"Edge Warden test message: subscription {subscription_name} is reachable",
        "actor": "",
        "reason": "",
        "audit_action": "",
        "data": {},
    }
