"""The generated .snmprec data: file format, index layouts, and the injected scenario checked
against the inventory itself (not against the generator's own bookkeeping)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.snmp.routers import LabRouters, big_router, routers_from_inventory
from lab.snmp.snmprec import (
    IF_ALIAS,
    IF_NAME,
    INET_CIDR_ROUTE,
    IP_CIDR_ROUTE,
    IP_NET_TO_MEDIA,
    IP_NET_TO_PHYSICAL,
    Arp,
    Iface,
    Route,
    RouterSpec,
    SnmprecError,
    decode,
    iter_table,
    oid_key,
    read_snmprec,
    records,
    write_lab,
    write_snmprec,
)

REPO = Path(__file__).resolve().parents[2]
SMALL = REPO / "lab/sample/inventory-small.yaml"


@pytest.fixture(scope="module")
def inventory() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SMALL.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def routers() -> LabRouters:
    return routers_from_inventory(SMALL)


def _allocs(inv: dict[str, Any]) -> dict[str, list[ipaddress.IPv4Network]]:
    out: dict[str, list[ipaddress.IPv4Network]] = {}
    for a in inv["ip_allocations"]:
        out.setdefault(a["institution"], []).append(ipaddress.IPv4Network(a["prefix"]))
    return out


def _owner(inv: dict[str, Any], ip: str) -> str | None:
    addr = ipaddress.IPv4Address(ip)
    return next((c for c, nets in _allocs(inv).items() if any(addr in n for n in nets)), None)


def _alias(spec: RouterSpec, if_index: int) -> str:
    return next(i.alias for i in spec.interfaces if i.if_index == if_index)


def test_files_are_sorted_and_parse(routers: LabRouters, tmp_path: Path) -> None:
    files = write_lab(routers, tmp_path)
    assert sorted(files) == sorted(r.name for r in routers)
    for spec in routers:
        recs = read_snmprec(files[spec.name])  # raises unless strictly increasing
        keys = [oid_key(r.oid) for r in recs]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        names = [decode(r) for _, r in iter_table(recs, IF_NAME)]
        assert names == [i.name.encode() for i in spec.interfaces]
        aliases = [decode(r) for _, r in iter_table(recs, IF_ALIAS)]
        assert aliases == [i.alias.encode() for i in spec.interfaces]
        new = len(list(iter_table(recs, IP_NET_TO_PHYSICAL + ".4")))
        old = len(list(iter_table(recs, IP_NET_TO_MEDIA + ".2")))
        inet = len(list(iter_table(recs, INET_CIDR_ROUTE + ".7")))
        cidr = len(list(iter_table(recs, IP_CIDR_ROUTE + ".5")))
        want_new = spec.tables in ("new", "both")
        want_old = spec.tables in ("old", "both")
        assert (new, inet) == ((len(spec.arp), len(spec.routes)) if want_new else (0, 0))
        assert (old, cidr) == ((len(spec.arp), len(spec.routes)) if want_old else (0, 0))


def test_index_layouts_match_net_snmp() -> None:
    """The layouts Debian's snmpd uses for the same tables (checked by walking it)."""
    spec = RouterSpec(
        "r1",
        interfaces=[Iface(7, "Gi0/0/1.1001", "H14050200001 晋城市人民医院")],
        arp=[Arp(7, "10.145.0.2", "00:E0:FC:01:02:03")],
        routes=[Route("0.0.0.0", 0, "203.0.113.1", 7), Route("10.145.0.0", 28, "0.0.0.0", 7)],
    )
    got = {(r.oid, r.tag, r.value) for r in records(spec)}
    assert (f"{IP_NET_TO_PHYSICAL}.4.7.1.4.10.145.0.2", "4x", "00e0fc010203") in got
    assert (f"{IP_NET_TO_MEDIA}.2.7.10.145.0.2", "4x", "00e0fc010203") in got
    assert (f"{IP_NET_TO_MEDIA}.3.7.10.145.0.2", "64", "10.145.0.2") in got
    assert (f"{INET_CIDR_ROUTE}.7.1.4.0.0.0.0.0.2.0.0.1.4.203.0.113.1", "2", "7") in got
    assert (f"{INET_CIDR_ROUTE}.8.1.4.10.145.0.0.28.2.0.0.1.4.0.0.0.0", "2", "3") in got
    assert (f"{IP_CIDR_ROUTE}.5.0.0.0.0.0.0.0.0.0.203.0.113.1", "2", "7") in got
    assert (
        f"{IP_CIDR_ROUTE}.2.10.145.0.0.255.255.255.240.0.0.0.0.0",
        "64",
        "255.255.255.240",
    ) in got
    alias = next(r for r in records(spec) if r.oid == f"{IF_ALIAS}.7")
    assert alias.tag == "4x"  # not ASCII: hex, since snmpsim reads files as ISO-8859-1
    assert decode(alias) == "H14050200001 晋城市人民医院".encode()


def test_bad_specs_are_refused(tmp_path: Path) -> None:
    dup = RouterSpec("d", arp=[Arp(1, "10.0.0.2", "02:00:00:00:00:01")] * 2)
    with pytest.raises(SnmprecError, match="duplicate OID"):
        records(dup)
    with pytest.raises(SnmprecError, match="bad MAC"):
        records(RouterSpec("m", arp=[Arp(1, "10.0.0.2", "02:00:00")]))
    with pytest.raises(SnmprecError, match="bad IPv4"):
        records(RouterSpec("i", arp=[Arp(1, "10.0.0.256", "02:00:00:00:00:01")]))
    with pytest.raises(SnmprecError, match="bad route"):
        records(RouterSpec("r", routes=[Route("10.0.0.1", 8, "0.0.0.0", 1)]))
    with pytest.raises(SnmprecError, match=r"\.snmprec"):
        write_snmprec(RouterSpec("x"), tmp_path / "x.txt")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("1.3.6.1.2.1.1.5.0|4|b\n1.3.6.1.2.1.1.3.0|67|1\n", r":2: OID 1\.3\.6\.1\.2\.1\.1\.3\.0"),
        ("1.3.6.1.2.1.1.5.0|4|a\n1.3.6.1.2.1.1.5.0|4|b\n", ":2: OID"),
        ("1.3.6.1.2.1.1.5.0|99|a\n", ":1: unknown tag"),
        ("1.3.6.1.2.1.1.5.0 4 a\n", ":1: not OID"),
    ],
)
def test_read_rejects_malformed_files(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "bad.snmprec"
    path.write_text(text)
    with pytest.raises(SnmprecError, match=error):
        read_snmprec(path)


def test_numeric_not_text_order(tmp_path: Path) -> None:
    spec = RouterSpec("n", interfaces=[Iface(i, f"if{i}") for i in (2, 10, 1)])
    recs = read_snmprec(write_snmprec(spec, tmp_path / "n.snmprec"))
    assert [s for s, _ in iter_table(recs, IF_NAME)] == ["1", "2", "10"]


def test_every_link_is_a_subinterface_named_for_its_institution(
    routers: LabRouters, inventory: dict[str, Any]
) -> None:
    served = {d["name"] for d in inventory["devices"] if d["role"] in ("edge_router", "firewall")}
    assert {r.name for r in routers} == served
    links = [lk for lk in inventory["links"] if lk["device"] in served and lk.get("interface")]
    assert links
    for lk in links:
        itf = routers.by_name(lk["device"]).iface(lk["interface"])
        assert itf.alias.startswith(lk["institution"] + " ")
        assert itf.admin_up == (lk["state"] != "cut")
    for d in inventory["devices"]:
        if d["name"] in served:
            for up in d["uplink_interfaces"]:
                assert routers.by_name(d["name"]).iface(up).high_speed == 10_000


def test_clean_scenario_hosts_are_inside_their_allocations(inventory: dict[str, Any]) -> None:
    clean = routers_from_inventory(SMALL, scenario="clean")
    backbone = [ipaddress.IPv4Network(b["prefix"]) for b in inventory["backbone_prefixes"]]
    n = 0
    for spec in clean:
        assert spec.tables == "both"
        for a in spec.arp:
            code = _alias(spec, a.if_index).split()[0]
            assert _owner(inventory, a.ip) == code
            n += 1
        for r in spec.routes:
            hop = ipaddress.IPv4Address(r.next_hop)
            assert r.prefix_len > 0
            assert int(hop) == 0 or any(hop in b for b in backbone)
        assert not any(not i.oper_up and i.admin_up for i in spec.interfaces)
    assert n > 50
    assert all(
        not clean.scenario[k]
        for k in (
            "unauthorized_ip",
            "network_extension",
            "outbound_internet",
            "link_down",
            "many_hosts",
        )
    )


def test_default_scenario_injects_what_it_reports(
    routers: LabRouters, inventory: dict[str, Any]
) -> None:
    sc = routers.scenario
    backbone = [ipaddress.IPv4Network(b["prefix"]) for b in inventory["backbone_prefixes"]]

    (u,) = sc["unauthorized_ip"]
    spec = routers.by_name(u["device"])
    assert Arp(u["if_index"], u["ip"], u["mac"]) in spec.arp
    assert _owner(inventory, u["ip"]) is None
    assert _alias(spec, u["if_index"]).startswith(u["institution"])
    assert spec.iface(u["interface"]).if_index == u["if_index"]

    (x,) = sc["network_extension"]
    spec = routers.by_name(x["device"])
    assert Arp(x["if_index"], x["ip"], x["mac"]) in spec.arp
    assert _owner(inventory, x["ip"]) == x["allocated_to"] != x["institution"]
    assert _alias(spec, x["if_index"]).startswith(x["institution"])

    assert {(o["dest"], o["prefix_len"]) for o in sc["outbound_internet"]} == {
        ("0.0.0.0", 0),
        ("198.51.100.0", 24),
    }
    for o in sc["outbound_internet"]:
        spec = routers.by_name(o["device"])
        assert Route(o["dest"], o["prefix_len"], o["next_hop"], o["if_index"]) in spec.routes
        assert not any(ipaddress.IPv4Address(o["next_hop"]) in b for b in backbone)

    (d,) = sc["link_down"]
    itf = routers.by_name(d["device"]).iface(d["interface"])
    assert itf.admin_up and not itf.oper_up
    for c in sc["cut"]:
        itf = routers.by_name(c["device"]).iface(c["interface"])
        assert not itf.admin_up and not itf.oper_up

    (m,) = sc["many_hosts"]
    spec = routers.by_name(m["device"])
    behind = [a for a in spec.arp if a.if_index == m["if_index"]]
    assert len(behind) == m["hosts"] > 3
    assert all(_owner(inventory, a.ip) == m["institution"] for a in behind)

    # one anomaly per institution, and both table generations alone somewhere
    insts = [
        e["institution"]
        for k in ("unauthorized_ip", "network_extension", "link_down", "many_hosts")
        for e in sc[k]
    ]
    insts.append(sc["outbound_internet"][0]["institution"])
    assert len(set(insts)) == len(insts)
    assert sc["tables"][u["device"]] == "old" and sc["tables"][x["device"]] == "new"
    assert sc["v3_only"] == ["jc-lingchuan-edge-01"]
    assert routers.by_name("jc-lingchuan-edge-01").snmp["version"] == "v3"


def test_generation_is_deterministic(routers: LabRouters) -> None:
    again = routers_from_inventory(SMALL)
    assert again.scenario == routers.scenario
    assert [records(r) for r in again] == [records(r) for r in routers]


def test_bad_inventory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SnmprecError, match="cannot read inventory"):
        routers_from_inventory(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n")
    with pytest.raises(SnmprecError, match="mapping"):
        routers_from_inventory(bad)
    with pytest.raises(SnmprecError, match="unknown scenario"):
        routers_from_inventory(SMALL, scenario="chaos")  # type: ignore[arg-type]


def test_big_router(tmp_path: Path) -> None:
    spec = big_router("big-01")
    assert len(spec.interfaces) == 402 and len(spec.arp) == 3000
    assert len({(a.if_index, a.ip) for a in spec.arp}) == 3000
    assert {a.if_index for a in spec.arp} == set(range(3, 403))
    recs = read_snmprec(write_snmprec(spec, tmp_path / "big-01.snmprec"))
    assert len(list(iter_table(recs, IP_NET_TO_PHYSICAL + ".4"))) == 3000
    assert len(list(iter_table(recs, IP_NET_TO_MEDIA + ".2"))) == 3000
    assert len(list(iter_table(recs, INET_CIDR_ROUTE + ".7"))) == 403
    assert big_router("big-02").arp[0].mac != spec.arp[0].mac
    assert big_router("n", 10, 20, tables="new").tables == "new"
    with pytest.raises(SnmprecError, match="do not fit"):
        big_router("x", n_subifs=2, n_arp=200)
