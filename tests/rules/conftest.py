"""A small inventory for rules tests and helpers that drive the engine like its callers do.

Two cities: Jincheng (counties 140500 → 140502, policy ``jincheng``) and Jilin (220100 →
220102, policy ``jilin``). Policies come from a per-test store whose extra directory
(``world.policy_dir``) a test may fill with its own files."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.actors import Actor
from core.models import (
    AuditEvent,
    Case,
    CaseEvent,
    County,
    Detection,
    Device,
    DeviceRole,
    Document,
    EnforcementAction,
    Institution,
    InstitutionKind,
    Link,
    LinkKind,
    ObservationSource,
    Role,
)
from rules import engine
from rules.policy import PolicyStore

T0 = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
_codes = itertools.count(1)


@dataclass
class World:
    session: Session
    store: PolicyStore
    policy_dir: Path
    counties: dict[str, County] = field(default_factory=dict)
    device: Device | None = None

    def county_of(self, policy: str) -> County:
        return self.counties[{"jincheng": "140502", "jilin": "220102"}.get(policy, policy)]

    def institution(
        self,
        policy: str = "jincheng",
        *,
        protected: bool = False,
        agreement: tuple[date, date] | None = (date(2025, 1, 1), date(2025, 12, 31)),
        links: int = 1,
    ) -> Institution:
        county = self.county_of(policy)
        n = next(_codes)
        inst = Institution(
            code=f"H{county.code}{n:05d}",
            name=f"测试医院{n}",
            kind=InstitutionKind.HOSPITAL,
            county=county,
            protected=protected,
            agreement_start=agreement[0] if agreement else None,
            agreement_end=agreement[1] if agreement else None,
        )
        self.session.add(inst)
        self.session.flush()
        assert self.device is not None
        for i in range(links):
            self.session.add(
                Link(
                    institution_id=inst.id,
                    kind=LinkKind.LEASED_LINE,
                    device_id=self.device.id,
                    interface=f"GigabitEthernet0/0/1.{inst.id * 10 + i}",
                )
            )
        self.session.flush()
        self.session.refresh(inst)
        return inst

    def find(
        self,
        inst: Institution,
        kind: str = "outbound_internet",
        *,
        at: datetime = T0,
        corroborated: bool | None = True,
        source: ObservationSource = ObservationSource.MANUAL,
        key: str | None = None,
    ) -> Detection | None:
        return engine.detect(
            self.session,
            kind,
            inst,
            actor="test-collector",
            evidence={"note": f"{kind} at {at.isoformat()}"},
            source=source,
            corroborated=corroborated,
            key=key,
            at=at,
            store=self.store,
        )

    def actor(self, role: Role, inst: Institution, *, in_scope: bool = True) -> Actor:
        if role != Role.COUNTY_OPERATOR:
            return Actor(f"{role.value}-1", role)
        code = inst.county.code if in_scope else "999999"
        return Actor(f"county-{code}", role, frozenset({code}))

    def doc(self, case: Case, kind: str, *, at: datetime = T0) -> Document:
        d = Document(
            case_id=case.id,
            kind=kind,
            filename=f"{kind}.pdf",
            content_type="application/pdf",
            size=1,
            sha256="0" * 64,
            storage_path=f"/dev/null/{kind}",
            uploaded_by="test",
            uploaded_at=at,
        )
        self.session.add(d)
        self.session.flush()
        return d

    def act(
        self,
        case: Case,
        event: str,
        role: Role = Role.CITY_ADMIN,
        *,
        in_scope: bool = True,
        at: datetime = T0,
        reason: str = "test",
        **data: Any,
    ) -> CaseEvent:
        inst = self.session.get(Institution, case.institution_id)
        assert inst is not None
        return engine.transition(
            self.session,
            case,
            event,
            self.actor(role, inst, in_scope=in_scope),
            reason=reason,
            at=at,
            store=self.store,
            **data,
        )

    def cases(self, inst: Institution) -> list[Case]:
        return list(
            self.session.scalars(
                select(Case).where(Case.institution_id == inst.id).order_by(Case.id)
            )
        )

    def actions(self, inst: Institution) -> list[EnforcementAction]:
        return list(
            self.session.scalars(
                select(EnforcementAction)
                .join(Case, Case.id == EnforcementAction.case_id)
                .where(Case.institution_id == inst.id)
                .order_by(EnforcementAction.id)
            )
        )

    def counts(self) -> dict[str, int]:
        """Row counts of everything the engine writes (for "changes nothing" checks)."""
        return {
            m.__name__: int(self.session.scalar(select(func.count()).select_from(m)) or 0)
            for m in (Detection, Case, CaseEvent, EnforcementAction, AuditEvent)
        }


def build_world(session: Session, policy_dir: Path) -> World:
    policy_dir.mkdir(parents=True, exist_ok=True)
    world = World(session, PolicyStore([policy_dir], use_env=False), policy_dir)
    jc = County(code="140500", name="晋城市", policy="jincheng")
    jl = County(code="220100", name="长春市", policy="jilin")
    session.add_all([jc, jl])
    session.flush()
    world.counties = {
        "140500": jc,
        "140502": County(code="140502", name="城区", parent_id=jc.id),
        "220100": jl,
        "220102": County(code="220102", name="南关区", parent_id=jl.id),
    }
    session.add_all(world.counties.values())
    world.device = Device(
        name="edge-01",
        mgmt_address="127.0.0.1",
        device_type="cisco_ios",
        role=DeviceRole.EDGE_ROUTER,
    )
    session.add(world.device)
    session.flush()
    return world


def load_world(session: Session, policy_dir: Path) -> World:
    """A World on another session over a database ``build_world`` already filled."""
    world = World(session, PolicyStore([policy_dir], use_env=False), policy_dir)
    world.counties = {c.code: c for c in session.scalars(select(County))}
    world.device = session.scalars(select(Device).where(Device.name == "edge-01")).one()
    return world


@pytest.fixture
def world(session: Session, tmp_path: Path) -> World:
    return build_world(session, tmp_path / "policies")


def days(n: float) -> timedelta:
    return timedelta(days=n)
