"""A small inventory for enforcer tests: one county, devices, institutions, links, actions.

Every helper commits, because the worker reads the database through its own sessions (other
threads, other processes)."""

from __future__ import annotations

import itertools
import socket
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.crypto import secret_box
from core.models import (
    ActionKind,
    ActionMode,
    ActionState,
    AuditEvent,
    County,
    Device,
    DeviceRole,
    EnforcementAction,
    Institution,
    InstitutionKind,
    IpAllocation,
    Link,
    LinkKind,
)
from core.settings import Settings, load_settings
from core.timeutil import utcnow

_n = itertools.count(1)


def closed_port() -> int:
    """A loopback TCP port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "enforcement_poll_s": 0.1,
        "enforcement_ssh_timeout_s": 5.0,
        "enforcement_max_per_run": 50,
        "enforcement_max_per_hour": 500,
        "enforcement_max_per_device_hour": 100,
        "enforcement_breaker_threshold": 1000,
    }
    values.update(overrides)
    return load_settings(**values)


@dataclass
class World:
    session: Session
    url: str
    county: County

    @classmethod
    def build(cls, session: Session, url: str) -> World:
        county = County(code=f"1405{next(_n):02d}", name="测试县")
        session.add(county)
        session.commit()
        return cls(session, url, county)

    def device(
        self,
        name: str | None = None,
        device_type: str = "huawei",
        port: int | None = None,
        *,
        uplinks: list[str] | None = None,
        username: str = "admin",
        password: str = "admin",
        secret: str = "",
        host: str = "127.0.0.1",
    ) -> Device:
        box = secret_box()
        dev = Device(
            name=name or f"edge-{next(_n)}",
            mgmt_address=host,
            ssh_port=port if port is not None else closed_port(),
            device_type=device_type,
            role=DeviceRole.EDGE_ROUTER,
            county_id=self.county.id,
            ssh_username=username,
            ssh_password_enc=box.encrypt(password),
            ssh_secret_enc=box.encrypt(secret) if secret else None,
            uplink_interfaces=uplinks or [],
        )
        self.session.add(dev)
        self.session.commit()
        return dev

    def institution(
        self, *, protected: bool = False, prefixes: list[str] | None = None
    ) -> Institution:
        n = next(_n)
        inst = Institution(
            code=f"H{self.county.code}{n:05d}",
            name=f"测试医院{n}",
            kind=InstitutionKind.HOSPITAL,
            county_id=self.county.id,
            protected=protected,
        )
        self.session.add(inst)
        self.session.flush()
        for p in prefixes or []:
            self.session.add(IpAllocation(institution_id=inst.id, prefix=p))
        self.session.commit()
        return inst

    def link(
        self,
        device: Device,
        interface: str | None = None,
        *,
        institution: Institution | None = None,
        kind: LinkKind = LinkKind.LEASED_LINE,
        prefixes: list[str] | None = None,
        protected: bool = False,
    ) -> Link:
        inst = institution or self.institution(protected=protected, prefixes=prefixes)
        link = Link(
            institution_id=inst.id,
            kind=kind,
            device_id=device.id,
            interface=interface,
            vpdn_account=f"vpdn-{next(_n)}@ybj" if kind == LinkKind.VPDN else None,
        )
        self.session.add(link)
        self.session.commit()
        return link

    def action(
        self,
        link: Link,
        kind: ActionKind = ActionKind.CUT,
        *,
        state: ActionState = ActionState.APPROVED,
        mode: ActionMode = ActionMode.APPROVE,
        approved_by: str | None = "alice",
        method: str = "shutdown_interface",
    ) -> EnforcementAction:
        approved = state != ActionState.PROPOSED
        action = EnforcementAction(
            idempotency_key=f"test-{next(_n)}",
            link_id=link.id,
            device_id=link.device_id,
            kind=kind,
            method=method,
            mode=mode,
            state=state,
            corroborated=mode == ActionMode.AUTO,
            reason="test",
            requested_by="rules",
            approved_by=approved_by if approved else None,
            approved_at=utcnow() if approved else None,
        )
        self.session.add(action)
        self.session.commit()
        return action

    def reload(self, action: EnforcementAction) -> EnforcementAction:
        self.session.expire_all()
        fresh = self.session.get(EnforcementAction, action.id)
        assert fresh is not None
        return fresh

    def audit_actions(self, object_id: int | None = None) -> list[str]:
        self.session.expire_all()
        stmt = select(AuditEvent.action).order_by(AuditEvent.id)
        if object_id is not None:
            stmt = stmt.where(
                AuditEvent.object_type == "enforcement_action",
                AuditEvent.object_id == str(object_id),
            )
        return list(self.session.scalars(stmt))

    def count(self, model: type, **where: Any) -> int:
        stmt = select(func.count()).select_from(model)
        for key, value in where.items():
            stmt = stmt.where(getattr(model, key) == value)
        return int(self.session.scalar(stmt) or 0)
