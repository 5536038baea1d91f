"""What SNMP sweeps saw: the sweeps themselves, interfaces with counters, and ARP history.

ARP history follows Netdisco/arpwatch: one row per (device, ifIndex, IP, MAC) with first and
last seen and an active flag, plus a row per MAC change of an IP, so "who had 10.1.2.3 last
Tuesday" is answerable after the entry left the router's table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.models.base import Base, str_enum
from core.models.enums import SweepDeviceStatus, SweepStatus
from core.models.inventory import Device, Link
from core.timeutil import utcnow


class Sweep(Base):
    """One SNMP sweep over many devices (start, end, per-device results, counts)."""

    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(primary_key=True)
    trigger: Mapped[str] = mapped_column(String(32), default="cli")
    requested_by: Mapped[str] = mapped_column(String(100), default="system")
    status: Mapped[SweepStatus] = mapped_column(
        str_enum(SweepStatus), default=SweepStatus.RUNNING, index=True
    )
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]
    devices_total: Mapped[int] = mapped_column(default=0)
    devices_ok: Mapped[int] = mapped_column(default=0)
    devices_failed: Mapped[int] = mapped_column(default=0)
    varbinds: Mapped[int] = mapped_column(BigInteger, default=0)
    observations: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)

    results: Mapped[list[SweepDevice]] = relationship(
        back_populates="sweep", order_by="SweepDevice.id"
    )


class SweepDevice(Base):
    """One device's result within a sweep: ok, timeout, auth_error, partial or error."""

    __tablename__ = "sweep_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    status: Mapped[SweepDeviceStatus] = mapped_column(str_enum(SweepDeviceStatus))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    varbinds: Mapped[int] = mapped_column(default=0)
    interfaces: Mapped[int] = mapped_column(default=0)
    arp_entries: Mapped[int] = mapped_column(default=0)
    routes: Mapped[int] = mapped_column(default=0)
    sys_name: Mapped[str | None] = mapped_column(String(255))
    sys_uptime: Mapped[int | None] = mapped_column(BigInteger)
    tables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)

    sweep: Mapped[Sweep] = relationship(back_populates="results")
    device: Mapped[Device] = relationship()


class Interface(Base):
    """An interface as the device reports it, mapped to a link when the inventory says so.

    ``if_index`` is what NetFlow records carry as input/output interface, so this table is also
    the (exporter device, ifIndex) → link map the flow classifier needs."""

    __tablename__ = "interfaces"
    __table_args__ = (UniqueConstraint("device_id", "if_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    if_index: Mapped[int]
    name: Mapped[str] = mapped_column(String(100), default="")
    alias: Mapped[str] = mapped_column(String(255), default="")
    admin_status: Mapped[int | None]
    oper_status: Mapped[int | None]
    high_speed: Mapped[int | None] = mapped_column(BigInteger)
    in_octets: Mapped[int | None] = mapped_column(BigInteger)
    out_octets: Mapped[int | None] = mapped_column(BigInteger)
    link_id: Mapped[int | None] = mapped_column(ForeignKey("links.id"), index=True)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    oper_changed_at: Mapped[datetime | None]

    device: Mapped[Device] = relationship()
    link: Mapped[Link | None] = relationship()


class InterfaceSample(Base):
    """Counter readings per sweep, kept to corroborate flow-based findings (bytes really moved)."""

    __tablename__ = "interface_samples"

    id: Mapped[int] = mapped_column(primary_key=True)
    interface_id: Mapped[int] = mapped_column(ForeignKey("interfaces.id"), index=True)
    sweep_id: Mapped[int | None] = mapped_column(ForeignKey("sweeps.id"))
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    sys_uptime: Mapped[int | None] = mapped_column(BigInteger)
    in_octets: Mapped[int | None] = mapped_column(BigInteger)
    out_octets: Mapped[int | None] = mapped_column(BigInteger)
    oper_status: Mapped[int | None]


class ArpEntry(Base):
    """An (IP, MAC) pair seen behind an interface: first/last seen, active while it is listed."""

    __tablename__ = "arp_entries"
    __table_args__ = (UniqueConstraint("device_id", "if_index", "ip", "mac"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    if_index: Mapped[int]
    context: Mapped[str] = mapped_column(String(64), default="")
    ip: Mapped[str] = mapped_column(String(64), index=True)
    mac: Mapped[str] = mapped_column(String(17))
    link_id: Mapped[int | None] = mapped_column(ForeignKey("links.id"), index=True)
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    active: Mapped[bool] = mapped_column(default=True, index=True)

    device: Mapped[Device] = relationship()
    link: Mapped[Link | None] = relationship()


class MacChange(Base):
    """An IP answered from a different MAC than last time (arpwatch's "changed ethernet")."""

    __tablename__ = "mac_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    link_id: Mapped[int | None] = mapped_column(ForeignKey("links.id"))
    ip: Mapped[str] = mapped_column(String(64), index=True)
    old_mac: Mapped[str] = mapped_column(String(17))
    new_mac: Mapped[str] = mapped_column(String(17))
    at: Mapped[datetime] = mapped_column(default=utcnow)
