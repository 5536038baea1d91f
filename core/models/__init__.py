"""The domain model (DESIGN.md, "Domain model"); import models from here."""

from core.models.base import Base, UTCDateTime
from core.models.cases import Case, CaseEvent, Deadline, EnforcementAction
from core.models.enums import (
    ActionKind,
    ActionMode,
    ActionState,
    DeviceRole,
    InstitutionKind,
    InstitutionStatus,
    LinkKind,
    LinkState,
    ObservationSource,
    Role,
    SnmpVersion,
    VendorStatus,
)
from core.models.evidence import Detection, Observation
from core.models.inventory import (
    BackbonePrefix,
    Carrier,
    County,
    Device,
    Exporter,
    Institution,
    IpAllocation,
    Link,
    Vendor,
    VendorServer,
)
from core.models.records import Document, Incident, Report
from core.models.security import ApiToken, AuditEvent, AuditHead, User, user_counties

__all__ = [
    "ActionKind",
    "ActionMode",
    "ActionState",
    "ApiToken",
    "AuditEvent",
    "AuditHead",
    "BackbonePrefix",
    "Base",
    "Carrier",
    "Case",
    "CaseEvent",
    "County",
    "Deadline",
    "Detection",
    "Device",
    "DeviceRole",
    "Document",
    "EnforcementAction",
    "Exporter",
    "Incident",
    "Institution",
    "InstitutionKind",
    "InstitutionStatus",
    "IpAllocation",
    "Link",
    "LinkKind",
    "LinkState",
    "Observation",
    "ObservationSource",
    "Report",
    "Role",
    "SnmpVersion",
    "UTCDateTime",
    "User",
    "Vendor",
    "VendorServer",
    "VendorStatus",
    "user_counties",
]
