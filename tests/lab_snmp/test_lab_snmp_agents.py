"""The lab's SNMP agents, observed with net-snmp's own command-line tools (an independent
client): snmpsim serves the generated rows for old-only, new-only and both-table devices;
SNMPv3 authPriv works with the right keys only; snmpd answers; the silent, dying and broken
agents misbehave exactly as documented; every agent's process is gone after stop()."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lab.snmp.agents import (
    AgentError,
    BrokenAgent,
    DyingAgent,
    NetSnmpd,
    SilentAgent,
    SnmpSim,
    SnmpSimPool,
    V3User,
    snmpget,
)
from lab.snmp.lab import SnmpLab
from lab.snmp.routers import LabRouters, big_router, routers_from_inventory
from lab.snmp.snmprec import (
    IF_ALIAS,
    IF_NAME,
    IF_OPER_STATUS,
    INET_CIDR_ROUTE,
    IP_CIDR_ROUTE,
    IP_NET_TO_MEDIA,
    IP_NET_TO_PHYSICAL,
    SYS_NAME,
    RouterSpec,
    write_lab,
    write_snmprec,
)

REPO = Path(__file__).resolve().parents[2]
SMALL = REPO / "lab/sample/inventory-small.yaml"
ENV = {**os.environ, "MIBS": ""}


def walk(
    port: int,
    oid: str,
    *auth: str,
    extra: tuple[str, ...] = (),
    reps: int = 25,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    cmd = [
        "snmpbulkwalk",
        *(auth or ("-v2c", "-c", "public")),
        "-On",
        "-Ox",
        f"-Cr{reps}",
        "-t1",
        "-r0",
        *extra,
        f"127.0.0.1:{port}",
        oid,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)


def rows(out: str, column: str) -> dict[str, str]:
    """index suffix -> value text for the lines of one column (multi-line hex joined)."""
    got: dict[str, str] = {}
    key = None
    for line in out.splitlines():
        if "No more variables" in line:  # endOfMibView: ifXTable is the files' last table
            key = None
        elif line.startswith("." + column + "."):
            oid, _, value = line.partition(" = ")
            key = oid[len(column) + 2 :]
            got[key] = value.split(": ", 1)[-1].strip()
        elif key is not None and line.strip():
            got[key] += " " + line.strip()
    return got


def hexmac(mac: str) -> str:
    return " ".join(mac.upper().split(":"))


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def routers() -> LabRouters:
    return routers_from_inventory(SMALL)


@pytest.fixture(scope="module")
def sim(routers: LabRouters, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpSim]:
    data = tmp_path_factory.mktemp("snmprec")
    write_lab(routers, data)
    write_snmprec(big_router("big-01", n_subifs=40, n_arp=200), data / "big-01.snmprec")
    with SnmpSim(data) as agent:
        pid = agent.pid
        yield agent
    assert gone(pid)


def _check_router(sim: SnmpSim, spec: RouterSpec) -> None:
    c = ("-v2c", "-c", spec.name)
    names = rows(walk(sim.port, IF_NAME, *c).stdout, IF_NAME)
    assert len(names) == len(spec.interfaces)
    aliases = rows(walk(sim.port, IF_ALIAS, *c).stdout, IF_ALIAS)
    for itf in spec.interfaces:
        raw = bytes.fromhex(aliases[str(itf.if_index)].replace(" ", "").replace('"', ""))
        assert raw.decode() == itf.alias
    oper = rows(walk(sim.port, IF_OPER_STATUS, *c).stdout, IF_OPER_STATUS)
    assert oper == {str(i.if_index): "1" if i.oper_up else "2" for i in spec.interfaces}

    new_arp = rows(walk(sim.port, IP_NET_TO_PHYSICAL + ".4", *c).stdout, IP_NET_TO_PHYSICAL + ".4")
    old_arp = rows(walk(sim.port, IP_NET_TO_MEDIA + ".2", *c).stdout, IP_NET_TO_MEDIA + ".2")
    new_rt = rows(walk(sim.port, INET_CIDR_ROUTE + ".7", *c).stdout, INET_CIDR_ROUTE + ".7")
    old_rt = rows(walk(sim.port, IP_CIDR_ROUTE + ".5", *c).stdout, IP_CIDR_ROUTE + ".5")
    want_new = {f"{a.if_index}.1.4.{a.ip}": hexmac(a.mac) for a in spec.arp}
    want_old = {f"{a.if_index}.{a.ip}": hexmac(a.mac) for a in spec.arp}
    routes = {(r.dest, r.prefix_len, r.next_hop, str(r.if_index)) for r in spec.routes}
    if spec.tables in ("new", "both"):
        assert new_arp == want_new
        got = set()
        for idx, ifi in new_rt.items():
            p = idx.split(".")
            got.add((".".join(p[2:6]), int(p[6]), ".".join(p[12:16]), ifi))
        assert got == routes
    else:
        assert new_arp == {} and new_rt == {}
    if spec.tables in ("old", "both"):
        assert old_arp == want_old
        assert len(old_rt) == len(routes)
        assert {
            (".".join(k.split(".")[:4]), ".".join(k.split(".")[9:13]), v) for k, v in old_rt.items()
        } == {(d, h, i) for d, _, h, i in routes}
    else:
        assert old_arp == {} and old_rt == {}


@pytest.mark.slow
def test_snmpsim_serves_old_new_and_both(sim: SnmpSim, routers: LabRouters) -> None:
    tables = routers.scenario["tables"]
    picked = [next(n for n, t in tables.items() if t == want) for want in ("old", "new", "both")]
    for name in picked:
        _check_router(sim, routers.by_name(name))
    assert snmpget(sim.port, community="no-such-device") is None


@pytest.mark.slow
def test_snmpsim_serves_the_scenario(sim: SnmpSim, routers: LabRouters) -> None:
    sc = routers.scenario
    for kind, table in (
        ("unauthorized_ip", IP_NET_TO_MEDIA + ".2"),
        ("network_extension", IP_NET_TO_PHYSICAL + ".4"),
    ):
        (e,) = sc[kind]
        got = rows(walk(sim.port, table, "-v2c", "-c", e["device"]).stdout, table)
        idx = (
            f"{e['if_index']}.{e['ip']}"
            if table.startswith(IP_NET_TO_MEDIA)
            else f"{e['if_index']}.1.4.{e['ip']}"
        )
        assert got[idx] == hexmac(e["mac"])
    o = sc["outbound_internet"][0]
    got = rows(
        walk(sim.port, INET_CIDR_ROUTE + ".7", "-v2c", "-c", o["device"]).stdout,
        INET_CIDR_ROUTE + ".7",
    )
    assert got[f"1.4.0.0.0.0.0.2.0.0.1.4.{o['next_hop']}"] == str(o["if_index"])


@pytest.mark.slow
def test_snmpsim_v3_only_with_the_right_keys(routers: LabRouters, tmp_path: Path) -> None:
    (name,) = routers.scenario["v3_only"]
    spec = routers.by_name(name)
    user = V3User.from_inventory(spec.snmp)
    assert (user.auth_proto, user.priv_proto) == ("SHA", "AES")
    write_snmprec(spec, tmp_path / f"{name}.snmprec")
    with SnmpSim(tmp_path, v3_user=user, v3_only=True, default_context=name) as agent:
        assert snmpget(agent.port, v3=user) == name  # empty context, as a real device
        assert snmpget(agent.port, v3=user, context=name) == name
        r = walk(agent.port, IP_NET_TO_PHYSICAL + ".4", *user.snmpcmd_args())
        assert len(rows(r.stdout, IP_NET_TO_PHYSICAL + ".4")) == len(spec.arp)
        assert snmpget(agent.port, community=name) is None  # v1/v2c is off
        wrong = V3User(user.name, "not-the-auth-key", user.priv_key)
        assert snmpget(agent.port, v3=wrong) is None
        r = subprocess.run(
            ["snmpget", *wrong.snmpcmd_args(), "-t0.5", "-r0", f"127.0.0.1:{agent.port}", SYS_NAME],
            capture_output=True,
            text=True,
            env=ENV,
        )
        assert r.returncode != 0 and "Authentication failure" in r.stderr
        pid = agent.pid
    assert gone(pid)


@pytest.mark.slow
def test_snmpsim_pool_shares_one_index(routers: LabRouters, tmp_path: Path) -> None:
    write_lab(routers[:2], tmp_path / "data")
    with SnmpSimPool(tmp_path / "data", processes=2) as pool:
        assert len(set(pool.ports)) == 2 and len(set(pool.pids)) == 2
        for port in pool.ports:
            assert snmpget(port, community=routers[1].name) == routers[1].name
        pids = pool.pids
    assert all(gone(p) for p in pids)


@pytest.mark.slow
def test_netsnmpd_v2c_and_v3() -> None:
    user = V3User("ew-lab", "auth-pass-123", "priv-pass-123")
    with NetSnmpd(community="lab", v3_user=user, sys_name="lab-snmpd-1") as d:
        assert snmpget(d.port, community="lab") == "lab-snmpd-1"
        assert snmpget(d.port, v3=user) == "lab-snmpd-1"
        assert snmpget(d.port, community="public") is None
        assert snmpget(d.port, v3=V3User("ew-lab", "wrong-pass-1", "priv-pass-123")) is None
        r = walk(d.port, IF_NAME, "-v2c", "-c", "lab")
        assert r.returncode == 0 and rows(r.stdout, IF_NAME)
        pid = d.pid
    assert gone(pid)


def test_silent_agent_never_answers() -> None:
    with SilentAgent() as s:
        r = subprocess.run(
            ["snmpget", "-v2c", "-c", "public", "-t0.3", "-r1", f"127.0.0.1:{s.port}", SYS_NAME],
            capture_output=True,
            text=True,
            env=ENV,
        )
        assert r.returncode != 0 and "Timeout" in r.stderr
        pid = s.pid
        assert not gone(pid)
    assert gone(pid)


@pytest.mark.slow
def test_dying_agent_answers_n_requests_then_nothing(sim: SnmpSim) -> None:
    col = IP_NET_TO_PHYSICAL + ".4"
    full = rows(walk(sim.port, col, "-v2c", "-c", "big-01").stdout, col)
    assert len(full) == 200
    with DyingAgent(sim.port, answer_first=3) as dying:
        r = walk(dying.port, col, "-v2c", "-c", "big-01", reps=10)
        got = rows(r.stdout, col)
        assert r.returncode != 0 and "Timeout" in r.stderr
        assert list(got) == list(full)[:30]  # three answers of 10 rows, in order
        assert snmpget(dying.port, community="big-01") is None  # dead for good
        pid = dying.pid
    assert gone(pid)
    assert snmpget(sim.port, community="big-01") == "big-01"  # the agent behind is fine


def test_broken_agent_loops() -> None:
    with BrokenAgent("loop") as b:
        spec = b.spec
        col = IP_NET_TO_PHYSICAL + ".4"
        r = walk(b.port, col)
        assert r.returncode != 0 and "OID not increasing" in r.stderr
        # told not to check, a walker goes round and round
        r = subprocess.run(
            [
                "timeout",
                "1",
                "snmpbulkwalk",
                "-Cc",
                "-v2c",
                "-c",
                "x",
                "-On",
                "-Cr5",
                "-t1",
                "-r0",
                f"127.0.0.1:{b.port}",
                col,
            ],
            capture_output=True,
            text=True,
            env=ENV,
        )
        lines = [ln.split(" ", 1)[0] for ln in r.stdout.splitlines() if " = " in ln]
        assert len(lines) > 3 * len(spec.arp) and len(set(lines)) == len(spec.arp)
        assert snmpget(b.port, community="any") == spec.name  # GET is fine
        assert rows(walk(b.port, IF_NAME).stdout, IF_NAME)  # other tables are fine
        pid = b.pid
    assert gone(pid)


def test_broken_agent_out_of_order() -> None:
    with BrokenAgent("out_of_order") as b:
        spec = b.spec
        col = IP_NET_TO_PHYSICAL + ".4"
        # net-snmp checks the order across answers, not within one: small answers
        r = walk(b.port, col, reps=3)
        assert r.returncode != 0 and "OID not increasing" in r.stderr
        r = walk(b.port, col, extra=("-Cc",), reps=3, timeout=5)
        got = list(rows(r.stdout, col))
        want = [f"{a.if_index}.1.4.{a.ip}" for a in spec.arp]
        assert sorted(got) == sorted(want) and got != want and len(got) == len(want)
        assert got[:2] == [want[1], want[0]]


@pytest.mark.slow
def test_snmp_lab_serves_an_inventory(tmp_path: Path) -> None:
    with SnmpLab(SMALL, tmp_path / "lab") as lab:
        v3 = lab.scenario["v3_only"][0]
        assert set(lab.ports) == {r.name for r in lab.routers}
        for r in lab.routers:
            if r.name == v3:
                assert snmpget(lab.ports[v3], v3=V3User.from_inventory(r.snmp)) == v3
                assert snmpget(lab.ports[v3], community=v3) is None
            else:
                assert snmpget(lab.ports[r.name], community=r.snmp["community"]) == r.name
        inv = yaml.safe_load(lab.write_inventory(tmp_path / "inv.yaml").read_text())
        ports = {d["name"]: d["snmp"]["port"] for d in inv["devices"]}
        assert all(ports[n] == p for n, p in lab.ports.items())
        assert ports["jc-lns-01"] == 1161  # not simulated: left alone
        pids = lab.pids
    assert len(pids) == 2 and all(gone(p) for p in pids)


def test_taken_port_and_empty_data_are_clear_errors(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        taken = s.getsockname()[1]
        write_snmprec(RouterSpec("r1"), tmp_path / "r1.snmprec")
        with pytest.raises(AgentError, match=f"holds UDP port {taken}"):
            SnmpSim(tmp_path, port=taken)
        with pytest.raises(AgentError, match=f"UDP port {taken}|exited"):
            NetSnmpd(port=taken)
    with pytest.raises(AgentError, match=r"no \*\.snmprec"):
        SnmpSim(tmp_path / "nothing-here")
    with pytest.raises(AgentError, match="v3_user"):
        SnmpSim(tmp_path, v3_only=True)
