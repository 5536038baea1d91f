"""The poller against real agents: snmpd and snmpsim (v2c and v3), and agents that misbehave:
silent, dying mid-walk, looping, out of order. Also the fast v2c path cross-checked against
pysnmp and net-snmp's snmpbulkwalk on the same agents."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from collector.snmp import oids
from collector.snmp.poller import DevicePoll, DeviceTarget, PollOptions, poll_device
from collector.snmp.transport import FastV2cClient
from collector.snmp.v3 import PysnmpClient, V3Credentials
from collector.snmp.walker import new_walk, walk_columns
from core.models import SweepDeviceStatus
from lab.snmp.agents import BrokenAgent, DyingAgent, NetSnmpd, SilentAgent
from tests.snmp.conftest import SNMPD_V3, Lab

FAST = PollOptions(timeout=0.5, retries=1, max_repetitions=25, deadline=20)
ALL_COLUMNS = {
    **oids.INTERFACE_COLUMNS,
    **oids.ARP_NEW,
    **oids.ARP_OLD,
    **oids.ROUTES_NEW,
    **oids.ROUTES_OLD,
}


def poll(target: DeviceTarget, opts: PollOptions = FAST) -> DevicePoll:
    return asyncio.run(poll_device(target, opts))


def v3_creds(who: object, **change: str) -> V3Credentials:
    values = {
        "user": who.name,  # type: ignore[attr-defined]
        "auth_protocol": "sha",
        "auth_key": who.auth_key,  # type: ignore[attr-defined]
        "priv_protocol": "aes",
        "priv_key": who.priv_key,  # type: ignore[attr-defined]
    }
    values.update(change)
    return V3Credentials(**values)


# --- snmpd ----------------------------------------------------------------------------------


def test_snmpd_v2c_and_v3_read_the_same_device(snmpd: NetSnmpd) -> None:
    v2 = poll(DeviceTarget("snmpd", "127.0.0.1", snmpd.port, community="public"))
    v3 = poll(DeviceTarget("snmpd", "127.0.0.1", snmpd.port, v3=v3_creds(SNMPD_V3)))
    for p in (v2, v3):
        assert p.status == SweepDeviceStatus.OK, p.error
        assert p.sys_name == "ew-snmpd"
        assert p.sys_uptime is not None and p.sys_uptime >= 0
        assert p.interfaces_complete and p.arp_complete == {"": True}
        assert "lo" in {i.name for i in p.interfaces}
        assert p.tables["contexts"]["default"]["routes"] == "inetCidrRouteTable"
    assert [(i.if_index, i.name, i.oper_status) for i in v2.interfaces] == [
        (i.if_index, i.name, i.oper_status) for i in v3.interfaces
    ]
    assert {(a.ip, a.mac) for a in v2.arp} == {(a.ip, a.mac) for a in v3.arp}
    assert v2.routes == v3.routes


def test_snmpd_wrong_credentials(snmpd: NetSnmpd) -> None:
    bad_auth = poll(
        DeviceTarget("x", "127.0.0.1", snmpd.port, v3=v3_creds(SNMPD_V3, auth_key="wrong-pass-1"))
    )
    assert bad_auth.status == SweepDeviceStatus.AUTH_ERROR
    assert "digest" in (bad_auth.error or "").lower()
    bad_user = poll(
        DeviceTarget("x", "127.0.0.1", snmpd.port, v3=v3_creds(SNMPD_V3, user="nobody"))
    )
    assert bad_user.status == SweepDeviceStatus.AUTH_ERROR
    # SNMPv2c: an agent stays silent for a wrong community, indistinguishable from a dead one
    t0 = time.perf_counter()
    bad_community = poll(DeviceTarget("x", "127.0.0.1", snmpd.port, community="wrong"))
    assert bad_community.status == SweepDeviceStatus.TIMEOUT
    assert time.perf_counter() - t0 < 2.0


def _walk_all(client: object, columns: dict[str, tuple[int, ...]]) -> dict[str, list]:
    async def run() -> dict[str, list]:
        async with client:  # type: ignore[attr-defined]
            w = await walk_columns(client, new_walk(columns), max_repetitions=10)  # type: ignore[arg-type]
            assert w.error is None and not w.problems
            return {n: c.rows for n, c in w.columns.items()}

    return asyncio.run(run())


def test_fast_codec_matches_pysnmp_on_snmpd(snmpd: NetSnmpd) -> None:
    """Same agent, same columns: the fast client and pysnmp see the same rows (counters move
    between the walks, so those are compared by index only)."""
    fast = _walk_all(
        FastV2cClient("127.0.0.1", snmpd.port, "public", timeout=1, retries=1), ALL_COLUMNS
    )
    ref = _walk_all(
        PysnmpClient("127.0.0.1", snmpd.port, community="public", timeout=1, retries=1), ALL_COLUMNS
    )
    assert fast.keys() == ref.keys()
    for name in fast:
        assert [s for s, _ in fast[name]] == [s for s, _ in ref[name]], name
        if "Octets" not in name:
            assert fast[name] == ref[name], name
    assert fast["ifName"] and fast["ipNetToPhysicalPhysAddress"] and fast["inetCidrRouteType"]


def _snmpbulkwalk(port: int, oid: tuple[int, ...], *auth: str) -> list[str]:
    cmd = [
        "snmpbulkwalk",
        *auth,
        "-On",
        "-Oq",
        "-Cr25",
        "-t1",
        "-r1",
        f"127.0.0.1:{port}",
        ".".join(map(str, oid)),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={"MIBS": ""}).stdout
    # values may wrap (Hex-STRING); only lines that start with an OID start a varbind
    # (net-snmp prints endOfMibView once per repetition, and GETs the root of an empty
    # subtree: neither is a row)
    root = ".".join(map(str, oid)) + "."
    return [
        line.split(" ", 1)[0].lstrip(".")
        for line in out.splitlines()
        if line.startswith("." + root) and "No more variables" not in line
    ]


def test_fast_codec_matches_snmpbulkwalk_on_snmpsim(lab: Lab) -> None:
    """The lab's biggest v2c router: every column, OID for OID, as net-snmp walks it."""
    router = max((r for r in lab.routers if r.name != lab.v3_device), key=lambda r: len(r.arp))
    fast = _walk_all(
        FastV2cClient("127.0.0.1", lab.v2c.port, router.name, timeout=1, retries=1), ALL_COLUMNS
    )
    ref = _walk_all(
        PysnmpClient("127.0.0.1", lab.v2c.port, community=router.name, timeout=1, retries=1),
        ALL_COLUMNS,
    )
    assert fast == ref
    for name, oid in ALL_COLUMNS.items():
        want = _snmpbulkwalk(lab.v2c.port, oid, "-v2c", "-c", router.name)
        got = [".".join(map(str, (*oid, *s))) for s, _ in fast[name]]
        assert got == want, name


# --- snmpsim: the lab routers ----------------------------------------------------------------


def test_old_only_and_new_only_devices_use_their_tables(lab: Lab) -> None:
    tables = lab.routers.scenario["tables"]
    old = next(n for n, t in tables.items() if t == "old")
    new = next(n for n, t in tables.items() if t == "new" and n != lab.v3_device)
    both = next(n for n, t in tables.items() if t == "both" and n != lab.v3_device)
    used = {}
    for name in (old, new, both):
        p = poll(DeviceTarget(name, "127.0.0.1", lab.v2c.port, community=name))
        assert p.status == SweepDeviceStatus.OK, p.error
        spec = lab.routers.by_name(name)
        assert sorted((a.if_index, a.ip, a.mac) for a in p.arp) == sorted(
            (a.if_index, a.ip, a.mac) for a in spec.arp
        )
        assert sorted((r.dest, r.prefix_len, r.if_index) for r in p.routes) == sorted(
            (r.dest, r.prefix_len, r.if_index) for r in spec.routes
        )
        assert [(i.if_index, i.name, i.alias) for i in p.interfaces] == [
            (i.if_index, i.name, i.alias) for i in spec.interfaces
        ]
        used[name] = p.tables["contexts"]["default"]
    assert used[old] == {"arp": "ipNetToMediaTable", "routes": "ipCidrRouteTable"}
    assert used[new] == {"arp": "ipNetToPhysicalTable", "routes": "inetCidrRouteTable"}
    assert used[both] == used[new]


def test_v3_only_device(lab: Lab) -> None:
    spec = lab.routers.by_name(lab.v3_device)
    p = poll(DeviceTarget(spec.name, "127.0.0.1", lab.v3.port, v3=v3_creds(lab.v3_user)))
    assert p.status == SweepDeviceStatus.OK, p.error
    assert p.sys_name == spec.name
    assert len(p.arp) == len(spec.arp) and len(p.interfaces) == len(spec.interfaces)
    wrong = poll(
        DeviceTarget(
            spec.name, "127.0.0.1", lab.v3.port, v3=v3_creds(lab.v3_user, auth_key="not-the-key")
        )
    )
    assert wrong.status == SweepDeviceStatus.AUTH_ERROR
    v2 = poll(DeviceTarget(spec.name, "127.0.0.1", lab.v3.port, community=spec.name))
    assert v2.status == SweepDeviceStatus.TIMEOUT


def test_v3_contexts_add_their_arp_and_routes(lab: Lab) -> None:
    """snmpsim serves each data file as an SNMPv3 context: a device with a VRF context reads
    the context's ARP and routes (tagged with the context) after its own."""
    own = lab.routers.by_name(lab.v3_device)
    vrf = next(r for r in lab.routers if r.name != own.name and r.arp)
    p = poll(
        DeviceTarget(
            own.name, "127.0.0.1", lab.v3.port, v3=v3_creds(lab.v3_user), contexts=(vrf.name,)
        )
    )
    assert p.status == SweepDeviceStatus.OK, p.error
    assert len(p.interfaces) == len(own.interfaces)  # interfaces only from the default context
    in_vrf = sorted((a.ip, a.mac) for a in p.arp if a.context == vrf.name)
    assert in_vrf == sorted((a.ip, a.mac) for a in vrf.arp)
    assert len([a for a in p.arp if a.context == ""]) == len(own.arp)
    assert p.arp_complete == {"": True, vrf.name: True}
    assert {r.context for r in p.routes} == {"", vrf.name}


# --- misbehaving agents ----------------------------------------------------------------------


def test_silent_agent_times_out_within_its_budget() -> None:
    with SilentAgent() as agent:
        t0 = time.perf_counter()
        p = poll(DeviceTarget("silent", "127.0.0.1", agent.port, community="public"))
        took = time.perf_counter() - t0
    assert p.status == SweepDeviceStatus.TIMEOUT
    assert "no response" in (p.error or "")
    assert 0.9 <= took < 1.6  # timeout 0.5 s × 2 tries


def test_deadline_caps_a_device() -> None:
    with SilentAgent() as agent:
        t0 = time.perf_counter()
        p = poll(
            DeviceTarget("slow", "127.0.0.1", agent.port, community="public"),
            PollOptions(timeout=5, retries=3, deadline=0.4),
        )
        took = time.perf_counter() - t0
    assert p.status == SweepDeviceStatus.TIMEOUT
    assert "deadline" in (p.error or "")
    assert took < 1.0


def test_dying_agent_gives_partial_with_what_arrived(lab: Lab) -> None:
    # the old-only device: its new ARP table is empty, the fallback walk never happens
    name = next(n for n, t in lab.routers.scenario["tables"].items() if t == "old")
    # the scalars request and the first walk request pass, then the agent is gone
    with DyingAgent(lab.v2c.port, answer_first=2) as agent:
        p = poll(
            DeviceTarget(name, "127.0.0.1", agent.port, community=name),
            PollOptions(timeout=0.3, retries=1, max_repetitions=2, deadline=10),
        )
    assert p.status == SweepDeviceStatus.PARTIAL
    assert "no response" in (p.error or "")
    assert p.sys_name == name
    assert len(p.interfaces) > 0 and not p.interfaces_complete
    assert p.arp_complete.get("") is False


@pytest.mark.parametrize("mode", ["loop", "out_of_order"])
def test_broken_table_is_detected(mode: str) -> None:
    # the loop restarts the ARP address column after its last row (a column walk never
    # reaches the end of the whole table, where a table-wide loop would restart)
    column = ".".join(map(str, oids.ARP_NEW["ipNetToPhysicalPhysAddress"]))
    with BrokenAgent(mode, prefix=column) as agent:  # type: ignore[arg-type]
        t0 = time.perf_counter()
        p = poll(DeviceTarget("broken", "127.0.0.1", agent.port, community="public"))
        took = time.perf_counter() - t0
        spec = agent.spec
    assert p.status == SweepDeviceStatus.PARTIAL
    assert "not increasing" in (p.error or "")
    assert "ipNetToPhysical" in (p.error or "")
    assert p.arp_complete == {"": False}
    assert p.interfaces_complete  # the rest of the device is fine
    assert [i.name for i in p.interfaces] == [i.name for i in spec.interfaces]
    assert len(p.arp) <= len(spec.arp)
    assert took < 5
