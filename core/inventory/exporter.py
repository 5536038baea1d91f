"""Export: the database's inventory in the import format, secrets only as ``enc:`` tokens."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from core.crypto import ENC_PREFIX
from core.inventory.fileio import dump_csv, dump_yaml
from core.models import (
    BackbonePrefix,
    Carrier,
    County,
    Device,
    Exporter,
    Institution,
    IpAllocation,
    Link,
    SnmpVersion,
    Vendor,
    VendorServer,
)


def _enc(token: str | None) -> str | None:
    return None if token is None else ENC_PREFIX + token


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _device(d: Device) -> dict[str, Any]:
    snmp: dict[str, Any] = {"version": d.snmp_version.value, "port": d.snmp_port}
    if d.snmp_version == SnmpVersion.V2C:
        snmp["community"] = _enc(d.snmp_community_enc)
    else:
        snmp.update(
            user=d.snmp_user,
            auth_protocol=d.snmp_auth_protocol,
            auth_key=_enc(d.snmp_auth_key_enc),
            priv_protocol=d.snmp_priv_protocol,
            priv_key=_enc(d.snmp_priv_key_enc),
        )
    if d.snmp_contexts:
        snmp["contexts"] = list(d.snmp_contexts)
    ssh = _drop_none(
        {
            "username": d.ssh_username,
            "password": _enc(d.ssh_password_enc),
            "secret": _enc(d.ssh_secret_enc),
        }
    )
    return _drop_none(
        {
            "name": d.name,
            "mgmt_address": d.mgmt_address,
            "ssh_port": d.ssh_port,
            "device_type": d.device_type,
            "role": d.role.value,
            "county": d.county.code if d.county else None,
            "enabled": d.enabled,
            "snmp": _drop_none(snmp),
            "ssh": ssh or None,
            "uplink_interfaces": list(d.uplink_interfaces),
        }
    )


def export_document(session: Session) -> dict[str, list[dict[str, Any]]]:
    """The whole inventory as the YAML structure of docs/inventory.md, sorted by natural key."""
    counties = session.scalars(select(County).options(selectinload(County.parent)))
    devices = session.scalars(
        select(Device).options(selectinload(Device.county)).order_by(Device.name)
    )
    institutions = session.scalars(
        select(Institution).options(selectinload(Institution.county)).order_by(Institution.code)
    )
    links = session.scalars(
        select(Link)
        .options(
            selectinload(Link.device), selectinload(Link.institution), selectinload(Link.carrier)
        )
        .order_by(Link.id)
    )
    allocations = session.scalars(
        select(IpAllocation)
        .options(selectinload(IpAllocation.institution))
        .order_by(IpAllocation.id)
    )
    exporters = session.scalars(
        select(Exporter).options(selectinload(Exporter.device)).order_by(Exporter.id)
    )
    servers = session.scalars(
        select(VendorServer).options(selectinload(VendorServer.vendor)).order_by(VendorServer.id)
    )
    return {
        # parents before children, so the file imports in order
        "counties": [
            _drop_none(
                {
                    "code": c.code,
                    "name": c.name,
                    "parent": c.parent.code if c.parent else None,
                    "policy": c.policy,
                }
            )
            for c in sorted(counties, key=lambda c: (c.parent is not None, c.code))
        ],
        "carriers": [
            {"name": c.name} for c in session.scalars(select(Carrier).order_by(Carrier.name))
        ],
        "devices": [_device(d) for d in devices],
        "institutions": [
            _drop_none(
                {
                    "code": i.code,
                    "name": i.name,
                    "kind": i.kind.value,
                    "county": i.county.code,
                    "status": i.status.value,
                    "protected": i.protected,
                    "agreement_start": i.agreement_start,
                    "agreement_end": i.agreement_end,
                }
            )
            for i in institutions
        ],
        "links": [
            _drop_none(
                {
                    "institution": lk.institution.code,
                    "carrier": lk.carrier.name if lk.carrier else None,
                    "kind": lk.kind.value,
                    "device": lk.device.name,
                    "interface": lk.interface,
                    "vpdn_account": lk.vpdn_account,
                    "state": lk.state.value,
                }
            )
            for lk in links
        ],
        "ip_allocations": [
            {"institution": a.institution.code, "prefix": a.prefix} for a in allocations
        ],
        "backbone_prefixes": [
            _drop_none({"prefix": b.prefix, "description": b.description})
            for b in session.scalars(select(BackbonePrefix).order_by(BackbonePrefix.id))
        ],
        "exporters": [
            _drop_none(
                {
                    "address": e.address,
                    "observation_domain": e.observation_domain,
                    "device": e.device.name if e.device else None,
                    "sampling_rate": e.sampling_rate,
                    "enabled": e.enabled,
                }
            )
            for e in exporters
        ],
        "vendors": [
            {
                "name": v.name,
                "registered": v.registered,
                "in_province": v.in_province,
                "status": v.status.value,
            }
            for v in session.scalars(select(Vendor).order_by(Vendor.name))
        ],
        "vendor_servers": [
            _drop_none(
                {
                    "vendor": s.vendor.name,
                    "address": s.address,
                    "location": s.location,
                    "description": s.description,
                }
            )
            for s in servers
        ],
    }


def export_text(session: Session, fmt: str) -> str:
    doc = export_document(session)
    return dump_csv(doc) if fmt == "csv" else dump_yaml(doc)
