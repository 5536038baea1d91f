"""The rules engine: observations → detections → cases → enforcement requests.

One API for collectors, the REST API and the scheduler:

- :func:`observe` turns stored observations into detections (idempotent per observation);
- :func:`detect` records a finding that has no observation (a probe hit, an incident);
- :func:`transition` moves a case on a person's decision, validated against the policy;
- :func:`check_deadlines` marks met and overdue deadlines.

Everything the engine decides comes from the policy file of the institution's county; the
engine never executes a cut, it queues :class:`EnforcementAction` rows for the enforcer. Each
change is written with its audit entry in the caller's transaction; the caller commits.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import audit
from core.actors import Actor
from core.models import (
    ActionKind,
    ActionMode,
    ActionState,
    Case,
    CaseEvent,
    Deadline,
    Detection,
    Document,
    EnforcementAction,
    Incident,
    Institution,
    InstitutionStatus,
    Link,
    LinkState,
    Observation,
    ObservationSource,
    Role,
    Vendor,
    VendorStatus,
)
from core.timeutil import as_utc, utcnow
from rules.detection import KindRule
from rules.errors import PolicyError, TransitionRefused
from rules.policy import DeadlineSpec, Policy, PolicyStore, resolve_store

log = logging.getLogger(__name__)

StoreArg = PolicyStore | Sequence[Path] | None
VENDOR_DEADLINE_PREFIX = "vendor_fix:"


# --- detections -----------------------------------------------------------------------------


def observe(
    session: Session,
    observations: Sequence[Observation],
    *,
    actor: str,
    store: StoreArg = None,
) -> list[Detection]:
    """Judge stored observations; return the detections this call created.

    Delivering an observation again changes nothing unless it brings new information: a
    detection that becomes corroborated is marked so (and may upgrade its queued cut), and
    traffic seen after the observation's case was closed is a new finding.

    Whole batches are judged with a few queries (a collector hands over thousands at a time):
    institutions, links, detections, cases and second-source evidence are loaded once per call
    by :class:`_Batch`; the decisions and the rows written are those of judging the
    observations one at a time in order (tests/netflow/test_store_bulk.py checks this)."""
    policies = resolve_store(store)
    batch = _Batch(session, observations, policies)
    created: list[Detection] = []
    for obs in observations:
        det = _judge(session, obs, actor, batch)
        if det is not None:
            created.append(det)
    return created


_IN_CHUNK = 500  # ids per IN (...) list: far below SQLite's and PostgreSQL's parameter limits


def _chunks(values: Sequence[Any]) -> list[Sequence[Any]]:
    return [values[i : i + _IN_CHUNK] for i in range(0, len(values), _IN_CHUNK)]


class _Batch:
    """Everything ``observe`` reads about one batch, loaded up front and kept current as the
    batch writes (new detections, new cases), so judging needs no per-observation query.

    Holds strong references to what it loaded: the session's identity map is weak, and
    without them ``session.get`` would reload an institution for every observation."""

    def __init__(
        self, session: Session, observations: Sequence[Observation], policies: PolicyStore
    ) -> None:
        self.session = session
        self.policies = policies
        ids = sorted({o.id for o in observations if o.id is not None})
        link_ids = sorted(
            {o.link_id for o in observations if o.institution_id is None and o.link_id}
        )
        self.links: dict[int, Link] = {}
        for part in _chunks(link_ids):
            self.links.update(
                (ln.id, ln) for ln in session.scalars(select(Link).where(Link.id.in_(part)))
            )
        inst_ids = {o.institution_id for o in observations if o.institution_id is not None}
        inst_ids |= {ln.institution_id for ln in self.links.values()}
        self.institutions: dict[int, Institution] = {}
        for part in _chunks(sorted(inst_ids)):
            q = select(Institution).where(Institution.id.in_(part))
            self.institutions.update((i.id, i) for i in session.scalars(q))
        self._policy: dict[int, Policy] = {}
        # detections under the base key obs:<id> (the absence of a base key is authoritative);
        # after-case keys are rare and looked up one by one
        self.base_keys = {f"obs:{i}" for i in ids}
        self.detections: dict[str, Detection | None] = {}
        for part in _chunks(sorted(self.base_keys)):
            for det in session.scalars(select(Detection).where(Detection.key.in_(part))):
                self.detections[det.key] = det
        self.cases: dict[int, Case] = {}
        case_ids = sorted({d.case_id for d in self.detections.values() if d and d.case_id})
        for part in _chunks(case_ids):
            self.cases.update(
                (c.id, c) for c in session.scalars(select(Case).where(Case.id.in_(part)))
            )
        # open cases per institution in id order: observe opens cases but never closes one
        self.open_cases: dict[int, list[Case]] = {i: [] for i in self.institutions}
        for part in _chunks(sorted(self.institutions)):
            open_q = (
                select(Case)
                .where(Case.institution_id.in_(part), Case.is_open.is_(True))
                .order_by(Case.id)
            )
            for case in session.scalars(open_q):
                self.open_cases[case.institution_id].append(case)
                self.cases[case.id] = case
        self.upgraded: set[int] = set()  # cases whose pending cuts _upgrade_cuts has handled
        self._observations = observations
        self._others: dict[
            ObservationSource, dict[tuple[int, str], list[tuple[datetime, datetime]]]
        ] = {}

    def institution_of(self, obs: Observation) -> Institution | None:
        institution_id = obs.institution_id
        if institution_id is None and obs.link_id is not None:
            link = self.links.get(obs.link_id) or self.session.get(Link, obs.link_id)
            institution_id = link.institution_id if link is not None else None
        if institution_id is None:
            return None
        inst = self.institutions.get(institution_id)
        if inst is None:  # not preloaded (a link read here for the first time)
            inst = self.session.get(Institution, institution_id)
            if inst is not None:
                self.institutions[inst.id] = inst
                q = (
                    select(Case)
                    .where(Case.institution_id == inst.id, Case.is_open.is_(True))
                    .order_by(Case.id)
                )
                self.open_cases[inst.id] = list(self.session.scalars(q))
                self.cases.update((c.id, c) for c in self.open_cases[inst.id])
        return inst

    def policy_of(self, inst: Institution) -> Policy:
        policy = self._policy.get(inst.id)
        if policy is None:
            policy = self._policy[inst.id] = self.policies.for_institution(inst)
        return policy

    def detection(self, key: str) -> Detection | None:
        if key in self.detections:
            return self.detections[key]
        if key in self.base_keys:
            return None
        det = self.session.scalar(select(Detection).where(Detection.key == key))
        self.detections[key] = det
        return det

    def case(self, case_id: int) -> Case | None:
        case = self.cases.get(case_id)
        if case is None:
            case = self.session.get(Case, case_id)
            if case is not None:
                self.cases[case_id] = case
        return case

    def open_case_for(self, institution_id: int, policy: Policy, kind: str) -> Case | None:
        """:func:`open_case_for` answered from the batch's open cases."""
        rule = policy.detection.kinds[kind]
        for case in self.open_cases.get(institution_id, ()):
            if case.is_open and (
                case.counts if rule.counts else (not case.counts and case.kind == kind)
            ):
                return case
        return None

    def opened(self, case: Case) -> None:
        self.open_cases.setdefault(case.institution_id, []).append(case)
        self.cases[case.id] = case

    def recorded(self, det: Detection) -> None:
        self.detections[det.key] = det

    def other_source_seen(self, obs: Observation, within: timedelta) -> bool:
        """Whether another source observed the same kind at the same institution around
        ``obs`` (±``within``): the second-source query of one-by-one judging, answered from
        one query per source for the whole batch."""
        assert obs.institution_id is not None
        table = self._others.get(obs.source)
        if table is None:
            table = self._others[obs.source] = self._load_others(obs.source, within)
        lo = as_utc(obs.first_seen) - within
        hi = as_utc(obs.last_seen) + within
        return any(
            last >= lo and first <= hi
            for first, last in table.get((obs.institution_id, obs.kind), ())
        )

    def _load_others(
        self, source: ObservationSource, within: timedelta
    ) -> dict[tuple[int, str], list[tuple[datetime, datetime]]]:
        mine = [
            o for o in self._observations if o.source == source and o.institution_id is not None
        ]
        policies = {p.name: p for p in map(self.policy_of, list(self.institutions.values()))}
        widest = max(
            [within]
            + [
                timedelta(seconds=rule.corroboration.second_source_within_s)
                for policy in policies.values()
                for rule in policy.detection.kinds.values()
            ]
        )
        lo = min(as_utc(o.first_seen) for o in mine) - widest
        hi = max(as_utc(o.last_seen) for o in mine) + widest
        insts = sorted({o.institution_id for o in mine if o.institution_id is not None})
        kinds = sorted({o.kind for o in mine})
        out: dict[tuple[int, str], list[tuple[datetime, datetime]]] = {}
        for part in _chunks(insts):
            rows = self.session.execute(
                select(
                    Observation.institution_id,
                    Observation.kind,
                    Observation.first_seen,
                    Observation.last_seen,
                ).where(
                    Observation.institution_id.in_(part),
                    Observation.kind.in_(kinds),
                    Observation.source != source,
                    Observation.last_seen >= lo,
                    Observation.first_seen <= hi,
                )
            )
            for inst_id, kind, first, last in rows:
                if inst_id is not None:
                    out.setdefault((inst_id, kind), []).append((as_utc(first), as_utc(last)))
        return out


def _judge(session: Session, obs: Observation, actor: str, batch: _Batch) -> Detection | None:
    if obs.id is None:
        raise ValueError("observe() needs flushed observations (with ids)")
    institution = batch.institution_of(obs)
    if institution is None:
        log.debug("observation %s names no institution: not a finding", obs.id)
        return None
    policy = batch.policy_of(institution)
    rule = policy.detection.kinds.get(obs.kind)
    if rule is None:
        log.debug("policy %s has no kind %r: observation %s ignored", policy.name, obs.kind, obs.id)
        return None
    if policy.detection.is_ignored(obs.src_addr) or policy.detection.is_ignored(obs.dst_addr):
        return None
    if obs.source == ObservationSource.NETFLOW and obs.flows < rule.detect_min_flows:
        return None

    key = _observation_key(obs, batch)
    existing = batch.detection(key)
    if existing is not None:
        if not existing.corroborated and _corroborated(obs, rule, batch):
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
                case = batch.case(existing.case_id)
                if case is not None:
                    _upgrade_cuts(session, case, policy, actor, batch)
        return None

    det = Detection(
        key=key,
        kind=obs.kind,
        institution_id=institution.id,
        link_id=obs.link_id,
        observation_id=obs.id,
        source=obs.source,
        severity=rule.severity,
        corroborated=_corroborated(obs, rule, batch),
        evidence=_observation_evidence(obs),
        detected_at=as_utc(obs.last_seen),
    )
    return _record(session, det, institution, policy, actor, batch)


def _observation_key(obs: Observation, batch: _Batch) -> str:
    """``obs:<id>``; once the case of that detection is closed, traffic seen after the close
    is a new finding with key ``obs:<id>:after-case:<case id>``."""
    key = f"obs:{obs.id}"
    while True:
        det = batch.detection(key)
        if det is None or det.case_id is None:
            return key
        case = batch.case(det.case_id)
        if case is None or case.is_open or case.closed_at is None:
            return key
        if as_utc(obs.last_seen) <= as_utc(case.closed_at):
            return key
        key = f"obs:{obs.id}:after-case:{case.id}"


def _observation_evidence(obs: Observation) -> dict[str, Any]:
    return {
        "observation_key": obs.key,
        "source": str(obs.source),
        "src_addr": obs.src_addr,
        "dst_addr": obs.dst_addr,
        "dst_port": obs.dst_port,
        "protocol": obs.protocol,
        "flows": obs.flows,
        "packets": obs.packets,
        "octets": obs.octets,
        "first_seen": as_utc(obs.first_seen).isoformat(),
        "last_seen": as_utc(obs.last_seen).isoformat(),
        "exporter_id": obs.exporter_id,
        "device_id": obs.device_id,
    }


def _corroborated(obs: Observation, rule: KindRule, batch: _Batch) -> bool:
    c = rule.corroboration
    if obs.source in c.trusted_sources:
        return True
    duration = (as_utc(obs.last_seen) - as_utc(obs.first_seen)).total_seconds()
    values = {"flows": obs.flows, "octets": obs.octets, "duration_s": duration}
    thresholds = c.thresholds
    if thresholds and all(values[k] >= v for k, v in thresholds.items()):
        return True
    if c.second_source and obs.institution_id is not None:
        return batch.other_source_seen(obs, timedelta(seconds=c.second_source_within_s))
    return False


def detect(
    session: Session,
    kind: str,
    institution: Institution,
    *,
    actor: str,
    evidence: dict[str, Any],
    source: ObservationSource = ObservationSource.MANUAL,
    link: Link | None = None,
    corroborated: bool | None = None,
    key: str | None = None,
    at: datetime | None = None,
    store: StoreArg = None,
) -> Detection | None:
    """Record a finding that did not come from an Observation (probe hit, security incident,
    personal-data leak, unsigned applicant). ``key`` makes the call idempotent (e.g.
    ``incident:<id>``); without one, the key hashes kind, institution, source, evidence and
    ``at``. Returns the new detection, or None when the key was already recorded.

    ``corroborated`` defaults to whether ``source`` is trusted for this kind."""
    policy = resolve_store(store).for_institution(institution)
    rule = policy.detection.kinds.get(kind)
    if rule is None:
        raise PolicyError(
            f"policy {policy.name} has no detection kind {kind!r}",
            [f"known kinds: {', '.join(sorted(policy.detection.kinds))}"],
        )
    when = as_utc(at) if at is not None else utcnow()
    if key is None:
        blob = json.dumps(
            [kind, institution.code, str(source), evidence, when.isoformat()],
            sort_keys=True,
            default=str,
            ensure_ascii=False,
        )
        key = f"{source}:{kind}:{hashlib.sha256(blob.encode()).hexdigest()[:32]}"
    if session.scalar(select(Detection.id).where(Detection.key == key)) is not None:
        return None
    det = Detection(
        key=key,
        kind=kind,
        institution_id=institution.id,
        link_id=link.id if link is not None else None,
        source=source,
        severity=rule.severity,
        corroborated=(source in rule.corroboration.trusted_sources)
        if corroborated is None
        else corroborated,
        evidence=json.loads(json.dumps(evidence, default=str, ensure_ascii=False)),
        detected_at=when,
    )
    return _record(session, det, institution, policy, actor)


def detect_incident(
    session: Session,
    incident: Incident,
    *,
    actor: str,
    kind: str | None = None,
    store: StoreArg = None,
) -> Detection | None:
    """Turn a reported security incident (Jincheng art. 15-16, Jilin art. 34-35) into a
    finding of ``kind`` (default: the incident's own kind if the policy knows it, else
    ``security_incident``) and link the incident to the case. Idempotent per incident."""
    if incident.institution_id is None:
        raise PolicyError(f"incident {incident.id} names no institution: nothing to enforce")
    institution = session.get(Institution, incident.institution_id)
    assert institution is not None
    policies = resolve_store(store)
    policy = policies.for_institution(institution)
    if kind is None:
        kind = incident.kind if incident.kind in policy.detection.kinds else "security_incident"
    det = detect(
        session,
        kind,
        institution,
        actor=actor,
        evidence={"incident_id": incident.id, "title": incident.title, "kind": incident.kind},
        source=ObservationSource.MANUAL,
        key=f"incident:{incident.id}",
        at=incident.opened_at,
        store=policies,
    )
    if det is not None and incident.case_id is None:
        incident.case_id = det.case_id
        audit.record(
            session,
            actor=actor,
            action="incident.linked",
            object_type="incident",
            object_id=incident.id,
            reason=f"incident handled as case {det.case_id}",
            data={"case": det.case_id, "detection": det.id},
        )
    return det


def _record(
    session: Session,
    det: Detection,
    institution: Institution,
    policy: Policy,
    actor: str,
    batch: _Batch | None = None,
) -> Detection:
    session.add(det)
    session.flush()
    if batch is not None:
        batch.recorded(det)
    audit.record(
        session,
        actor=actor,
        action="detection.recorded",
        object_type="detection",
        object_id=det.id,
        reason=f"{det.kind} at {institution.code} ({policy.detection.kinds[det.kind].article})",
        data={
            "kind": det.kind,
            "institution": institution.code,
            "source": str(det.source),
            "corroborated": det.corroborated,
            "severity": det.severity,
        },
    )
    _escalate(session, det, institution, policy, actor, batch)
    return det


# --- cases ----------------------------------------------------------------------------------


def open_case_for(session: Session, institution_id: int, policy: Policy, kind: str) -> Case | None:
    """The open case a detection of ``kind`` would join: any open counting case for a kind
    that counts, an open case of the same kind otherwise."""
    rule = policy.detection.kinds[kind]
    q = select(Case).where(Case.institution_id == institution_id, Case.is_open.is_(True))
    q = (
        q.where(Case.counts.is_(True))
        if rule.counts
        else q.where(Case.counts.is_(False), Case.kind == kind)
    )
    return session.scalars(q.order_by(Case.id).limit(1)).first()


def strikes_in_window(
    session: Session, institution: Institution, policy: Policy, at: datetime
) -> int:
    """Counting cases opened in the window that holds ``at`` (one finding = one strike)."""
    start, end = policy.window_for(institution, at)
    lo, hi = policy.window_bounds(start, end)
    q = select(func.count(Case.id)).where(
        Case.institution_id == institution.id, Case.counts.is_(True)
    )
    if lo is not None:
        q = q.where(Case.opened_at >= lo)
    if hi is not None:
        q = q.where(Case.opened_at < hi)
    return int(session.scalar(q) or 0)


def _escalate(
    session: Session,
    det: Detection,
    institution: Institution,
    policy: Policy,
    actor: str,
    batch: _Batch | None = None,
) -> None:
    rule = policy.detection.kinds[det.kind]
    if batch is not None:
        case = batch.open_case_for(institution.id, policy, det.kind)
    else:
        case = open_case_for(session, institution.id, policy, det.kind)
    at = as_utc(det.detected_at)
    if case is not None:
        det.case_id = case.id
        det.counted = False
        _event(
            session,
            case,
            "evidence",
            case.state,
            actor,
            reason=f"{det.kind} detection {det.id} joins open case {case.id}; no new strike",
            at=at,
            detection_id=det.id,
            data={"kind": det.kind, "article": rule.article},
        )
        if det.corroborated:
            _upgrade_cuts(session, case, policy, actor, batch)
        return

    strike = strikes_in_window(session, institution, policy, at) + 1 if rule.counts else 0
    step_name = policy.step_for_kind(det.kind, strike)
    step = policy.steps[step_name]
    start, end = policy.window_for(institution, at) if rule.counts else (None, None)
    case = Case(
        institution_id=institution.id,
        policy=policy.name,
        kind=det.kind,
        counts=rule.counts,
        strike=strike,
        step=step_name,
        state=step.on_open.state,
        is_open=True,
        window_start=start,
        window_end=end,
        required_documents=list(step.on_open.required_documents),
        opened_at=at,
    )
    session.add(case)
    session.flush()
    if batch is not None:
        batch.opened(case)
    det.case_id = case.id
    det.counted = rule.counts
    what = f"strike {strike}: {step.title}" if rule.counts else step.title
    event = _event(
        session,
        case,
        "open",
        None,
        actor,
        reason=f"{det.kind} finding at {institution.code} → {what} ({step.article})",
        at=at,
        detection_id=det.id,
        data={
            "kind": det.kind,
            "strike": strike,
            "step": step_name,
            "article": step.article,
            "window": [str(start) if start else None, str(end) if end else None],
        },
    )
    if step.on_open.institution_status is not None:
        _set_status(
            session, institution, step.on_open.institution_status, policy, actor, case, step.article
        )
    for kind in step.on_open.actions:
        _request(
            session,
            case,
            event,
            kind,
            policy=policy,
            actor=actor,
            wanted=step.on_open.cut_mode,
            corroborated=det.corroborated,
            article=step.article,
        )
    _deadlines(session, case, step.on_open.deadlines, at, actor)


def _event(
    session: Session,
    case: Case,
    name: str,
    from_state: str | None,
    actor: str,
    *,
    reason: str,
    at: datetime,
    detection_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> CaseEvent:
    """A case event and its one audit entry, in the same transaction."""
    clean = json.loads(json.dumps(data or {}, default=str, ensure_ascii=False))
    event = CaseEvent(
        case_id=case.id,
        at=at,
        event=name,
        from_state=from_state,
        to_state=case.state,
        actor=actor,
        reason=reason,
        detection_id=detection_id,
        data=clean,
    )
    session.add(event)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=f"case.{name}",
        object_type="case",
        object_id=case.id,
        reason=reason,
        data={
            "event_id": event.id,
            "from": from_state,
            "to": case.state,
            "step": case.step,
            "strike": case.strike,
            **clean,
        },
    )
    return event


def _set_status(
    session: Session,
    institution: Institution,
    status: InstitutionStatus,
    policy: Policy,
    actor: str,
    case: Case,
    article: str,
) -> None:
    old = institution.status
    if old == status or old in policy.final_statuses:
        return
    institution.status = status
    audit.record(
        session,
        actor=actor,
        action="institution.status",
        object_type="institution",
        object_id=institution.id,
        reason=f"{old} → {status} by case {case.id} ({article})",
        data={"code": institution.code, "from": str(old), "to": str(status), "case": case.id},
    )


def _deadlines(
    session: Session, case: Case, specs: Sequence[DeadlineSpec], at: datetime, actor: str
) -> None:
    for spec in specs:
        deadline = Deadline(
            case_id=case.id,
            kind=spec.document,
            description=f"{spec.description} ({spec.article})"[:300],
            due_at=at + timedelta(hours=spec.hours),
        )
        session.add(deadline)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="deadline.set",
            object_type="deadline",
            object_id=deadline.id,
            reason=deadline.description,
            data={"case": case.id, "document": spec.document, "due_at": deadline.due_at},
        )


# --- enforcement requests -------------------------------------------------------------------


def _request(
    session: Session,
    case: Case,
    event: CaseEvent,
    kind: ActionKind,
    *,
    policy: Policy,
    actor: str,
    wanted: ActionMode,
    corroborated: bool,
    article: str,
    approved_by: str | None = None,
) -> list[EnforcementAction]:
    """Queue "cut/restore link L of case C" for each link concerned. A cut asks for every link
    of the institution not already cut; a restore for every link this case asked to cut.

    The mode is the policy step's, lowered to ``approve`` when the evidence is not
    corroborated or the institution is protected. ``approved_by`` (a person's transition)
    makes the request approved at once."""
    institution = session.get(Institution, case.institution_id)
    assert institution is not None
    if kind == ActionKind.CUT:
        links = [ln for ln in institution.links if ln.state != LinkState.CUT]
    else:
        cut_ids = session.scalars(
            select(EnforcementAction.link_id).where(
                EnforcementAction.case_id == case.id,
                EnforcementAction.kind == ActionKind.CUT,
                EnforcementAction.state != ActionState.CANCELLED,
            )
        ).all()
        wanted_ids = set(cut_ids)
        links = [ln for ln in institution.links if ln.id in wanted_ids]
    mode = wanted
    if mode == ActionMode.AUTO and (not corroborated or institution.protected):
        mode = ActionMode.APPROVE
    created = []
    for link in sorted(links, key=lambda ln: ln.id):
        state = ActionState.PROPOSED
        by: str | None = None
        if approved_by is not None and mode != ActionMode.OBSERVE:
            state, by = ActionState.APPROVED, approved_by
        elif mode == ActionMode.AUTO:
            state, by = ActionState.APPROVED, f"policy:{policy.name}"
        action = EnforcementAction(
            idempotency_key=f"case-{case.id}-event-{event.id}-{kind}-link-{link.id}",
            case_id=case.id,
            link_id=link.id,
            device_id=link.device_id,
            kind=kind,
            mode=mode,
            state=state,
            corroborated=corroborated,
            reason=f"{kind} link {link.id} of case {case.id}: {article}",
            requested_by=actor,
            approved_by=by,
            approved_at=event.at if by else None,
        )
        session.add(action)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="enforcement.requested",
            object_type="enforcement_action",
            object_id=action.id,
            reason=action.reason,
            data={
                "case": case.id,
                "link": link.id,
                "kind": str(kind),
                "mode": str(mode),
                "state": str(state),
                "corroborated": corroborated,
                "protected": institution.protected,
            },
        )
        created.append(action)
    return created


def _upgrade_cuts(
    session: Session, case: Case, policy: Policy, actor: str, batch: _Batch | None = None
) -> None:
    """Corroboration arrived after the cut was queued for approval only for lack of it: the
    step's ``auto`` now applies (never for protected institutions).

    Within one ``observe`` batch a case needs this once: cuts are queued only when a case
    opens, so after the first call the case has no pending uncorroborated cut left."""
    if batch is not None:
        if case.id in batch.upgraded:
            return
        batch.upgraded.add(case.id)
    step = policy.steps.get(case.step)
    institution = session.get(Institution, case.institution_id)
    if step is None or institution is None or institution.protected:
        return
    if step.on_open.cut_mode != ActionMode.AUTO:
        return
    pending = session.scalars(
        select(EnforcementAction).where(
            EnforcementAction.case_id == case.id,
            EnforcementAction.kind == ActionKind.CUT,
            EnforcementAction.state == ActionState.PROPOSED,
            EnforcementAction.corroborated.is_(False),
        )
    ).all()
    for action in pending:
        action.mode = ActionMode.AUTO
        action.state = ActionState.APPROVED
        action.corroborated = True
        action.approved_by = f"policy:{policy.name}"
        action.approved_at = utcnow()
        audit.record(
            session,
            actor=actor,
            action="enforcement.auto_approved",
            object_type="enforcement_action",
            object_id=action.id,
            reason=f"evidence corroborated; {step.article} allows automatic cut",
            data={"case": case.id, "link": action.link_id},
        )


# --- transitions ----------------------------------------------------------------------------


def allowed_events(case: Case, policy: Policy) -> dict[str, Any]:
    """The events of the case's step that leave its current state."""
    step = policy.steps.get(case.step)
    if step is None or not case.is_open:
        return {}
    return {name: t for name, t in step.transitions.items() if case.state in t.from_}


def documents_present(session: Session, case: Case) -> dict[str, list[int]]:
    """Document kinds on the case → their ids."""
    found: dict[str, list[int]] = {}
    for doc_id, kind in session.execute(
        select(Document.id, Document.kind).where(Document.case_id == case.id).order_by(Document.id)
    ):
        found.setdefault(kind, []).append(doc_id)
    return found


def transition(
    session: Session,
    case: Case,
    event: str,
    actor: Actor,
    *,
    reason: str,
    at: datetime | None = None,
    store: StoreArg = None,
    **data: Any,
) -> CaseEvent:
    """Apply ``event`` to ``case`` for ``actor`` if the policy allows it now; else raise
    :class:`TransitionRefused` naming the rule, with nothing changed.

    Checks, in order: a reason is given; the event exists in the case's step and leaves its
    state; the actor's role is one the step names; the institution is in the actor's counties
    (属地原则); every required document is a Document row of the case; a reconnection is never
    granted to an institution whose status bars it (blacklisted)."""
    policy = resolve_store(store).load(case.policy)
    step = policy.steps.get(case.step)
    if step is None:
        raise PolicyError(f"case {case.id}: policy {policy.name} has no step {case.step!r}")
    institution = session.get(Institution, case.institution_id)
    assert institution is not None
    if not reason or not reason.strip():
        raise TransitionRefused("a reason is required for every transition", step.article)
    spec = step.transitions.get(event)
    if spec is None:
        known = ", ".join(sorted(step.transitions)) or "none"
        raise TransitionRefused(
            f"{event!r} is not an event of step {case.step} (its events: {known})", step.article
        )
    if not case.is_open:
        raise TransitionRefused(f"case {case.id} is closed", spec.article)
    if case.state not in spec.from_:
        raise TransitionRefused(
            f"{event!r} is allowed from {', '.join(spec.from_)}, not from {case.state!r}",
            spec.article,
        )
    if actor.role not in spec.roles:
        roles = ", ".join(r.value for r in spec.roles)
        raise TransitionRefused(
            f"{actor.name} ({actor.role.value}) may not {event}; it needs {roles}", spec.article
        )
    if not actor.may_act(institution):
        raise TransitionRefused(
            f"{actor.name} may not act on {institution.code}: outside its counties (属地原则)",
            spec.article,
        )
    present = documents_present(session, case)
    missing = [k for k in spec.requires_documents if k not in present]
    if missing:
        raise TransitionRefused(
            f"{event!r} needs the document(s) {', '.join(missing)} on case {case.id}", spec.article
        )
    if ActionKind.RESTORE in spec.actions and institution.status in policy.no_reconnect_statuses:
        raise TransitionRefused(
            f"{institution.code} is {institution.status.value}: never reconnected",
            policy.no_reconnect_article,
        )

    when = as_utc(at) if at is not None else utcnow()
    from_state, from_step = case.state, case.step
    if spec.goto_step is not None:
        case.step = spec.goto_step
        case.required_documents = list(policy.steps[spec.goto_step].on_open.required_documents)
    case.state = spec.to
    if spec.set_consequences is not None:
        case.consequences = spec.set_consequences
    if spec.ends_handling and case.handling_ended_at is None:
        case.handling_ended_at = when
    if spec.closes:
        case.is_open = False
        case.closed_at = when
    documents = {k: present[k] for k in spec.requires_documents}
    ev = _event(
        session,
        case,
        event,
        from_state,
        actor.name,
        reason=reason,
        at=when,
        data={
            **data,
            "role": actor.role.value,
            "step": from_step,
            "article": spec.article,
            "documents": documents,
            "goto_step": spec.goto_step,
        },
    )
    if spec.institution_status is not None:
        _set_status(
            session, institution, spec.institution_status, policy, actor.name, case, spec.article
        )
    for kind in spec.actions:
        _request(
            session,
            case,
            ev,
            kind,
            policy=policy,
            actor=actor.name,
            wanted=ActionMode.APPROVE,
            corroborated=True,
            article=spec.article,
            approved_by=actor.name,
        )
    if spec.ends_handling:
        _deadlines(session, case, policy.on_handling_end, when, actor.name)
    return ev


# --- deadlines and vendors ------------------------------------------------------------------


def check_deadlines(
    session: Session,
    now: datetime | None = None,
    *,
    actor: str = "scheduler",
    store: StoreArg = None,
) -> list[Deadline]:
    """Mark deadlines met by their document, alert overdue ones once; return the newly
    alerted. An overdue vendor fix suspends the vendor (the policy's ``vendors`` rule)."""
    when = as_utc(now) if now is not None else utcnow()
    policies = resolve_store(store)
    alerted: list[Deadline] = []
    open_deadlines = session.scalars(
        select(Deadline).where(Deadline.met_at.is_(None)).order_by(Deadline.id)
    ).all()
    for deadline in open_deadlines:
        if deadline.case_id is not None:
            doc = session.scalars(
                select(Document)
                .where(Document.case_id == deadline.case_id, Document.kind == deadline.kind)
                .order_by(Document.uploaded_at)
                .limit(1)
            ).first()
            if doc is not None:
                deadline.met_at = as_utc(doc.uploaded_at)
                audit.record(
                    session,
                    actor=actor,
                    action="deadline.met",
                    object_type="deadline",
                    object_id=deadline.id,
                    reason=f"document {doc.id} ({doc.kind}) filed",
                    data={"case": deadline.case_id, "document": doc.id},
                )
                continue
        if deadline.alerted_at is not None or as_utc(deadline.due_at) > when:
            continue
        deadline.alerted_at = when
        audit.record(
            session,
            actor=actor,
            action="deadline.overdue",
            object_type="deadline",
            object_id=deadline.id,
            reason=f"overdue since {as_utc(deadline.due_at).isoformat()}: {deadline.description}",
            data={"case": deadline.case_id, "kind": deadline.kind},
        )
        alerted.append(deadline)
        if deadline.kind.startswith(VENDOR_DEADLINE_PREFIX):
            _suspend_vendor(session, deadline, policies, actor)
    return alerted


def _vendor_deadline_kind(policy: Policy, vendor: Vendor) -> str:
    return f"{VENDOR_DEADLINE_PREFIX}{policy.name}:{vendor.id}"


def vendor_finding(
    session: Session,
    vendor: Vendor,
    policy_name: str,
    actor: Actor,
    *,
    description: str,
    at: datetime | None = None,
    store: StoreArg = None,
) -> Deadline:
    """A problem the bureau found in a vendor's server: the vendor must fix it within the
    policy's ``vendors.fix_hours`` or be suspended by :func:`check_deadlines`."""
    policy = resolve_store(store).load(policy_name)
    if policy.vendors is None:
        raise TransitionRefused(f"policy {policy.name} has no rule for vendors")
    if actor.role not in (Role.CITY_ADMIN, Role.COUNTY_OPERATOR):
        raise TransitionRefused(
            f"{actor.name} ({actor.role.value}) may not record vendor findings",
            policy.vendors.article,
        )
    if not description.strip():
        raise TransitionRefused("a description of the finding is required", policy.vendors.article)
    when = as_utc(at) if at is not None else utcnow()
    deadline = Deadline(
        kind=_vendor_deadline_kind(policy, vendor),
        description=f"{vendor.name}: {description} ({policy.vendors.article})"[:300],
        due_at=when + timedelta(hours=policy.vendors.fix_hours),
    )
    session.add(deadline)
    session.flush()
    audit.record(
        session,
        actor=actor.name,
        action="vendor.finding",
        object_type="vendor",
        object_id=vendor.id,
        reason=description,
        data={"deadline": deadline.id, "due_at": deadline.due_at, "policy": policy.name},
    )
    return deadline


def vendor_fixed(
    session: Session, vendor: Vendor, actor: Actor, *, reason: str, at: datetime | None = None
) -> list[Deadline]:
    """The vendor fixed its findings: its open fix deadlines are met (a suspended vendor is
    reinstated by a person in the inventory, not here)."""
    if not reason.strip():
        raise TransitionRefused("a reason is required")
    when = as_utc(at) if at is not None else utcnow()
    met = []
    for deadline in session.scalars(
        select(Deadline).where(
            Deadline.met_at.is_(None), Deadline.kind.like(f"{VENDOR_DEADLINE_PREFIX}%")
        )
    ):
        if deadline.kind.rsplit(":", 1)[-1] != str(vendor.id):
            continue
        deadline.met_at = when
        audit.record(
            session,
            actor=actor.name,
            action="deadline.met",
            object_type="deadline",
            object_id=deadline.id,
            reason=reason,
            data={"vendor": vendor.id},
        )
        met.append(deadline)
    return met


def _suspend_vendor(
    session: Session, deadline: Deadline, policies: PolicyStore, actor: str
) -> None:
    _, policy_name, vendor_id = deadline.kind.split(":", 2)
    vendor = session.get(Vendor, int(vendor_id))
    policy = policies.load(policy_name)
    if vendor is None or policy.vendors is None or vendor.status == VendorStatus.SUSPENDED:
        return
    vendor.status = VendorStatus.SUSPENDED
    audit.record(
        session,
        actor=actor,
        action="vendor.suspended",
        object_type="vendor",
        object_id=vendor.id,
        reason=f"finding not fixed in time ({policy.vendors.article})",
        data={"deadline": deadline.id},
    )
