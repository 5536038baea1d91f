"""Inventory, read-only: counties, institutions, links, IP allocations, devices, exporters,
vendors (scoped to the caller's counties in the query).

Writes go through ``edgewarden inventory import`` (one validated, audited file), never REST.
Devices are answered without any secret (Jilin art. 33)."""

from __future__ import annotations

import ipaddress
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, func, or_, select, true
from sqlalchemy.orm import Session, selectinload

from api.auth import SessionDep
from api.deps import (
    NO_CONTROL,
    CountyCode,
    InstCode,
    InstPath,
    Name,
    Page,
    PageDep,
    ReaderDep,
    in_scope,
    page_by_id,
    scoped,
)
from api.problems import Problem
from core.actors import Actor
from core.models import (
    Case,
    County,
    Device,
    DeviceRole,
    Exporter,
    Institution,
    InstitutionKind,
    InstitutionStatus,
    IpAllocation,
    Link,
    LinkKind,
    LinkState,
    Vendor,
    VendorStatus,
)
from core.timeutil import utcnow
from rules.engine import strikes_in_window
from rules.errors import PolicyError
from rules.policy import default_store

router = APIRouter(tags=["inventory"])


# ---------------------------------------------------------------- models


class CountyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str


class CountyDetailOut(CountyOut):
    id: int
    parent_code: str | None
    policy: str | None  # the escalation policy in force (inherited from the parent if unset)


class InstitutionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    kind: str
    status: str
    protected: bool
    agreement_start: date | None = None
    agreement_end: date | None = None
    county: CountyOut


class LinkOut(BaseModel):
    id: int
    institution_code: str
    kind: str
    carrier: str | None
    device: str
    interface: str | None
    vpdn_account: str | None
    state: str


class AllocationOut(BaseModel):
    id: int
    institution_code: str
    prefix: str


class InstitutionDetailOut(InstitutionOut):
    links: list[LinkOut]
    allocations: list[AllocationOut]
    open_cases: int
    strikes: int | None  # counting cases in the current window; None when no policy loads


class DeviceOut(BaseModel):
    """A device without its secrets: no community, keys, user names or passwords."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    mgmt_address: str
    device_type: str
    role: str
    county: str | None
    enabled: bool
    snmp_version: str
    uplink_interfaces: list[str]


class ExporterOut(BaseModel):
    id: int
    address: str
    observation_domain: int
    device: str | None
    sampling_rate: int
    enabled: bool


class VendorServerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    address: str
    location: str | None
    description: str | None


class VendorOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    registered: bool
    in_province: bool
    status: str
    servers: list[VendorServerOut]


def link_out(link: Link) -> LinkOut:
    return LinkOut(
        id=link.id,
        institution_code=link.institution.code,
        kind=link.kind.value,
        carrier=link.carrier.name if link.carrier else None,
        device=link.device.name,
        interface=link.interface,
        vpdn_account=link.vpdn_account,
        state=link.state.value,
    )


def allocation_out(alloc: IpAllocation) -> AllocationOut:
    return AllocationOut(id=alloc.id, institution_code=alloc.institution.code, prefix=alloc.prefix)


def device_out(device: Device) -> DeviceOut:
    return DeviceOut(
        id=device.id,
        name=device.name,
        mgmt_address=device.mgmt_address,
        device_type=device.device_type,
        role=device.role.value,
        county=device.county.code if device.county else None,
        enabled=device.enabled,
        snmp_version=device.snmp_version.value,
        uplink_interfaces=list(device.uplink_interfaces or []),
    )


# ---------------------------------------------------------------- scoping helpers


def device_in_scope(actor: Actor) -> ColumnElement[bool]:
    """A county operator sees devices of its counties and devices carrying one of its links."""
    if actor.city_wide:
        return true()
    own_counties = select(County.id).where(County.code.in_(sorted(actor.county_codes)))
    carrying = select(Link.device_id).where(in_scope(Link.institution_id, actor))
    return or_(Device.county_id.in_(own_counties), Device.id.in_(carrying))


def institution_id_of(session: Session, actor: Actor, code: str) -> int:
    """The id of a visible institution, or -1 (matches nothing) so a filter stays a filter."""
    found = session.scalar(scoped(select(Institution.id), actor).where(Institution.code == code))
    return -1 if found is None else int(found)


def containing_prefixes(ip: str) -> list[str]:
    """Every network (in the importer's normal form) that holds ``ip``."""
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError as exc:
        raise Problem(422, f"ip: {ip!r} is not an IPv4 or IPv6 address") from exc
    return [
        str(ipaddress.ip_network(f"{addr}/{length}", strict=False))
        for length in range(addr.max_prefixlen + 1)
    ]


# ---------------------------------------------------------------- counties and institutions


@router.get("/counties", response_model=Page[CountyDetailOut])
def list_counties(session: SessionDep, actor: ReaderDep, page: PageDep) -> Page[CountyDetailOut]:
    stmt = select(County).options(selectinload(County.parent))
    if not actor.city_wide:
        stmt = stmt.where(County.code.in_(sorted(actor.county_codes)))
    rows, cursor = page_by_id(session, stmt, County.id, page, descending=False)
    items = [
        CountyDetailOut(
            id=c.id,
            code=c.code,
            name=c.name,
            parent_code=c.parent.code if c.parent else None,
            policy=c.effective_policy(),
        )
        for c in rows
    ]
    return Page[CountyDetailOut](items=items, next_cursor=cursor)


@router.get("/institutions", response_model=Page[InstitutionOut])
def list_institutions(
    session: SessionDep,
    actor: ReaderDep,
    page: PageDep,
    county: CountyCode = None,
    status: InstitutionStatus | None = None,
    kind: InstitutionKind | None = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1, max_length=100, pattern=NO_CONTROL, description="part of the code or name"
        ),
    ] = None,
) -> Page[InstitutionOut]:
    stmt = scoped(select(Institution), actor).options(selectinload(Institution.county))
    if county:
        stmt = stmt.where(Institution.county.has(County.code == county))
    if status:
        stmt = stmt.where(Institution.status == status)
    if kind:
        stmt = stmt.where(Institution.kind == kind)
    if q:
        like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(
            or_(
                Institution.code.ilike(like, escape="\\"),
                Institution.name.ilike(like, escape="\\"),
            )
        )
    rows, cursor = page_by_id(session, stmt, Institution.id, page, descending=False)
    return Page[InstitutionOut](
        items=[InstitutionOut.model_validate(r) for r in rows], next_cursor=cursor
    )


@router.get("/institutions/{code}", response_model=InstitutionDetailOut)
def get_institution(code: InstPath, session: SessionDep, actor: ReaderDep) -> InstitutionDetailOut:
    stmt = scoped(select(Institution), actor).where(Institution.code == code)
    found: Institution | None = session.scalar(
        stmt.options(
            selectinload(Institution.county),
            selectinload(Institution.links).selectinload(Link.device),
            selectinload(Institution.links).selectinload(Link.carrier),
            selectinload(Institution.allocations),
        )
    )
    if found is None:
        raise Problem(404, f"no institution {code} in your counties")
    open_cases = session.scalar(
        select(func.count(Case.id)).where(Case.institution_id == found.id, Case.is_open.is_(True))
    )
    strikes: int | None
    try:
        policy = default_store().for_institution(found)
        strikes = strikes_in_window(session, found, policy, utcnow())
    except PolicyError:
        strikes = None
    base = InstitutionOut.model_validate(found).model_dump()
    return InstitutionDetailOut(
        **base,
        links=[link_out(ln) for ln in sorted(found.links, key=lambda ln: ln.id)],
        allocations=[allocation_out(a) for a in sorted(found.allocations, key=lambda a: a.id)],
        open_cases=int(open_cases or 0),
        strikes=strikes,
    )


# ---------------------------------------------------------------- links and allocations


@router.get("/links", response_model=Page[LinkOut])
def list_links(
    session: SessionDep,
    actor: ReaderDep,
    page: PageDep,
    institution: InstCode = None,
    device: Name = None,
    state: LinkState | None = None,
    kind: LinkKind | None = None,
) -> Page[LinkOut]:
    stmt = (
        select(Link)
        .where(in_scope(Link.institution_id, actor))
        .options(
            selectinload(Link.institution), selectinload(Link.device), selectinload(Link.carrier)
        )
    )
    if institution:
        stmt = stmt.where(Link.institution_id == institution_id_of(session, actor, institution))
    if device:
        stmt = stmt.where(Link.device.has(Device.name == device))
    if state:
        stmt = stmt.where(Link.state == state)
    if kind:
        stmt = stmt.where(Link.kind == kind)
    rows, cursor = page_by_id(session, stmt, Link.id, page, descending=False)
    return Page[LinkOut](items=[link_out(r) for r in rows], next_cursor=cursor)


@router.get("/allocations", response_model=Page[AllocationOut])
def list_allocations(
    session: SessionDep,
    actor: ReaderDep,
    page: PageDep,
    institution: InstCode = None,
    ip: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=NO_CONTROL,
            description="only the allocation holding this address",
        ),
    ] = None,
) -> Page[AllocationOut]:
    stmt = (
        select(IpAllocation)
        .where(in_scope(IpAllocation.institution_id, actor))
        .options(selectinload(IpAllocation.institution))
    )
    if institution:
        stmt = stmt.where(
            IpAllocation.institution_id == institution_id_of(session, actor, institution)
        )
    if ip is not None:
        stmt = stmt.where(IpAllocation.prefix.in_(containing_prefixes(ip)))
    rows, cursor = page_by_id(session, stmt, IpAllocation.id, page, descending=False)
    return Page[AllocationOut](items=[allocation_out(r) for r in rows], next_cursor=cursor)


# ---------------------------------------------------------------- devices, exporters, vendors


@router.get("/devices", response_model=Page[DeviceOut])
def list_devices(
    session: SessionDep,
    actor: ReaderDep,
    page: PageDep,
    county: CountyCode = None,
    role: DeviceRole | None = None,
    enabled: bool | None = None,
) -> Page[DeviceOut]:
    stmt = select(Device).where(device_in_scope(actor)).options(selectinload(Device.county))
    if county:
        stmt = stmt.where(Device.county.has(County.code == county))
    if role:
        stmt = stmt.where(Device.role == role)
    if enabled is not None:
        stmt = stmt.where(Device.enabled.is_(enabled))
    rows, cursor = page_by_id(session, stmt, Device.id, page, descending=False)
    return Page[DeviceOut](items=[device_out(r) for r in rows], next_cursor=cursor)


@router.get("/exporters", response_model=Page[ExporterOut])
def list_exporters(
    session: SessionDep,
    actor: ReaderDep,
    page: PageDep,
    device: Name = None,
) -> Page[ExporterOut]:
    stmt = select(Exporter).options(selectinload(Exporter.device))
    if not actor.city_wide:
        visible = select(Device.id).where(device_in_scope(actor))
        stmt = stmt.where(Exporter.device_id.in_(visible))
    if device:
        stmt = stmt.where(Exporter.device.has(Device.name == device))
    rows, cursor = page_by_id(session, stmt, Exporter.id, page, descending=False)
    items = [
        ExporterOut(
            id=e.id,
            address=e.address,
            observation_domain=e.observation_domain,
            device=e.device.name if e.device else None,
            sampling_rate=e.sampling_rate,
            enabled=e.enabled,
        )
        for e in rows
    ]
    return Page[ExporterOut](items=items, next_cursor=cursor)


@router.get("/vendors", response_model=Page[VendorOut])
def list_vendors(
    session: SessionDep,
    actor: ReaderDep,
    page: PageDep,
    status: VendorStatus | None = None,
) -> Page[VendorOut]:
    """Vendors serve institutions across counties (Jilin art. 17-24): every reader sees them."""
    stmt: Any = select(Vendor).options(selectinload(Vendor.servers))
    if status:
        stmt = stmt.where(Vendor.status == status)
    rows, cursor = page_by_id(session, stmt, Vendor.id, page, descending=False)
    items = []
    for v in rows:
        out = VendorOut.model_validate(v)
        out.servers.sort(key=lambda s: s.id)
        items.append(out)
    return Page[VendorOut](items=items, next_cursor=cursor)
