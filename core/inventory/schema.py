"""Row models of the inventory file (docs/inventory.md): one pydantic model per section.

Field-level checks (formats, enums, prefixes) live here; checks across rows and against the
database live in :mod:`core.inventory.validate`."""

from __future__ import annotations

import ipaddress
import re
from datetime import date
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from core.models import (
    DeviceRole,
    InstitutionKind,
    InstitutionStatus,
    LinkKind,
    LinkState,
    SnmpVersion,
    VendorStatus,
)


def _as_str(value: Any) -> Any:
    """YAML reads an unquoted 140502 as a number; codes are strings."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Code = Annotated[str, BeforeValidator(_as_str)]
COUNTY_CODE = re.compile(r"^\d{6}$")
INSTITUTION_CODE = re.compile(r"^[A-Z]\d{11}$")


def _ip(value: str) -> str:
    return str(ipaddress.ip_address(value.strip()))


def _prefix(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=True))
    except ValueError as exc:
        raise ValueError(f"malformed prefix {value!r}: {exc}") from None


IpAddr = Annotated[str, AfterValidator(_ip)]
Prefix = Annotated[str, AfterValidator(_prefix)]


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, use_enum_values=False)

    line: int = Field(default=0, exclude=True)


class CountyRow(Row):
    code: Code
    name: str = Field(min_length=1)
    parent: Code | None = None
    policy: str | None = None

    @field_validator("code", "parent")
    @classmethod
    def _code(cls, v: str | None) -> str | None:
        if v is not None and not COUNTY_CODE.match(v):
            raise ValueError(f"county code {v!r} is not a 6-digit division code")
        return v


class CarrierRow(Row):
    name: str = Field(min_length=1)


class SnmpSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: SnmpVersion = SnmpVersion.V2C
    port: int = Field(default=161, ge=1, le=65535)
    community: str | None = None
    user: str | None = None
    auth_protocol: str | None = None
    auth_key: str | None = None
    priv_protocol: str | None = None
    priv_key: str | None = None
    contexts: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _credentials(self) -> SnmpSpec:
        if self.version == SnmpVersion.V2C and not self.community:
            raise ValueError("SNMP v2c needs a community")
        if self.version == SnmpVersion.V3 and not self.user:
            raise ValueError("SNMP v3 needs a user")
        return self


class SshSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str | None = None
    password: str | None = None
    secret: str | None = None


class DeviceRow(Row):
    name: str = Field(min_length=1)
    mgmt_address: IpAddr
    ssh_port: int = Field(default=22, ge=1, le=65535)
    device_type: str
    role: DeviceRole
    county: Code | None = None
    enabled: bool = True
    snmp: SnmpSpec | None = None
    ssh: SshSpec | None = None
    uplink_interfaces: list[str] = Field(default_factory=list)


class InstitutionRow(Row):
    code: Code
    name: str = Field(min_length=1)
    kind: InstitutionKind
    county: Code
    status: InstitutionStatus = InstitutionStatus.ACTIVE
    protected: bool = False
    agreement_start: date | None = None
    agreement_end: date | None = None

    @field_validator("code")
    @classmethod
    def _code(cls, v: str) -> str:
        if not INSTITUTION_CODE.match(v):
            raise ValueError(f"institution code {v!r} is not a letter and 11 digits")
        return v

    @model_validator(mode="after")
    def _term(self) -> InstitutionRow:
        if (
            self.agreement_start
            and self.agreement_end
            and self.agreement_end < self.agreement_start
        ):
            raise ValueError("agreement_end is before agreement_start")
        return self


class LinkRow(Row):
    institution: Code
    carrier: str | None = None
    kind: LinkKind
    device: str
    interface: str | None = None
    vpdn_account: str | None = None
    state: LinkState = LinkState.UP

    @model_validator(mode="after")
    def _target(self) -> LinkRow:
        if self.kind == LinkKind.LEASED_LINE and not self.interface:
            raise ValueError("a leased_line link needs an interface")
        if self.kind == LinkKind.VPDN and not self.vpdn_account:
            raise ValueError("a vpdn link needs a vpdn_account")
        return self

    @property
    def key(self) -> tuple[str, str]:
        return (self.device, self.interface or "vpdn:" + (self.vpdn_account or ""))


class IpAllocationRow(Row):
    institution: Code
    prefix: Prefix


class BackbonePrefixRow(Row):
    prefix: Prefix
    description: str | None = None


class ExporterRow(Row):
    address: IpAddr
    observation_domain: int = Field(default=0, ge=0, le=2**32 - 1)
    device: str | None = None
    sampling_rate: int = Field(default=1, ge=1)
    enabled: bool = True


class VendorRow(Row):
    name: str = Field(min_length=1)
    registered: bool = False
    in_province: bool = True
    status: VendorStatus = VendorStatus.ACTIVE


class VendorServerRow(Row):
    vendor: str
    address: IpAddr
    location: str | None = None
    description: str | None = None


# Section name (YAML key) → (CSV type, row model), in the order rows must be written.
SECTIONS: dict[str, tuple[str, type[Row]]] = {
    "counties": ("county", CountyRow),
    "carriers": ("carrier", CarrierRow),
    "devices": ("device", DeviceRow),
    "institutions": ("institution", InstitutionRow),
    "links": ("link", LinkRow),
    "ip_allocations": ("ip_allocation", IpAllocationRow),
    "backbone_prefixes": ("backbone_prefix", BackbonePrefixRow),
    "exporters": ("exporter", ExporterRow),
    "vendors": ("vendor", VendorRow),
    "vendor_servers": ("vendor_server", VendorServerRow),
}
