"""Closed vocabularies of the domain model (DESIGN.md, "Domain model")."""

from __future__ import annotations

from enum import StrEnum


class InstitutionKind(StrEnum):
    HOSPITAL = "hospital"
    PHARMACY = "pharmacy"
    LTC = "ltc"
    APPLICANT = "applicant"


class InstitutionStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"
    BLACKLISTED = "blacklisted"
    APPLICANT = "applicant"
    REVOKED = "revoked"


class LinkKind(StrEnum):
    LEASED_LINE = "leased_line"
    VPDN = "vpdn"


class LinkState(StrEnum):
    UP = "up"
    DOWN = "down"
    CUT = "cut"


class DeviceRole(StrEnum):
    EDGE_ROUTER = "edge_router"
    FIREWALL = "firewall"
    LNS = "lns"


class SnmpVersion(StrEnum):
    V2C = "v2c"
    V3 = "v3"


class VendorStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class ObservationSource(StrEnum):
    NETFLOW = "netflow"
    SNMP = "snmp"
    PROBE = "probe"
    MANUAL = "manual"


class ActionKind(StrEnum):
    CUT = "cut"
    RESTORE = "restore"


class ActionMode(StrEnum):
    OBSERVE = "observe"
    APPROVE = "approve"
    AUTO = "auto"


class ActionState(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    EXECUTING = "executing"
    VERIFIED = "verified"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Role(StrEnum):
    VIEWER = "viewer"
    COUNTY_OPERATOR = "county_operator"
    CITY_ADMIN = "city_admin"
    AUDITOR = "auditor"


class SweepStatus(StrEnum):
    RUNNING = "running"
    OK = "ok"
    PARTIAL = "partial"
    FAILED = "failed"


class SweepDeviceStatus(StrEnum):
    OK = "ok"
    TIMEOUT = "timeout"
    AUTH_ERROR = "auth_error"
    PARTIAL = "partial"
    ERROR = "error"
