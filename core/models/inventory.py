"""What the bureau has: counties, institutions, their links and addresses, devices, exporters,
vendors. Everything else refers to these rows."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.models.base import Base, TimestampMixin, str_enum
from core.models.enums import (
    DeviceRole,
    InstitutionKind,
    InstitutionStatus,
    LinkKind,
    LinkState,
    SnmpVersion,
    VendorStatus,
)


class County(Base):
    """A county bureau's area (属地), or the city itself when it has no parent.

    ``policy`` names the escalation policy file; a county without one inherits its parent's."""

    __tablename__ = "counties"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("counties.id"))
    policy: Mapped[str | None] = mapped_column(String(64))

    parent: Mapped[County | None] = relationship(remote_side=[id])
    institutions: Mapped[list[Institution]] = relationship(back_populates="county")

    def effective_policy(self) -> str | None:
        county: County | None = self
        while county is not None:
            if county.policy:
                return county.policy
            county = county.parent
        return None


class Institution(TimestampMixin, Base):
    """A designated institution (定点医药机构) identified by its national 医保 code."""

    __tablename__ = "institutions"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[InstitutionKind] = mapped_column(str_enum(InstitutionKind))
    county_id: Mapped[int] = mapped_column(ForeignKey("counties.id"), index=True)
    status: Mapped[InstitutionStatus] = mapped_column(
        str_enum(InstitutionStatus), default=InstitutionStatus.ACTIVE
    )
    protected: Mapped[bool] = mapped_column(default=False)
    agreement_start: Mapped[date | None]
    agreement_end: Mapped[date | None]

    county: Mapped[County] = relationship(back_populates="institutions")
    links: Mapped[list[Link]] = relationship(back_populates="institution")
    allocations: Mapped[list[IpAllocation]] = relationship(back_populates="institution")


class Carrier(Base):
    __tablename__ = "carriers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)


class Device(TimestampMixin, Base):
    """An edge router, firewall or LNS. Secrets are Fernet tokens (see core.crypto); the
    ``*_enc`` columns never hold clear text."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    mgmt_address: Mapped[str] = mapped_column(String(64))
    ssh_port: Mapped[int] = mapped_column(default=22)
    device_type: Mapped[str] = mapped_column(String(64))
    role: Mapped[DeviceRole] = mapped_column(str_enum(DeviceRole))
    county_id: Mapped[int | None] = mapped_column(ForeignKey("counties.id"))
    enabled: Mapped[bool] = mapped_column(default=True)
    snmp_version: Mapped[SnmpVersion] = mapped_column(
        str_enum(SnmpVersion), default=SnmpVersion.V2C
    )
    snmp_port: Mapped[int] = mapped_column(default=161)
    snmp_community_enc: Mapped[str | None] = mapped_column(String(512))
    snmp_user: Mapped[str | None] = mapped_column(String(64))
    snmp_auth_protocol: Mapped[str | None] = mapped_column(String(16))
    snmp_auth_key_enc: Mapped[str | None] = mapped_column(String(512))
    snmp_priv_protocol: Mapped[str | None] = mapped_column(String(16))
    snmp_priv_key_enc: Mapped[str | None] = mapped_column(String(512))
    snmp_contexts: Mapped[list[str]] = mapped_column(JSON, default=list)
    ssh_username: Mapped[str | None] = mapped_column(String(64))
    ssh_password_enc: Mapped[str | None] = mapped_column(String(512))
    ssh_secret_enc: Mapped[str | None] = mapped_column(String(512))
    uplink_interfaces: Mapped[list[str]] = mapped_column(JSON, default=list)

    county: Mapped[County | None] = relationship()
    links: Mapped[list[Link]] = relationship(back_populates="device")


class Link(TimestampMixin, Base):
    """An institution's access: a leased-line sub-interface or a VPDN account on an LNS."""

    __tablename__ = "links"
    __table_args__ = (
        UniqueConstraint("device_id", "interface"),
        UniqueConstraint("device_id", "vpdn_account"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    carrier_id: Mapped[int | None] = mapped_column(ForeignKey("carriers.id"))
    kind: Mapped[LinkKind] = mapped_column(str_enum(LinkKind))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    interface: Mapped[str | None] = mapped_column(String(100))
    vpdn_account: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[LinkState] = mapped_column(str_enum(LinkState), default=LinkState.UP)

    institution: Mapped[Institution] = relationship(back_populates="links")
    carrier: Mapped[Carrier | None] = relationship()
    device: Mapped[Device] = relationship(back_populates="links")


class IpAllocation(Base):
    """A prefix the bureau allocated to an institution (Jilin art. 15)."""

    __tablename__ = "ip_allocations"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(64), unique=True)

    institution: Mapped[Institution] = relationship(back_populates="allocations")


class BackbonePrefix(Base):
    """A destination inside the backbone; traffic to anything else is outbound."""

    __tablename__ = "backbone_prefixes"

    id: Mapped[int] = mapped_column(primary_key=True)
    prefix: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(String(200))


class Exporter(Base):
    """A registered NetFlow/IPFIX source. Flows from anyone else never make a detection."""

    __tablename__ = "exporters"
    __table_args__ = (UniqueConstraint("address", "observation_domain"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(64))
    observation_domain: Mapped[int] = mapped_column(default=0)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"))
    sampling_rate: Mapped[int] = mapped_column(default=1)
    enabled: Mapped[bool] = mapped_column(default=True)

    device: Mapped[Device | None] = relationship()


class Vendor(Base):
    """A third-party vendor whose servers reach the backbone (Jilin art. 17-24)."""

    __tablename__ = "vendors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    registered: Mapped[bool] = mapped_column(default=False)
    in_province: Mapped[bool] = mapped_column(default=True)
    status: Mapped[VendorStatus] = mapped_column(
        str_enum(VendorStatus), default=VendorStatus.ACTIVE
    )

    servers: Mapped[list[VendorServer]] = relationship(back_populates="vendor")


class VendorServer(Base):
    __tablename__ = "vendor_servers"
    __table_args__ = (UniqueConstraint("vendor_id", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    vendor_id: Mapped[int] = mapped_column(ForeignKey("vendors.id"))
    address: Mapped[str] = mapped_column(String(64))
    location: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(200))
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    vendor: Mapped[Vendor] = relationship(back_populates="servers")
