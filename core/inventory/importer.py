"""Import: validate every row against the file and the database, then write all or nothing.

Rows are upserted by natural key (docs/inventory.md). Every problem is reported with the file's
line number; one bad row means nothing is written."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core.audit import record
from core.crypto import ENC_PREFIX, SecretBox, secret_box
from core.errors import ConfigError, ValidationFailed
from core.inventory.fileio import parse_rows, read_file
from core.inventory.schema import (
    BackbonePrefixRow,
    CarrierRow,
    CountyRow,
    DeviceRow,
    ExporterRow,
    InstitutionRow,
    IpAllocationRow,
    LinkRow,
    Row,
    VendorRow,
    VendorServerRow,
)
from core.models import (
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

Progress = Callable[[int], None]


def netmiko_device_types() -> frozenset[str]:
    """Device types netmiko can drive (imported lazily: netmiko is slow to import)."""
    from netmiko.ssh_dispatcher import CLASS_MAPPER

    return frozenset(CLASS_MAPPER)


@dataclass
class ImportResult:
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    rows: int = 0


class _Existing:
    """The database's inventory, keyed like the file, loaded once per import."""

    def __init__(self, session: Session) -> None:
        self.counties = {c.code: c for c in session.scalars(select(County))}
        self.carriers = {c.name: c for c in session.scalars(select(Carrier))}
        self.devices = {d.name: d for d in session.scalars(select(Device))}
        self.institutions = {i.code: i for i in session.scalars(select(Institution))}
        self.links = {
            (lk.device.name, lk.interface or "vpdn:" + (lk.vpdn_account or "")): lk
            for lk in session.scalars(select(Link).options(selectinload(Link.device)))
        }
        self.allocations = {
            a.prefix: a
            for a in session.scalars(
                select(IpAllocation).options(selectinload(IpAllocation.institution))
            )
        }
        self.backbone = {b.prefix: b for b in session.scalars(select(BackbonePrefix))}
        self.exporters = {
            (e.address, e.observation_domain): e for e in session.scalars(select(Exporter))
        }
        self.vendors = {v.name: v for v in session.scalars(select(Vendor))}
        self.vendor_servers = {
            (s.vendor.name, s.address): s
            for s in session.scalars(
                select(VendorServer).options(selectinload(VendorServer.vendor))
            )
        }


def _key(row: Row) -> tuple[Any, ...]:
    match row:
        case CountyRow() | InstitutionRow():
            return (type(row).__name__, row.code)
        case CarrierRow() | DeviceRow() | VendorRow():
            return (type(row).__name__, row.name)
        case LinkRow():
            return ("LinkRow", *row.key)
        case IpAllocationRow() | BackbonePrefixRow():
            return (type(row).__name__, row.prefix)
        case ExporterRow():
            return ("ExporterRow", row.address, row.observation_domain)
        case VendorServerRow():
            return ("VendorServerRow", row.vendor, row.address)
    raise TypeError(type(row))


def _net(prefix: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(prefix)
    return net.version, int(net.network_address), int(net.broadcast_address)


def validate(
    session: Session, rows: list[Row], name: str, progress: Progress | None = None
) -> tuple[list[str], _Existing]:
    """Every reason the rows cannot be imported as they are, each naming its line."""
    db = _Existing(session)
    problems: list[str] = []
    seen: dict[tuple[Any, ...], int] = {}

    def bad(row: Row, msg: str) -> None:
        problems.append(f"{name}:{row.line}: {msg}")

    by_type: dict[type[Row], list[Row]] = {}
    for row in rows:
        by_type.setdefault(type(row), []).append(row)
        key = _key(row)
        if key in seen:
            bad(row, f"duplicate {' '.join(str(k) for k in key[1:])} (first on line {seen[key]})")
        else:
            seen[key] = row.line

    def rows_of(kind: type[Row]) -> list[Any]:
        return by_type.get(kind, [])

    counties = set(db.counties) | {r.code for r in rows_of(CountyRow)}
    carriers = set(db.carriers) | {r.name for r in rows_of(CarrierRow)}
    institutions = set(db.institutions) | {r.code for r in rows_of(InstitutionRow)}
    vendors = set(db.vendors) | {r.name for r in rows_of(VendorRow)}
    uplinks: dict[str, set[str]] = {n: set(d.uplink_interfaces) for n, d in db.devices.items()}
    uplinks.update({r.name: set(r.uplink_interfaces) for r in rows_of(DeviceRow)})
    device_types = netmiko_device_types() if rows_of(DeviceRow) else frozenset()
    box: SecretBox | None = None

    for r in rows_of(CountyRow):
        if r.parent is not None and r.parent not in counties:
            bad(r, f"county {r.code}: unknown parent county {r.parent}")
        if r.parent == r.code:
            bad(r, f"county {r.code} cannot be its own parent")
    for r in rows_of(DeviceRow):
        if r.device_type not in device_types:
            bad(r, f"device {r.name}: unknown device type {r.device_type!r} (not a netmiko type)")
        if r.county is not None and r.county not in counties:
            bad(r, f"device {r.name}: unknown county {r.county}")
        for secret in _secrets(r):
            if secret.startswith(ENC_PREFIX):
                try:
                    box = box or secret_box()
                    box.decrypt(secret.removeprefix(ENC_PREFIX))
                except ConfigError as exc:
                    bad(r, f"device {r.name}: {exc}")
                    break
    for r in rows_of(InstitutionRow):
        if r.county not in counties:
            bad(r, f"institution {r.code}: unknown county {r.county}")
    for r in rows_of(LinkRow):
        if r.institution not in institutions:
            bad(r, f"link: unknown institution {r.institution}")
        if r.device not in uplinks:
            bad(r, f"link: unknown device {r.device}")
        elif r.interface and r.interface in uplinks[r.device]:
            bad(
                r,
                f"link: {r.device} {r.interface} is an uplink and cannot be an institution's link",
            )
        if r.carrier is not None and r.carrier not in carriers:
            bad(r, f"link: unknown carrier {r.carrier}")
    _check_allocations(db, rows_of(IpAllocationRow), institutions, bad)
    for r in rows_of(ExporterRow):
        if r.device is not None and r.device not in uplinks:
            bad(r, f"exporter {r.address}: unknown device {r.device}")
    for r in rows_of(VendorServerRow):
        if r.vendor not in vendors:
            bad(r, f"vendor server {r.address}: unknown vendor {r.vendor}")
    if progress:
        progress(len(rows))
    return problems, db


def _check_allocations(
    db: _Existing,
    rows: list[IpAllocationRow],
    institutions: set[str],
    bad: Callable[[Row, str], None],
) -> None:
    """No prefix may overlap another: an address belongs to one institution (Jilin art. 15)."""
    for r in rows:
        if r.institution not in institutions:
            bad(r, f"allocation {r.prefix}: unknown institution {r.institution}")
        existing = db.allocations.get(r.prefix)
        if existing is not None and existing.institution.code != r.institution:
            bad(
                r,
                f"allocation {r.prefix} is already allocated to {existing.institution.code}; "
                "remove it there first",
            )
    in_file = {r.prefix: r for r in rows}
    spans: list[tuple[int, int, int, str, IpAllocationRow | None]] = []
    for prefix, alloc in db.allocations.items():
        if prefix not in in_file:
            spans.append((*_net(prefix), alloc.institution.code, None))
    for r in rows:
        spans.append((*_net(r.prefix), r.institution, r))
    spans.sort(key=lambda s: (s[0], s[1], -s[2]))
    reach: tuple[int, int, int, str, IpAllocationRow | None] | None = None
    overlaps: dict[int, int] = {}  # row line → overlaps found; name three, count the rest
    for span in spans:
        if reach is not None and span[0] == reach[0] and span[1] <= reach[2]:
            row, other = (span[4], reach) if span[4] is not None else (reach[4], span)
            if row is not None:
                overlaps[row.line] = overlaps.get(row.line, 0) + 1
            if row is not None and overlaps[row.line] <= 3:
                where = f"line {other[4].line}" if other[4] is not None else "the database"
                other_prefix = _prefix_of(other)
                bad(
                    row,
                    f"allocation {row.prefix} overlaps {other_prefix} of {other[3]} ({where})",
                )
        if reach is None or span[0] != reach[0] or span[2] > reach[2]:
            reach = span
    for r in rows:
        if overlaps.get(r.line, 0) > 3:
            bad(r, f"allocation {r.prefix} overlaps {overlaps[r.line] - 3} more allocations")


def _prefix_of(span: tuple[int, int, int, str, IpAllocationRow | None]) -> str:
    if span[4] is not None:
        return span[4].prefix
    version, start, end = span[0], span[1], span[2]
    size = end - start + 1
    bits = (32 if version == 4 else 128) - size.bit_length() + 1
    return str(ipaddress.ip_network((start, bits)))


def _secrets(row: DeviceRow) -> Iterable[str]:
    values = []
    if row.snmp:
        values += [row.snmp.community, row.snmp.auth_key, row.snmp.priv_key]
    if row.ssh:
        values += [row.ssh.password, row.ssh.secret]
    return [v for v in values if v]


def _seal(box_getter: Callable[[], SecretBox], value: str | None) -> str | None:
    """Store a secret encrypted; an ``enc:`` token from an export is kept as it is."""
    if value is None:
        return None
    if value.startswith(ENC_PREFIX):
        return value.removeprefix(ENC_PREFIX)
    return box_getter().encrypt(value)


class _Writer:
    def __init__(self, session: Session, db: _Existing, result: ImportResult) -> None:
        self.session, self.db, self.result = session, db, result
        self._box: SecretBox | None = None

    def box(self) -> SecretBox:
        self._box = self._box or secret_box()
        return self._box

    def upsert(self, section: str, existing: Any, model: type[Any], values: dict[str, Any]) -> Any:
        if existing is None:
            obj = model(**values)
            self.session.add(obj)
            self.result.created[section] = self.result.created.get(section, 0) + 1
            return obj
        changed = False
        for k, v in values.items():
            if getattr(existing, k) != v:
                setattr(existing, k, v)
                changed = True
        if changed:
            self.result.updated[section] = self.result.updated.get(section, 0) + 1
        return existing

    def write(self, rows: list[Row], progress: Progress | None) -> None:
        db = self.db
        parents: list[tuple[County, str]] = []
        for row in rows:
            self._write_one(row, parents)
            if progress:
                progress(1)
        for county, parent_code in parents:
            county.parent = db.counties[parent_code]
        self.session.flush()

    def _given(self, row: Row, fields: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in fields.items() if k in row.model_fields_set}

    def _write_one(self, row: Row, parents: list[tuple[County, str]]) -> None:
        db = self.db
        match row:
            case CountyRow():
                c = self.upsert(
                    "counties",
                    db.counties.get(row.code),
                    County,
                    {"code": row.code, "name": row.name, "policy": row.policy},
                )
                db.counties[row.code] = c
                if row.parent:
                    parents.append((c, row.parent))
            case CarrierRow():
                db.carriers[row.name] = self.upsert(
                    "carriers", db.carriers.get(row.name), Carrier, {"name": row.name}
                )
            case DeviceRow():
                values: dict[str, Any] = {
                    "name": row.name,
                    "mgmt_address": row.mgmt_address,
                    "ssh_port": row.ssh_port,
                    "device_type": row.device_type,
                    "role": row.role,
                    "enabled": row.enabled,
                    "uplink_interfaces": list(row.uplink_interfaces),
                    "county": db.counties[row.county] if row.county else None,
                }
                if row.snmp:
                    values.update(
                        snmp_version=row.snmp.version,
                        snmp_port=row.snmp.port,
                        snmp_community_enc=_seal(self.box, row.snmp.community),
                        snmp_user=row.snmp.user,
                        snmp_auth_protocol=row.snmp.auth_protocol,
                        snmp_auth_key_enc=_seal(self.box, row.snmp.auth_key),
                        snmp_priv_protocol=row.snmp.priv_protocol,
                        snmp_priv_key_enc=_seal(self.box, row.snmp.priv_key),
                        snmp_contexts=list(row.snmp.contexts),
                    )
                if row.ssh:
                    values.update(
                        ssh_username=row.ssh.username,
                        ssh_password_enc=_seal(self.box, row.ssh.password),
                        ssh_secret_enc=_seal(self.box, row.ssh.secret),
                    )
                existing = db.devices.get(row.name)
                if existing is not None:
                    values = {
                        k: v
                        for k, v in values.items()
                        if not _unchanged_secret(self.box, existing, k, v)
                    }
                db.devices[row.name] = self.upsert("devices", existing, Device, values)
            case InstitutionRow():
                values = {
                    "code": row.code,
                    "name": row.name,
                    "kind": row.kind,
                    "county": db.counties[row.county],
                    "status": row.status,
                    "protected": row.protected,
                    "agreement_start": row.agreement_start,
                    "agreement_end": row.agreement_end,
                }
                db.institutions[row.code] = self.upsert(
                    "institutions", db.institutions.get(row.code), Institution, values
                )
            case LinkRow():
                values = {
                    "institution": db.institutions[row.institution],
                    "carrier": db.carriers[row.carrier] if row.carrier else None,
                    "kind": row.kind,
                    "device": db.devices[row.device],
                    "interface": row.interface,
                    "vpdn_account": row.vpdn_account,
                }
                existing_link = db.links.get(row.key)
                if existing_link is None or "state" in row.model_fields_set:
                    values["state"] = row.state
                db.links[row.key] = self.upsert("links", existing_link, Link, values)
            case IpAllocationRow():
                db.allocations[row.prefix] = self.upsert(
                    "ip_allocations",
                    db.allocations.get(row.prefix),
                    IpAllocation,
                    {"prefix": row.prefix, "institution": db.institutions[row.institution]},
                )
            case BackbonePrefixRow():
                db.backbone[row.prefix] = self.upsert(
                    "backbone_prefixes",
                    db.backbone.get(row.prefix),
                    BackbonePrefix,
                    {"prefix": row.prefix, "description": row.description},
                )
            case ExporterRow():
                key = (row.address, row.observation_domain)
                db.exporters[key] = self.upsert(
                    "exporters",
                    db.exporters.get(key),
                    Exporter,
                    {
                        "address": row.address,
                        "observation_domain": row.observation_domain,
                        "device": db.devices[row.device] if row.device else None,
                        "sampling_rate": row.sampling_rate,
                        "enabled": row.enabled,
                    },
                )
            case VendorRow():
                db.vendors[row.name] = self.upsert(
                    "vendors",
                    db.vendors.get(row.name),
                    Vendor,
                    {
                        "name": row.name,
                        "registered": row.registered,
                        "in_province": row.in_province,
                        "status": row.status,
                    },
                )
            case VendorServerRow():
                vkey = (row.vendor, row.address)
                db.vendor_servers[vkey] = self.upsert(
                    "vendor_servers",
                    db.vendor_servers.get(vkey),
                    VendorServer,
                    {
                        "vendor": db.vendors[row.vendor],
                        "address": row.address,
                        "location": row.location,
                        "description": row.description,
                    },
                )


def _unchanged_secret(box: Callable[[], SecretBox], device: Device, key: str, value: Any) -> bool:
    """A re-imported secret that decrypts to the stored one is not a change (Fernet tokens
    differ on every encryption, so comparing tokens would always say 'changed')."""
    if not key.endswith("_enc") or value is None:
        return False
    current = getattr(device, key)
    if current is None:
        return False
    return bool(current == value or box().decrypt(current) == box().decrypt(value))


def import_rows(
    session: Session,
    rows: list[Row],
    *,
    name: str,
    actor: str,
    digest: str = "",
    progress: Progress | None = None,
    earlier_problems: list[str] | None = None,
) -> ImportResult:
    """Validate and write in the caller's transaction; raises ValidationFailed, writing nothing.

    ``earlier_problems`` (rows that did not even parse) are reported together with the
    cross-row ones, so one run shows every bad row."""
    problems, db = validate(session, rows, name, progress)
    problems = sorted([*(earlier_problems or []), *problems], key=lambda p: _line_of(p, name))
    if problems:
        raise ValidationFailed(
            f"{name}: {len(problems)} problem(s); nothing was imported", problems
        )
    result = ImportResult(rows=len(rows))
    _Writer(session, db, result).write(rows, progress)
    record(
        session,
        actor=actor,
        action="inventory.import",
        object_type="inventory",
        object_id=Path(name).name[:64],
        reason=f"imported {len(rows)} rows from {name}",
        data={
            "file": name,
            "sha256": digest,
            "created": result.created,
            "updated": result.updated,
        },
    )
    return result


def _line_of(problem: str, name: str) -> int:
    head = problem.removeprefix(name + ":").split(":", 1)[0]
    return int(head) if head.isdigit() else 0


def import_file(
    session: Session, path: Path, *, actor: str, progress: Progress | None = None
) -> ImportResult:
    raw = read_file(path)
    rows, problems = parse_rows(raw, str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return import_rows(
        session,
        rows,
        name=str(path),
        actor=actor,
        digest=digest,
        progress=progress,
        earlier_problems=problems,
    )
