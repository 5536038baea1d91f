"""Store what a poll saw: interfaces (mapped to links) with a counter sample per sweep, and
ARP history the way arpwatch and Netdisco keep it.

ARP: one row per (device, ifIndex, IP, MAC) with first/last seen and an active flag. Entries
missing from a *complete* table become inactive (an incomplete walk proves nothing about what
it did not reach). When an IP answers from a different MAC than the last one recorded for it,
a MacChange row is written. Everything is bulk: one SELECT per table and device, executemany
for inserts and updates."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from collector.snmp.inventory import Inventory, LinkInfo
from collector.snmp.poller import DevicePoll
from collector.snmp.tables import ArpRow
from core.models import ArpEntry, Interface, InterfaceSample, MacChange

_CHUNK = 500


@dataclass
class Stored:
    """What the device's rows became, for observations and the sweep summary."""

    links: dict[int, LinkInfo] = field(default_factory=dict)  # ifIndex → link
    if_names: dict[int, str] = field(default_factory=dict)
    arp_new: int = 0
    arp_gone: int = 0
    mac_changes: int = 0


def store_interfaces(
    session: Session,
    device_id: int,
    poll: DevicePoll,
    inv: Inventory,
    sweep_id: int | None,
    now: datetime,
) -> Stored:
    existing = {
        i.if_index: i
        for i in session.scalars(select(Interface).where(Interface.device_id == device_id))
    }
    stored = Stored()
    stored.links = inv.map_interfaces(
        device_id, [(r.if_index, r.name, r.alias) for r in poll.interfaces]
    )
    if not poll.interfaces_complete:  # keep the mapping of rows this walk did not reach
        for idx, itf in existing.items():
            if idx not in stored.links and itf.link_id is not None:
                for lk in inv.links_by_device.get(device_id, ()):
                    if lk.id == itf.link_id:
                        stored.links[idx] = lk
    for idx, itf in existing.items():
        stored.if_names[idx] = itf.name
    rows: list[Interface] = []
    for r in poll.interfaces:
        link = stored.links.get(r.if_index)
        found = existing.get(r.if_index)
        if found is None:
            itf = Interface(device_id=device_id, if_index=r.if_index, first_seen=now)
            session.add(itf)
        else:
            itf = found
            if itf.oper_status != r.oper_status:
                itf.oper_changed_at = now
        itf.name = r.name[:100]
        itf.alias = r.alias[:255]
        itf.admin_status = r.admin_status
        itf.oper_status = r.oper_status
        itf.high_speed = r.high_speed
        itf.in_octets = r.in_octets
        itf.out_octets = r.out_octets
        itf.link_id = link.id if link else None
        itf.last_seen = now
        stored.if_names[r.if_index] = itf.name
        rows.append(itf)
    session.flush()
    if rows:
        session.execute(
            insert(InterfaceSample),
            [
                {
                    "interface_id": itf.id,
                    "sweep_id": sweep_id,
                    "at": now,
                    "sys_uptime": poll.sys_uptime,
                    "in_octets": itf.in_octets,
                    "out_octets": itf.out_octets,
                    "oper_status": itf.oper_status,
                }
                for itf in rows
            ],
        )
    return stored


def store_arp(
    session: Session,
    device_id: int,
    poll: DevicePoll,
    inv: Inventory,
    stored: Stored,
    now: datetime,
) -> list[ArpRow]:
    """Upsert the ARP history; returns the distinct entries seen now."""
    cols = (
        ArpEntry.id,
        ArpEntry.if_index,
        ArpEntry.ip,
        ArpEntry.mac,
        ArpEntry.context,
        ArpEntry.active,
        ArpEntry.last_seen,
    )
    existing = {
        (r.if_index, r.ip, r.mac): r
        for r in session.execute(select(*cols).where(ArpEntry.device_id == device_id))
    }
    # the MAC an IP had most recently, per context (arpwatch's "changed ethernet address")
    latest: dict[tuple[str, str], tuple[datetime, int, str, int]] = {}
    for r in existing.values():
        k = (r.context, r.ip)
        cand = (r.last_seen, r.id, r.mac, r.if_index)
        if k not in latest or cand[:2] > latest[k][:2]:
            latest[k] = cand
    seen: dict[tuple[int, str, str], ArpRow] = {}
    for a in poll.arp:
        seen.setdefault((a.if_index, a.ip, a.mac), a)
    inserts: list[dict[str, object]] = []
    updates: list[dict[str, object]] = []
    changes: list[dict[str, object]] = []
    changed_ips: set[tuple[str, str]] = set()
    for key, a in seen.items():
        link = stored.links.get(a.if_index)
        values = {
            "link_id": link.id if link else None,
            "institution_id": link.institution_id if link else None,
            "last_seen": now,
            "active": True,
            "context": a.context,
        }
        row = existing.get(key)
        if row is None:
            inserts.append(
                {
                    "device_id": device_id,
                    "if_index": a.if_index,
                    "ip": a.ip,
                    "mac": a.mac,
                    "first_seen": now,
                    **values,
                }
            )
        else:
            updates.append({"id": row.id, **values})
        prev = latest.get((a.context, a.ip))
        if (
            prev is not None
            and prev[2] != a.mac
            and (prev[3], a.ip, prev[2]) not in seen
            and (a.context, a.ip) not in changed_ips
        ):
            changed_ips.add((a.context, a.ip))
            changes.append(
                {
                    "device_id": device_id,
                    "link_id": values["link_id"],
                    "ip": a.ip,
                    "old_mac": prev[2],
                    "new_mac": a.mac,
                    "at": now,
                }
            )
    gone = [
        r.id
        for key, r in existing.items()
        if r.active and key not in seen and poll.arp_complete.get(r.context, False)
    ]
    if inserts:
        session.execute(insert(ArpEntry), inserts)
    if updates:
        session.execute(update(ArpEntry), updates)
    for i in range(0, len(gone), _CHUNK):
        session.execute(
            update(ArpEntry)
            .where(ArpEntry.id.in_(gone[i : i + _CHUNK]))
            .values(active=False)
            .execution_options(synchronize_session=False)
        )
    if changes:
        session.execute(insert(MacChange), changes)
    stored.arp_new = len(inserts)
    stored.arp_gone = len(gone)
    stored.mac_changes = len(changes)
    return list(seen.values())
