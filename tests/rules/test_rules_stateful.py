"""A hypothesis stateful test: random sequences of findings, redeliveries, documents and
transitions (by right and wrong roles, in and out of county scope) under the Jincheng policy,
holding the invariants of issue 5:

- strikes never decrease inside a window (Jincheng art. 14: counted per agreement term);
- no reconnect without every required document and the approval of a permitted role
  (Jincheng art. 14: 书面报告情况说明 / 整改完毕并得到市医疗保障局确认);
- blacklisted stays blacklisted and is never reconnected (art. 14: 纳入黑名单);
- every state change has exactly one audit entry (art. 17: 可追溯、可审计);
- replaying the same events on a fresh institution gives the same state.

Runs on SQLite and PostgreSQL with a bounded number of examples."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.models import (
    ActionKind,
    AuditEvent,
    Case,
    CaseEvent,
    Detection,
    Document,
    EnforcementAction,
    Institution,
    InstitutionStatus,
    Role,
)
from rules.engine import allowed_events, documents_present
from rules.errors import TransitionRefused
from rules.policy import Policy
from tests.rules.conftest import T0, World, build_world, load_world

KINDS = [
    "outbound_internet",
    "outbound_internet",
    "dual_homed",
    "remote_control",
    "security_incident",
    "link_down",
]
DOCS = ["written_explanation", "rectification_report", "incident_record", "fault_report"]
ROLES = [Role.CITY_ADMIN, Role.COUNTY_OPERATOR, Role.CITY_ADMIN, Role.VIEWER]


@dataclass(frozen=True)
class Op:
    name: str
    args: tuple[Any, ...]


def snapshot(world: World, inst: Institution) -> dict[str, Any]:
    """The state that replaying must reproduce (ids and times excluded)."""
    world.session.refresh(inst)
    cases = world.cases(inst)
    return {
        "status": inst.status,
        "cases": [
            (c.kind, c.counts, c.strike, c.step, c.state, c.is_open, c.consequences) for c in cases
        ],
        "events": [[(e.event, e.from_state, e.to_state) for e in c.events] for c in cases],
        "actions": [(a.kind, a.mode, a.state, a.approved_by) for a in world.actions(inst)],
        "detections": [
            (d.kind, d.counted, d.corroborated)
            for d in world.session.scalars(
                select(Detection).where(Detection.institution_id == inst.id).order_by(Detection.id)
            )
        ],
    }


def apply(world: World, inst: Institution, op: Op, seq: int) -> str:
    """Apply one operation; returns its outcome ("ok", "none", or the refusal)."""
    if op.name == "find":
        kind, at, corroborated = op.args
        det = world.find(inst, kind, at=at, corroborated=corroborated, key=f"{inst.code}:{seq}")
        return "ok" if det is not None else "none"
    if op.name == "redeliver":
        kind, at, corroborated, of_seq = op.args
        det = world.find(inst, kind, at=at, corroborated=corroborated, key=f"{inst.code}:{of_seq}")
        return "ok" if det is not None else "none"
    cases = world.cases(inst)
    if not cases:
        return "no case"
    case = cases[-1]
    if op.name == "doc":
        kind, at = op.args
        world.doc(case, kind, at=at)
        return "ok"
    event, role, in_scope, at = op.args
    try:
        world.act(case, event, role, in_scope=in_scope, at=at)
    except TransitionRefused as exc:
        return "refused: " + re.sub(r"\d+", "#", exc.reason)  # ids and codes differ
    return "ok"


class CaseMachine(RuleBasedStateMachine):
    engine: Engine
    policy_dir: Path

    def __init__(self) -> None:
        super().__init__()
        self.session = Session(self.engine)
        self.world = load_world(self.session, self.policy_dir)
        self.policy: Policy = self.world.store.load("jincheng")
        self.events = sorted({e for s in self.policy.steps.values() for e in s.transitions})
        self.inst = self.world.institution(agreement=None)
        self.session.commit()
        self.clock = T0
        self.ops: list[Op] = []
        self.outcomes: list[str] = []
        self.finds: list[tuple[str, Any, bool, int]] = []
        self.max_strike: dict[Any, int] = {}
        self.status_changes = 0
        self.last_status = self.inst.status
        self.restores_when_blacklisted: int | None = None

    def _do(self, op: Op) -> str:
        before = self.world.counts()
        seq = len(self.ops)
        try:
            outcome = apply(self.world, self.inst, op, seq)
            self.session.commit()
        except BaseException:
            self.session.rollback()
            raise
        self.session.refresh(self.inst)
        if self.inst.status != self.last_status:
            self.status_changes += 1
            self.last_status = self.inst.status
        if outcome.startswith("refused") or outcome == "none":
            assert self.world.counts() == before, f"{op} changed rows though it did nothing"
        self.ops.append(op)
        self.outcomes.append(outcome)
        return outcome

    @initialize()
    def start(self) -> None:
        pass

    @rule(
        kind=st.sampled_from(KINDS),
        gap=st.sampled_from([0, 1, 20, 400]),
        corroborated=st.booleans(),
    )
    def find(self, kind: str, gap: int, corroborated: bool) -> None:
        self.clock += timedelta(days=gap, minutes=1)
        seq = len(self.ops)
        if self._do(Op("find", (kind, self.clock, corroborated))) == "ok":
            self.finds.append((kind, self.clock, corroborated, seq))

    @rule(corroborated=st.booleans())
    def find_again_soon(self, corroborated: bool) -> None:
        """A strike-counting finding within the same year: the path to the blacklist."""
        self.find("outbound_internet", 10, corroborated)

    @precondition(lambda self: bool(self.finds))
    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        if not self.finds:
            return
        kind, at, corroborated, seq = data.draw(st.sampled_from(self.finds))
        assert self._do(Op("redeliver", (kind, at, corroborated, seq))) == "none"

    @property
    def has_case(self) -> bool:
        return bool(self.finds)

    def _latest_case(self) -> Case | None:
        cases = self.world.cases(self.inst)
        return cases[-1] if cases else None

    @precondition(lambda self: self.has_case)
    @rule(data=st.data())
    def document(self, data: st.DataObject) -> None:
        """Mostly a document the latest case asks for, sometimes any."""
        case = self._latest_case()
        wanted = sorted(set(case.required_documents)) if case is not None else []
        kind = data.draw(
            st.sampled_from(wanted)
            if wanted and data.draw(st.booleans())
            else st.sampled_from(DOCS)
        )
        self.clock += timedelta(minutes=1)
        self._do(Op("doc", (kind, self.clock)))

    @precondition(lambda self: self.has_case)
    @rule(data=st.data(), role=st.sampled_from(ROLES), in_scope=st.booleans())
    def act(self, data: st.DataObject, role: Role, in_scope: bool) -> None:
        """Mostly an event the case's state allows, sometimes any event of the policy."""
        case = self._latest_case()
        allowed = sorted(allowed_events(case, self.policy)) if case is not None else []
        if allowed and data.draw(st.booleans()):
            event = data.draw(st.sampled_from(allowed))
        else:
            event = data.draw(st.sampled_from(self.events))
        self.clock += timedelta(minutes=1)
        self._do(Op("act", (event, role, in_scope, self.clock)))

    @precondition(lambda self: self.has_case)
    @rule(data=st.data())
    def cooperate(self, data: st.DataObject) -> None:
        """The institution and the bureau do what the policy asks until the case closes (at
        most three events): file the documents an allowed event needs, then a permitted role
        in scope applies it."""
        for _ in range(3):
            case = self._latest_case()
            if case is None or not case.is_open:
                return
            allowed = allowed_events(case, self.policy)
            if not allowed:
                return
            event = data.draw(st.sampled_from(sorted(allowed)))
            spec = allowed[event]
            have = set(documents_present(self.session, case))
            for kind in spec.requires_documents:
                if kind not in have:
                    self.clock += timedelta(minutes=1)
                    self._do(Op("doc", (kind, self.clock)))
            role = data.draw(st.sampled_from(sorted(spec.roles)))
            self.clock += timedelta(minutes=1)
            outcome = self._do(Op("act", (event, role, True, self.clock)))
            barred = self.inst.status == InstitutionStatus.BLACKLISTED
            assert outcome == "ok" or (barred and "never reconnected" in outcome), outcome
            if outcome != "ok":
                return

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def strikes_never_decrease_inside_a_window(self) -> None:
        by_window: dict[Any, list[int]] = {}
        for case in self.world.cases(self.inst):
            if case.counts:
                by_window.setdefault((case.window_start, case.window_end), []).append(case.strike)
        for window, strikes in by_window.items():
            assert strikes == list(range(1, len(strikes) + 1)), (window, strikes)
            assert strikes[-1] >= self.max_strike.get(window, 0)
            self.max_strike[window] = strikes[-1]

    @invariant()
    def no_reconnect_without_documents_and_approval(self) -> None:
        s = self.session
        for action in self.world.actions(self.inst):
            if action.kind != ActionKind.RESTORE:
                continue
            event_id = int(action.idempotency_key.split("-event-")[1].split("-")[0])  # type: ignore[union-attr]
            event = s.get(CaseEvent, event_id)
            assert event is not None and event.case_id == action.case_id
            spec = self.policy.steps[event.data["step"]].transitions[event.event]
            assert ActionKind.RESTORE in spec.actions
            assert spec.requires_documents, "every reconnection in the policy needs a document"
            docs = s.scalars(select(Document).where(Document.case_id == action.case_id)).all()
            filed = {d.kind for d in docs if d.uploaded_at <= event.at}
            assert set(spec.requires_documents) <= filed, (spec.requires_documents, filed)
            assert Role(event.data["role"]) in spec.roles
            assert action.approved_by == event.actor

    @invariant()
    def blacklisted_stays_blacklisted(self) -> None:
        self.session.refresh(self.inst)
        restores = sum(1 for a in self.world.actions(self.inst) if a.kind == ActionKind.RESTORE)
        if self.restores_when_blacklisted is not None:
            assert self.inst.status == InstitutionStatus.BLACKLISTED
            assert restores == self.restores_when_blacklisted
        elif self.inst.status == InstitutionStatus.BLACKLISTED:
            self.restores_when_blacklisted = restores

    @invariant()
    def every_change_has_exactly_one_audit_entry(self) -> None:
        s = self.session
        cases = self.world.cases(self.inst)
        case_ids = [str(c.id) for c in cases]
        entries = s.scalars(
            select(AuditEvent).where(
                AuditEvent.object_type == "case", AuditEvent.object_id.in_(case_ids)
            )
        ).all()
        events = [e.id for c in cases for e in c.events]
        for c in cases:  # every state the case went through is an event
            chain = [(e.from_state, e.to_state) for e in c.events]
            assert chain[0][0] is None and chain[-1][1] == c.state
            assert all(a[1] == b[0] for a, b in itertools.pairwise(chain)), chain
        assert Counter(e.data["event_id"] for e in entries) == Counter(events)
        actions = [str(a.id) for a in self.world.actions(self.inst)]
        requested = s.scalars(
            select(AuditEvent.object_id).where(
                AuditEvent.action == "enforcement.requested", AuditEvent.object_id.in_(actions)
            )
        ).all()
        assert Counter(requested) == Counter(actions)
        dets = [
            str(i)
            for i in s.scalars(select(Detection.id).where(Detection.institution_id == self.inst.id))
        ]
        recorded = s.scalars(
            select(AuditEvent.object_id).where(
                AuditEvent.action == "detection.recorded", AuditEvent.object_id.in_(dets)
            )
        ).all()
        assert Counter(recorded) == Counter(dets)
        status = s.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "institution.status",
                AuditEvent.object_id == str(self.inst.id),
            )
        ).all()
        assert len(status) == self.status_changes

    def teardown(self) -> None:
        try:
            if self.ops:
                original = snapshot(self.world, self.inst)
                twin = self.world.institution(agreement=None)
                outcomes = [apply(self.world, twin, op, i) for i, op in enumerate(self.ops)]
                self.session.commit()
                assert outcomes == self.outcomes
                assert snapshot(self.world, twin) == original
        finally:
            self.session.close()


@pytest.mark.slow
def test_case_invariants(engine: Engine, tmp_path: Path) -> None:
    policy_dir = tmp_path / "policies"
    with Session(engine) as session:
        build_world(session, policy_dir)
        session.commit()
    machine = type("Machine", (CaseMachine,), {"engine": engine, "policy_dir": policy_dir})
    run = settings(
        max_examples=40,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        database=None,
        derandomize=True,
        # no shrinking: over a database it takes minutes; the failing sequence is printed anyway
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(machine, settings=run)
    with Session(engine) as session:
        reached = {
            "restores": session.scalar(
                select(func.count())
                .select_from(EnforcementAction)
                .where(EnforcementAction.kind == ActionKind.RESTORE)
            ),
            "strike2": session.scalar(
                select(func.count()).select_from(Case).where(Case.strike >= 2)
            ),
            "strike3": session.scalar(
                select(func.count()).select_from(Case).where(Case.strike >= 3)
            ),
            "blacklisted": session.scalar(
                select(func.count())
                .select_from(Institution)
                .where(Institution.status == InstitutionStatus.BLACKLISTED)
            ),
        }
    # derandomized, so this is stable: the run must have exercised every invariant's subject
    assert all(reached.values()), reached
