"""The lab's simulated edge (lab/edge.py): one API starts every peer on loopback with ports the
OS picks, writes the inventory they answer on, exports crafted IPFIX, and ends every process by
PID. Two labs run side by side, as the tests and a demo would."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import yaml
from netmiko import ConnectHandler

from collector.netflow.decoder import Decoder
from lab.demo import choose_cast, minimal_pdf
from lab.edge import EdgeLab
from lab.flowgen import Flow

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_labs_side_by_side_export_and_answer_ssh(tmp_path: Path) -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(5)
    collector = ("127.0.0.1", sink.getsockname()[1])
    with (
        EdgeLab(workdir=tmp_path / "a", collector=collector) as a,
        EdgeLab(workdir=tmp_path / "b", cisco=False) as b,
    ):
        pids = a.pids + b.pids
        assert pids and all(_alive(p) for p in pids)
        assert set(a.ssh_ports.values()).isdisjoint(b.ssh_ports.values())
        written = yaml.safe_load(a.inventory_path.read_text(encoding="utf-8"))
        dev = next(d for d in written["devices"] if d["name"] == "jc-chengqu-edge-01")
        assert dev["ssh_port"] == a.ssh_ports["jc-chengqu-edge-01"]
        assert dev["snmp"]["port"] == a.snmp.ports["jc-chengqu-edge-01"] if a.snmp else False

        cast = choose_cast(a.data)
        ifindex = a.if_index(cast.clinic_device, cast.clinic_interface)
        sent = a.send_flows(
            cast.clinic_device, [Flow(cast.stray_ip, "203.0.113.10", 443, input_if=ifindex)] * 25
        )
        assert sent == 2  # 20 records per message at most
        datagrams = [sink.recvfrom(65535)[0] for _ in range(sent)]
        batch = Decoder().decode([(d, "127.0.0.1") for d in datagrams])
        assert len(batch) == 25
        assert {int(r["input_if"]) for r in batch.records} == {ifindex}

        ssh = dev["ssh"]
        with ConnectHandler(
            device_type="huawei",
            host="127.0.0.1",
            port=dev["ssh_port"],
            username=ssh["username"],
            password=ssh["password"],
        ) as conn:
            out = conn.send_command("display interface brief")
        assert "GigabitEthernet0/0/1.1001" in out
    sink.close()
    assert not any(_alive(p) for p in pids)


def test_minimal_pdf_is_a_pdf() -> None:
    data = minimal_pdf("hello")
    assert data.startswith(b"%PDF-1.4") and data.rstrip().endswith(b"%%EOF")
