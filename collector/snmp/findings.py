"""What a poll means for the rules: SNMP observations, then ``rules.engine.observe``.

- ``unauthorized_ip``: an IP behind a link that lies in no allocation at all (Jilin art. 15,
  Jincheng art. 11); the finding is against the link's institution.
- ``network_extension``: an IP behind a link that is allocated to *another* institution (the
  line is extended to it; Jincheng art. 11, Jilin art. 26); the owner is in the sample. Also
  more distinct hosts behind one link than the policy's ``max_hosts_per_link`` allows for the
  institution's kind (subject ``hosts``; the count, the limit and the first addresses in the
  sample).
- ``outbound_internet``: a default route, or a route to a prefix inside no BackbonePrefix and
  no allocation, on a device that faces institutions (has links). Reject (blackhole) and
  local routes do not count. Institution: the link behind the route's ifIndex, else behind its
  next hop's ARP entry; a route toward the uplink names no institution (the engine records
  the observation but makes no detection).
- ``link_down``: a link's interface is oper-down while Link.state is not ``cut`` (the service
  did not cut it): a fault report is due (Jincheng art. 16).

Keys are ``snmp:<kind>:<device id>:<link id or ->:<subject>``, so repeated sweeps update one
row (last_seen, sample) instead of adding rows."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.snmp import oids
from collector.snmp.history import Stored
from collector.snmp.inventory import Inventory, LinkInfo
from collector.snmp.poller import DevicePoll
from collector.snmp.tables import ArpRow
from core.errors import EdgeWardenError
from core.models import Detection, LinkState, Observation, ObservationSource

log = logging.getLogger(__name__)
ACTOR = "collector:snmp"
_CHUNK = 500


@dataclass(frozen=True)
class Finding:
    kind: str
    link: LinkInfo | None
    subject: str
    src_addr: str | None
    dst_addr: str | None
    sample: dict[str, Any]

    def key(self, device_id: int) -> str:
        return f"snmp:{self.kind}:{device_id}:{self.link.id if self.link else '-'}:{self.subject}"


def findings(
    device_id: int, poll: DevicePoll, inv: Inventory, stored: Stored, arp: list[ArpRow]
) -> list[Finding]:
    out: list[Finding] = []
    hosts: dict[LinkInfo, set[str]] = {}
    for a in arp:
        link = stored.links.get(a.if_index)
        if link is None:
            continue
        hosts.setdefault(link, set()).add(a.ip)
        owner = inv.allocations.lookup(a.ip)
        if owner == link.institution_id:
            continue
        base = {
            "mac": a.mac,
            "if_index": a.if_index,
            "interface": stored.if_names.get(a.if_index, ""),
            "context": a.context,
            "link_institution": inv.code_of.get(link.institution_id),
        }
        if owner is None:
            out.append(Finding("unauthorized_ip", link, a.ip, a.ip, None, base))
        else:
            sample = {**base, "allocated_to": inv.code_of.get(owner)}
            out.append(Finding("network_extension", link, a.ip, a.ip, None, sample))
    out.extend(_host_counts(hosts, inv))
    for r in poll.interfaces:
        link = stored.links.get(r.if_index)
        if link is None or r.oper_status not in (oids.OPER_DOWN, oids.OPER_LOWER_LAYER_DOWN):
            continue
        if link.state == LinkState.CUT:
            continue
        sample = {
            "interface": r.name,
            "if_index": r.if_index,
            "admin_status": r.admin_status,
            "oper_status": r.oper_status,
            "link_state": str(link.state),
        }
        out.append(Finding("link_down", link, r.name, None, None, sample))
    if inv.links_by_device.get(device_id):
        out.extend(_routes(poll, inv, stored, arp))
    return out


def _host_counts(hosts: dict[LinkInfo, set[str]], inv: Inventory) -> list[Finding]:
    """Links carrying more hosts than their institution's policy allows (the line is extended
    to terminals that are not the institution's own: Jincheng art. 11, Jilin art. 26)."""
    out: list[Finding] = []
    for link, ips in sorted(hosts.items(), key=lambda item: item[0].id):
        limit = inv.host_limit.get(link.institution_id)
        if limit is None or len(ips) <= limit:
            continue
        sample = {
            "hosts": len(ips),
            "limit": limit,
            "addresses": sorted(ips, key=ipaddress.ip_address)[:20],
            "link_institution": inv.code_of.get(link.institution_id),
        }
        out.append(Finding("network_extension", link, "hosts", None, None, sample))
    return out


def _routes(poll: DevicePoll, inv: Inventory, stored: Stored, arp: list[ArpRow]) -> list[Finding]:
    by_ip = {(a.context, a.ip): a.if_index for a in arp}
    out: list[Finding] = []
    for r in poll.routes:
        if r.route_type in (oids.ROUTE_TYPE_REJECT, oids.ROUTE_TYPE_LOCAL):
            continue
        try:
            net = ipaddress.ip_network(r.prefix, strict=False)
        except ValueError:
            continue
        if net.prefixlen and (
            net.is_loopback or net.is_link_local or net.is_multicast or net.is_unspecified
        ):
            continue
        default = net.prefixlen == 0
        if not default and (inv.backbone.contains_net(net) or inv.allocations.contains_net(net)):
            continue
        link = stored.links.get(r.if_index) if r.if_index else None
        if link is None and r.next_hop:
            hop_if = by_ip.get((r.context, r.next_hop))
            link = stored.links.get(hop_if) if hop_if is not None else None
        sample = {
            "route": str(net),
            "next_hop": r.next_hop,
            "if_index": r.if_index,
            "interface": stored.if_names.get(r.if_index or 0, ""),
            "route_type": r.route_type,
            "context": r.context,
            "default_route": default,
        }
        out.append(Finding("outbound_internet", link, str(net), r.next_hop, str(net), sample))
    return out


def record_findings(
    session: Session, device_id: int, found: list[Finding], now: datetime, sweep_id: int | None
) -> list[Observation]:
    """Upsert one Observation per finding key (bulk lookup); returns them flushed."""
    by_key: dict[str, Finding] = {}
    for f in found:
        by_key.setdefault(f.key(device_id)[:255], f)
    keys = list(by_key)
    existing: dict[str, Observation] = {}
    for i in range(0, len(keys), _CHUNK):
        for obs in session.scalars(
            select(Observation).where(Observation.key.in_(keys[i : i + _CHUNK]))
        ):
            existing[obs.key] = obs
    out: list[Observation] = []
    for key, f in by_key.items():
        prior = existing.get(key)
        sample = [{**f.sample, "sweep_id": sweep_id}]
        if prior is None:
            obs = Observation(
                key=key,
                source=ObservationSource.SNMP,
                kind=f.kind,
                institution_id=f.link.institution_id if f.link else None,
                link_id=f.link.id if f.link else None,
                device_id=device_id,
                src_addr=f.src_addr,
                dst_addr=f.dst_addr,
                first_seen=now,
                last_seen=now,
                sample=sample,
            )
            session.add(obs)
        else:
            obs = prior
            obs.last_seen = now
            obs.sample = sample
        out.append(obs)
    session.flush()
    return out


def judge(session: Session, observations: list[Observation]) -> tuple[list[Detection], str | None]:
    """``rules.engine.observe`` in a savepoint: a policy problem is reported, and the sweep's
    data (interfaces, ARP history, observations) is kept."""
    if not observations:
        return [], None
    from rules.engine import observe

    try:
        with session.begin_nested():
            return observe(session, observations, actor=ACTOR), None
    except EdgeWardenError as exc:
        log.warning("rules could not judge %d SNMP observations: %s", len(observations), exc)
        return [], f"rules: {exc}"
