"""The committed sample inventories are the generator's output and a consistent inventory:
codes, references, VLANs and address allocations an importer must accept."""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import re
from collections import Counter
from typing import Any

import pytest
import yaml

from lab import inventory_gen
from lab.inventory_gen import SAMPLE_DIR, SAMPLES, generate, render

CASES = sorted(SAMPLES.items())
CODE = re.compile(r"^(?P<letter>[HP])(?P<county>\d{6})(?P<serial>\d{5})$")
SUBINTERFACE = {
    "huawei": re.compile(r"^GigabitEthernet0/0/1\.(\d+)$"),
    "hp_comware": re.compile(r"^GigabitEthernet1/0/1\.(\d+)$"),
    "cisco_ios": re.compile(r"^GigabitEthernet0/1\.(\d+)$"),
}
COUNTY_NAMES = {
    "140502": "城区",
    "140521": "沁水县",
    "140522": "阳城县",
    "140524": "陵川县",
    "140525": "泽州县",
    "140581": "高平市",
}

LARGEST_HOSPITALS = {
    "晋城市人民医院",
    "晋城大医院",
    "晋城市第二人民医院",
    "晋城市中医院",
    *(f"{name}人民医院" for name in list(COUNTY_NAMES.values())[1:]),
}


def _load(text: str) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(text, Loader=loader)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module", params=[n for _, n in CASES], ids=[f for f, _ in CASES])
def inventory(request: pytest.FixtureRequest) -> dict[str, Any]:
    return generate(request.param)


@pytest.mark.parametrize(("filename", "institutions"), CASES)
def test_committed_files_are_regenerated_byte_for_byte(filename: str, institutions: int) -> None:
    committed = (SAMPLE_DIR / filename).read_bytes()
    assert render(institutions).encode("utf-8") == committed, (
        f"lab/sample/{filename} is stale: python -m lab.inventory_gen "
        f"--institutions {institutions} --out lab/sample/{filename}"
    )
    assert _load(committed.decode("utf-8")) == generate(institutions)


def test_deterministic_and_seed_dependent() -> None:
    assert generate(200) == generate(200)
    assert generate(200, seed=7) != generate(200)


def test_cli_writes_the_same_text(tmp_path: Any) -> None:
    out = tmp_path / "inv.yaml"
    assert inventory_gen.main(["--institutions", "60", "--out", str(out)]) == 0
    assert out.read_bytes() == (SAMPLE_DIR / "inventory-small.yaml").read_bytes()


def test_counties_and_carriers(inventory: dict[str, Any]) -> None:
    city, *counties = inventory["counties"]
    assert city == {"code": "140500", "name": "晋城市", "parent": None, "policy": "jincheng"}
    assert {c["code"]: c["name"] for c in counties} == COUNTY_NAMES
    assert all(c["parent"] == "140500" and "policy" not in c for c in counties)
    assert [c["name"] for c in inventory["carriers"]] == ["中国电信", "中国联通", "中国移动"]


def test_every_reference_resolves(inventory: dict[str, Any]) -> None:
    counties = {c["code"] for c in inventory["counties"]}
    carriers = {c["name"] for c in inventory["carriers"]}
    devices = {d["name"] for d in inventory["devices"]}
    institutions = {i["code"] for i in inventory["institutions"]}
    vendors = {v["name"] for v in inventory["vendors"]}
    refs = [(c["parent"], counties) for c in inventory["counties"] if c["parent"] is not None]
    refs += [(d["county"], counties) for d in inventory["devices"]]
    refs += [(i["county"], counties) for i in inventory["institutions"]]
    for link in inventory["links"]:
        refs += [(link["institution"], institutions), (link["carrier"], carriers)]
        refs += [(link["device"], devices)]
    refs += [(a["institution"], institutions) for a in inventory["ip_allocations"]]
    refs += [(e["device"], devices) for e in inventory["exporters"]]
    refs += [(s["vendor"], vendors) for s in inventory["vendor_servers"]]
    unresolved = [ref for ref, known in refs if ref not in known]
    assert not unresolved
    assert len(refs) > 3 * len(institutions)


def test_institution_codes_unique_and_well_formed(inventory: dict[str, Any]) -> None:
    insts = inventory["institutions"]
    codes = [i["code"] for i in insts]
    assert len(set(codes)) == len(codes)
    assert len({i["name"] for i in insts}) == len(insts)
    for inst in insts:
        m = CODE.match(inst["code"])
        assert m, inst["code"]
        assert m["county"] == inst["county"]
        assert m["letter"] == ("P" if inst["kind"] == "pharmacy" else "H")
        assert int(m["serial"]) >= 1
        assert inst["status"] in {"active", "suspended", "applicant"}
        assert (inst["kind"] == "applicant") == (inst["status"] == "applicant")
        assert isinstance(inst["protected"], bool)
        if inst["kind"] != "applicant":
            start, end = inst["agreement_start"], inst["agreement_end"]
            assert isinstance(start, dt.date) and start.year == 2026 and start.day == 1
            assert end == start.replace(year=start.year + 1) - dt.timedelta(days=1)
    # Serials are dense per (letter, county): 00001..n.
    serials: dict[str, list[int]] = {}
    for code in codes:
        serials.setdefault(code[:7], []).append(int(code[7:]))
    for key, values in serials.items():
        assert sorted(values) == list(range(1, len(values) + 1)), key


def test_kind_mix(inventory: dict[str, Any]) -> None:
    insts = inventory["institutions"]
    n = len(insts)
    kinds = Counter(i["kind"] for i in insts)
    assert set(kinds) == {"hospital", "pharmacy", "ltc", "applicant"}
    assert 0.60 <= kinds["pharmacy"] / n <= 0.70
    assert {i["county"] for i in insts} == set(COUNTY_NAMES)
    protected = {i["name"] for i in insts if i["protected"]}
    assert protected and protected <= LARGEST_HOSPITALS
    if n >= 2000:
        assert protected == LARGEST_HOSPITALS
    assert Counter(i["status"] for i in insts)["active"] / n > 0.9


def test_devices(inventory: dict[str, Any]) -> None:
    devices = inventory["devices"]
    names = [d["name"] for d in devices]
    assert len(set(names)) == len(names)
    ports = [d["ssh_port"] for d in devices]
    assert len(set(ports)) == len(ports) and min(ports) == 10022
    assert all(d["mgmt_address"] == "127.0.0.1" for d in devices)
    roles = Counter(d["role"] for d in devices)
    assert roles["firewall"] == 1 and roles["lns"] == 1
    edges = [d for d in devices if d["role"] == "edge_router"]
    per_county = Counter(d["county"] for d in edges)
    assert set(per_county) == set(COUNTY_NAMES) and set(per_county.values()) <= {1, 2}
    assert {d["device_type"] for d in edges} == {"huawei", "hp_comware", "cisco_ios"}
    lns = next(d for d in devices if d["role"] == "lns")
    assert lns["device_type"] == "huawei"
    v3 = [d for d in devices if d["snmp"]["version"] == "v3"]
    assert len(v3) == 1
    assert {"user", "auth_protocol", "auth_key", "priv_protocol", "priv_key"} <= set(v3[0]["snmp"])
    assert (v3[0]["snmp"]["auth_protocol"], v3[0]["snmp"]["priv_protocol"]) == ("sha", "aes")
    communities = [d["snmp"]["community"] for d in devices if d["snmp"]["version"] == "v2c"]
    assert communities == [d["name"] for d in devices if d["snmp"]["version"] == "v2c"]
    for d in devices:
        assert d["ssh"]["username"] and d["ssh"]["password"]
        assert d["uplink_interfaces"]


def test_links_resolve_and_vlans_are_unique_per_device(inventory: dict[str, Any]) -> None:
    devices = {d["name"]: d for d in inventory["devices"]}
    insts = {i["code"]: i for i in inventory["institutions"]}
    carriers = {c["name"] for c in inventory["carriers"]}
    vlans: dict[str, set[int]] = {}
    accounts: set[tuple[str, str]] = set()
    per_inst: Counter[str] = Counter()
    for link in inventory["links"]:
        inst = insts[link["institution"]]
        device = devices[link["device"]]
        assert link["carrier"] in carriers
        assert link["state"] in {"up", "down", "cut"}
        assert (link["state"] == "cut") == (inst["status"] == "suspended")
        per_inst[inst["code"]] += 1
        if link["kind"] == "leased_line":
            assert device["role"] == "edge_router" and device["county"] == inst["county"]
            m = SUBINTERFACE[device["device_type"]].match(link["interface"])
            assert m, (device["device_type"], link["interface"])
            vlan = int(m[1])
            assert 1001 <= vlan <= 4094
            assert vlan not in vlans.setdefault(device["name"], set()), link
            vlans[device["name"]].add(vlan)
            assert "vpdn_account" not in link
        else:
            assert link["kind"] == "vpdn" and device["role"] == "lns"
            assert link["vpdn_account"] == f"{inst['code'].lower()}@ybvpdn.sx"
            assert (device["name"], link["vpdn_account"]) not in accounts
            accounts.add((device["name"], link["vpdn_account"]))
            assert "interface" not in link
    assert set(per_inst) == set(insts), "every institution has a link"
    assert max(per_inst.values()) == 2
    # Every edge router carries leased lines (the lab's routers all have something to cut).
    assert set(vlans) == {n for n, d in devices.items() if d["role"] == "edge_router"}
    by_kind: dict[str, Counter[str]] = {}
    for link in inventory["links"]:
        by_kind.setdefault(insts[link["institution"]]["kind"], Counter())[link["kind"]] += 1
    assert by_kind["hospital"]["leased_line"] > by_kind["hospital"]["vpdn"]
    assert by_kind["pharmacy"]["vpdn"] > 5 * by_kind["pharmacy"]["leased_line"]


def test_allocations_never_overlap(inventory: dict[str, Any]) -> None:
    insts = {i["code"]: i for i in inventory["institutions"]}
    allocs = inventory["ip_allocations"]
    assert sorted(a["institution"] for a in allocs) == sorted(insts)
    nets = []
    county_nets: dict[str, list[ipaddress.IPv4Network]] = {}
    for a in allocs:
        net = ipaddress.IPv4Network(a["prefix"])  # strict: host bits must be zero
        assert net.prefixlen in (28, 29)
        assert net.subnet_of(ipaddress.IPv4Network("10.145.0.0/16"))
        nets.append(net)
        county_nets.setdefault(insts[a["institution"]]["county"], []).append(net)
    nets.sort()
    for prev, cur in itertools.pairwise(nets):
        assert prev.broadcast_address < cur.network_address, (prev, cur)
    # Each county's allocations come from its own block: the counties' ranges do not interleave.
    spans = sorted((min(v).network_address, max(v).broadcast_address) for v in county_nets.values())
    for (_, prev_end), (cur_start, _) in itertools.pairwise(spans):
        assert prev_end < cur_start
    backbone = [ipaddress.IPv4Network(b["prefix"]) for b in inventory["backbone_prefixes"]]
    assert ipaddress.IPv4Network("10.0.0.0/8") in backbone
    assert all(any(n.subnet_of(b) for b in backbone) for n in nets)


def test_exporters_vendors(inventory: dict[str, Any]) -> None:
    devices = {d["name"]: d for d in inventory["devices"]}
    exporters = inventory["exporters"]
    assert {e["device"] for e in exporters} == {
        n for n, d in devices.items() if d["role"] in ("edge_router", "lns")
    }
    keys = [(e["address"], e["observation_domain"]) for e in exporters]
    assert len(set(keys)) == len(keys)
    assert all(e["address"] == "127.0.0.1" for e in exporters)
    vendors = {v["name"]: v for v in inventory["vendors"]}
    assert len(vendors) == 2 and {v["in_province"] for v in vendors.values()} == {True, False}
    servers = Counter(s["vendor"] for s in inventory["vendor_servers"])
    assert set(servers) == set(vendors) and min(servers.values()) >= 2
    pairs = [(s["vendor"], s["address"]) for s in inventory["vendor_servers"]]
    assert len(set(pairs)) == len(pairs)
    for s in inventory["vendor_servers"]:
        ipaddress.IPv4Address(s["address"])


def test_bad_size_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        generate(0)
