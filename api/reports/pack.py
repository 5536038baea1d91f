"""The evidence pack: one ZIP per case that an auditor can check without the service.

Contents: the summary report (Markdown, HTML, PDF), every document as uploaded, the evidence
records (case and its events, detections, observations, ARP entries, enforcement actions),
the sanitized transcript of each command session, and the audit entries that cover the case.
``manifest.json`` lists every file with its SHA-256 and size; ``manifest.sha256`` says the
same in ``sha256sum`` format, so ``sha256sum -c manifest.sha256`` checks the pack with
coreutils alone. Each audit entry carries its chain hash; the canonical form is in
``README.txt`` so the hashes can be recomputed by anyone. The SHA-256 of ``manifest.json`` is
written to the audit chain (``pack.generated``), so a pack whose manifest was rewritten to
match altered files no longer matches the service's record.

Device config backups are not included: they may hold (hashed) device credentials (Jilin
art. 33); the transcripts are already sanitized by the enforcer."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from api.reports.context import gather
from api.reports.render import generate
from core import audit
from core.documents import EXTENSIONS, BlobStore
from core.errors import NotFound, ValidationFailed
from core.models import (
    ArpEntry,
    AuditEvent,
    AuditHead,
    Case,
    CaseEvent,
    Deadline,
    Detection,
    Document,
    EnforcementAction,
    Observation,
    Report,
)
from core.settings import Settings
from core.timeutil import as_utc, utcnow

MANIFEST = "manifest.json"
MANIFEST_SUMS = "manifest.sha256"
README = "README.txt"
_CONTROL = {MANIFEST, MANIFEST_SUMS, README}
MAX_PACK_MEMBER = 512 * 1024 * 1024  # refuse zip bombs while verifying

README_TEXT = """医保骨干网事件证据包 / Edge Warden evidence pack
==============================================

1. 文件完整性 (file integrity):
       unzip pack.zip -d pack && cd pack && sha256sum -c manifest.sha256
   manifest.json 列出同样的文件、SHA-256 与大小；manifest.json 自身的 SHA-256
   记录在服务的审计链中（action = pack.generated），可与服务端记录比对。

2. 审计记录 (audit/entries.jsonl): 每行一条审计记录。hash 为下列 JSON 的 SHA-256：
       {"action","actor","at","data","id","object_id","object_type","prev_hash","reason"}
   键按字母排序，无空白（separators=(",", ":")），ensure_ascii=False，UTF-8。
   Python:
       body = {k: e[k] for k in ("id","at","actor","action","object_type",
               "object_id","reason","data","prev_hash")}
       ok = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
               ensure_ascii=False).encode()).hexdigest() == e["hash"]
   相邻编号 (id, id+1) 的记录须满足 prev_hash(id+1) == hash(id)。

3. 或使用服务自带的检查: edgewarden pack verify pack.zip
"""


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str).encode()


def _iso(at: datetime | None) -> str | None:
    return None if at is None else as_utc(at).isoformat()


def audit_body(event: AuditEvent) -> dict[str, Any]:
    """An audit entry as the pack stores it: the hashed fields plus ``hash``."""
    return {
        "id": event.id,
        "at": event.at.isoformat(timespec="microseconds"),
        "actor": event.actor,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "reason": event.reason,
        "data": event.data,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def audit_entry_hash(entry: dict[str, Any]) -> str:
    """The chain hash of a stored entry (the same canonical form as core.audit)."""
    keys = (
        "id",
        "at",
        "actor",
        "action",
        "object_type",
        "object_id",
        "reason",
        "data",
        "prev_hash",
    )
    body = {k: entry.get(k) for k in keys}
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()


def case_audit_entries(session: Session, case: Case, ids: dict[str, list[int]]) -> list[AuditEvent]:
    """Entries about the case, its detections, actions, documents, deadlines, reports and
    the institution status changes it caused."""
    conds = [(AuditEvent.object_type == "case") & (AuditEvent.object_id == str(case.id))]
    for object_type, values in ids.items():
        if values:
            conds.append(
                (AuditEvent.object_type == object_type)
                & AuditEvent.object_id.in_([str(v) for v in values])
            )
    conds.append(AuditEvent.object_type.in_(("institution", "incident", "evidence_pack")))  # type: ignore[arg-type]
    rows = session.scalars(select(AuditEvent).where(or_(*conds)).order_by(AuditEvent.id))
    out = []
    for ev in rows:
        if ev.object_type == "institution":
            if ev.object_id != str(case.institution_id) or (ev.data or {}).get("case") != case.id:
                continue
        elif (
            ev.object_type in ("incident", "evidence_pack")
            and (ev.data or {}).get("case") != case.id
        ):
            continue
        out.append(ev)
    return out


def build_pack(
    session: Session,
    case_id: int,
    *,
    actor: str,
    settings: Settings,
    meets_deadline: bool = True,
    now: datetime | None = None,
) -> bytes:
    """The ZIP for ``case_id``; records a ``pack.generated`` audit entry with the manifest hash."""
    when = as_utc(now) if now is not None else utcnow()
    case = session.get(Case, case_id)
    if case is None:
        raise NotFound(f"no case {case_id}")
    files: dict[str, bytes] = {}
    for fmt in ("md", "html", "pdf"):
        data, _ = generate(
            session,
            case_id,
            fmt,
            actor=actor,
            settings=settings,
            meets_deadline=meets_deadline,
            now=when,
        )
        files[f"report/summary.{fmt}"] = data
    ctx = gather(session, case_id, actor=actor, now=when)

    docs = list(
        session.scalars(select(Document).where(Document.case_id == case_id).order_by(Document.id))
    )
    doc_meta = []
    store = BlobStore(Path(settings.documents_dir))
    for doc in docs:
        name = f"documents/{doc.id}-{doc.kind}{EXTENSIONS.get(doc.content_type, '.bin')}"
        files[name] = store.read(doc.sha256)
        doc_meta.append(
            {
                "path": name,
                "id": doc.id,
                "kind": doc.kind,
                "filename": doc.filename,
                "sha256": doc.sha256,
                "size": doc.size,
                "uploaded_by": doc.uploaded_by,
                "uploaded_at": _iso(doc.uploaded_at),
                "note": doc.note,
            }
        )
    events = list(
        session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)
        )
    )
    detections = list(
        session.scalars(
            select(Detection).where(Detection.case_id == case_id).order_by(Detection.id)
        )
    )
    obs_ids = [d.observation_id for d in detections if d.observation_id is not None]
    observations = list(
        session.scalars(select(Observation).where(Observation.id.in_(obs_ids or [-1])))
    )
    actions = list(
        session.scalars(
            select(EnforcementAction)
            .where(EnforcementAction.case_id == case_id)
            .order_by(EnforcementAction.id)
        )
    )
    deadlines = list(
        session.scalars(select(Deadline).where(Deadline.case_id == case_id).order_by(Deadline.id))
    )
    reports = list(
        session.scalars(select(Report).where(Report.case_id == case_id).order_by(Report.id))
    )
    arp = list(
        session.scalars(
            select(ArpEntry)
            .where(ArpEntry.institution_id == case.institution_id)
            .order_by(ArpEntry.id)
        )
    )
    files["evidence/case.json"] = _json(
        {
            "case": {
                c: getattr(case, c)
                for c in (
                    "id",
                    "policy",
                    "kind",
                    "counts",
                    "strike",
                    "step",
                    "state",
                    "is_open",
                    "window_start",
                    "window_end",
                    "required_documents",
                    "consequences",
                    "remediation",
                )
            }
            | {
                "opened_at": _iso(case.opened_at),
                "handling_ended_at": _iso(case.handling_ended_at),
                "closed_at": _iso(case.closed_at),
            },
            "institution": ctx.institution,
            "links": ctx.links,
            "events": [
                {
                    "id": e.id,
                    "at": _iso(e.at),
                    "event": e.event,
                    "from": e.from_state,
                    "to": e.to_state,
                    "actor": e.actor,
                    "reason": e.reason,
                    "detection_id": e.detection_id,
                    "data": e.data,
                }
                for e in events
            ],
            "deadlines": [
                {
                    "id": d.id,
                    "kind": d.kind,
                    "description": d.description,
                    "due_at": _iso(d.due_at),
                    "met_at": _iso(d.met_at),
                    "alerted_at": _iso(d.alerted_at),
                }
                for d in deadlines
            ],
            "documents": doc_meta,
            "reports": [
                {
                    "id": r.id,
                    "format": r.format,
                    "sha256": r.sha256,
                    "generated_by": r.generated_by,
                    "generated_at": _iso(r.generated_at),
                }
                for r in reports
            ],
        }
    )
    files["evidence/detections.json"] = _json(
        [
            {
                "id": d.id,
                "key": d.key,
                "kind": d.kind,
                "source": str(d.source),
                "severity": d.severity,
                "corroborated": d.corroborated,
                "counted": d.counted,
                "detected_at": _iso(d.detected_at),
                "observation_id": d.observation_id,
                "link_id": d.link_id,
                "evidence": d.evidence,
            }
            for d in detections
        ]
    )
    files["evidence/observations.json"] = _json(
        [
            {
                "id": o.id,
                "kind": o.kind,
                "source": str(o.source),
                "src_addr": o.src_addr,
                "dst_addr": o.dst_addr,
                "dst_port": o.dst_port,
                "protocol": o.protocol,
                "first_seen": _iso(o.first_seen),
                "last_seen": _iso(o.last_seen),
                "flows": o.flows,
                "packets": o.packets,
                "octets": o.octets,
                "sample": o.sample,
            }
            for o in observations
        ]
    )
    files["evidence/arp.json"] = _json(
        [
            {
                "ip": a.ip,
                "mac": a.mac,
                "link_id": a.link_id,
                "if_index": a.if_index,
                "first_seen": _iso(a.first_seen),
                "last_seen": _iso(a.last_seen),
                "active": a.active,
            }
            for a in arp
        ]
    )
    files["evidence/actions.json"] = _json(
        [
            {
                "id": a.id,
                "kind": str(a.kind),
                "state": str(a.state),
                "mode": str(a.mode),
                "link_id": a.link_id,
                "method": a.method,
                "corroborated": a.corroborated,
                "reason": a.reason,
                "requested_by": a.requested_by,
                "approved_by": a.approved_by,
                "approved_at": _iso(a.approved_at),
                "started_at": _iso(a.started_at),
                "finished_at": _iso(a.finished_at),
                "attempts": a.attempts,
                "commands": a.commands,
                "verification": a.verification,
                "last_error": a.last_error,
            }
            for a in actions
        ]
    )
    for a in actions:
        if a.transcript or a.verification:
            text = (a.transcript or "") + (
                f"\n--- verification ---\n{a.verification}\n" if a.verification else ""
            )
            files[f"transcripts/action-{a.id}.txt"] = text.encode("utf-8")

    entries = case_audit_entries(
        session,
        case,
        {
            "detection": [d.id for d in detections],
            "enforcement_action": [a.id for a in actions],
            "document": [d.id for d in docs],
            "deadline": [d.id for d in deadlines],
            "report": [r.id for r in reports],
        },
    )
    files["audit/entries.jsonl"] = "".join(
        json.dumps(audit_body(e), ensure_ascii=False, sort_keys=True) + "\n" for e in entries
    ).encode("utf-8")
    head = session.get(AuditHead, 1)

    manifest = {
        "format": "edgewarden-evidence-pack/1",
        "case_id": case_id,
        "institution": ctx.institution["code"],
        "generated_at": when.isoformat(),
        "generated_by": actor,
        "algorithm": "sha256",
        "audit_head": {"last_id": head.last_id, "last_hash": head.last_hash} if head else None,
        "files": [
            {"path": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in sorted(files.items())
        ],
    }
    manifest_bytes = _json(manifest)
    sums = "".join(f"{f['sha256']}  {f['path']}\n" for f in manifest["files"])
    manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
    audit.record(
        session,
        actor=actor,
        action="pack.generated",
        object_type="evidence_pack",
        object_id=case_id,
        reason=f"evidence pack of case {case_id}",
        data={"case": case_id, "manifest_sha256": manifest_sha, "files": len(files)},
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(files.items()):
            zf.writestr(name, data)
        zf.writestr(MANIFEST, manifest_bytes)
        zf.writestr(MANIFEST_SUMS, sums)
        zf.writestr(README, README_TEXT)
    return buf.getvalue()


@dataclass
class PackCheck:
    ok: bool
    files: int = 0
    audit_entries: int = 0
    manifest_sha256: str = ""
    problems: list[str] = field(default_factory=list)


def verify_pack(source: bytes | Path) -> PackCheck:
    """Check a pack offline: every listed file is present with its hash and size, nothing is
    added, ``manifest.sha256`` agrees, and every audit entry's hash recomputes."""
    raw = source.read_bytes() if isinstance(source, Path) else source
    check = PackCheck(ok=False)
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile:
        check.problems.append("not a ZIP file")
        return check
    with zf:
        infos = {i.filename: i for i in zf.infolist()}
        if MANIFEST not in infos:
            check.problems.append("manifest.json is missing")
            return check
        manifest_bytes = zf.read(MANIFEST)
        check.manifest_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
        try:
            manifest = json.loads(manifest_bytes)
            listed = {f["path"]: f for f in manifest["files"]}
        except (ValueError, KeyError, TypeError):
            check.problems.append("manifest.json is not a pack manifest")
            return check
        for name, entry in sorted(listed.items()):
            info = infos.get(name)
            if info is None:
                check.problems.append(f"{name}: listed in the manifest but missing")
                continue
            if info.file_size > MAX_PACK_MEMBER:
                check.problems.append(f"{name}: larger than {MAX_PACK_MEMBER} bytes")
                continue
            data = zf.read(name)
            if len(data) != entry.get("size") or hashlib.sha256(data).hexdigest() != entry.get(
                "sha256"
            ):
                check.problems.append(f"{name}: content differs from the manifest (altered)")
            check.files += 1
        for name in sorted(set(infos) - set(listed) - _CONTROL):
            check.problems.append(f"{name}: not listed in the manifest (added)")
        if MANIFEST_SUMS in infos:
            expected = "".join(f"{f['sha256']}  {f['path']}\n" for f in manifest["files"])
            if zf.read(MANIFEST_SUMS).decode("utf-8", "replace") != expected:
                check.problems.append("manifest.sha256 disagrees with manifest.json")
        else:
            check.problems.append("manifest.sha256 is missing")
        if "audit/entries.jsonl" in infos and "audit/entries.jsonl" in listed:
            prev: dict[str, Any] | None = None
            for n, line in enumerate(zf.read("audit/entries.jsonl").decode().splitlines(), 1):
                try:
                    entry = json.loads(line)
                except ValueError:
                    check.problems.append(f"audit entry line {n}: not JSON")
                    continue
                if audit_entry_hash(entry) != entry.get("hash"):
                    check.problems.append(f"audit entry {entry.get('id')}: hash does not match")
                if (
                    prev is not None
                    and entry.get("id") == prev.get("id", 0) + 1
                    and entry.get("prev_hash") != prev.get("hash")
                ):
                    check.problems.append(f"audit entry {entry.get('id')}: chain link broken")
                prev = entry
                check.audit_entries += 1
    check.ok = not check.problems
    return check


def pack_manifest_recorded(session: Session, case_id: int, manifest_sha256: str) -> bool:
    """True if the service generated a pack of ``case_id`` with this manifest."""
    for ev in session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "pack.generated", AuditEvent.object_id == str(case_id)
        )
    ):
        if (ev.data or {}).get("manifest_sha256") == manifest_sha256:
            return True
    return False


def require_ok(check: PackCheck) -> None:
    """Raise a ValidationFailed listing the problems (for the CLI's exit code)."""
    if not check.ok:
        raise ValidationFailed("the evidence pack does NOT verify", check.problems)
