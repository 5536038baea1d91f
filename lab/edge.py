"""The simulated carrier edge, started and stopped by one API for the demo and the tests.

One ``EdgeLab`` brings up, on loopback and on ports the OS picks (so a test can run two labs):
SNMP agents serving generated edge-router data (snmpsim, ``lab.snmp``), the institutions'
sub-interfaces on SSH CLI emulators (the VRP/Comware emulator as its own process, a
fake-switches process per Cisco router), and a crafted-IPFIX exporter aimed at the collector.
It writes the inventory with the ports the peers got, so the service imports exactly this edge.
Every process is ended by PID on ``stop()`` (also on an exception while starting)."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from lab.fakeswitches import CiscoSwitch, start_cisco
from lab.flowgen import Flow, FlowExporter
from lab.snmp.lab import SnmpLab
from lab.snmp.routers import Scenario

SAMPLE_INVENTORY = Path(__file__).resolve().parent / "sample" / "inventory-small.yaml"
HOST = "127.0.0.1"
_EMULATED = {"huawei", "hp_comware"}


class EdgeLabError(RuntimeError):
    """A lab peer did not come up; the message names it and quotes its last output."""


class EdgeLab:
    """See the module docstring. ``collector`` is the (host, port) IPFIX flows are sent to."""

    def __init__(
        self,
        inventory: Path | str = SAMPLE_INVENTORY,
        workdir: Path | str | None = None,
        *,
        scenario: Scenario = "clean",
        collector: tuple[str, int] | None = None,
        cisco: bool = True,
    ) -> None:
        self.source_inventory = Path(inventory)
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="ew-edgelab-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data: dict[str, Any] = yaml.safe_load(self.source_inventory.read_text("utf-8"))
        self.collector = collector
        self.snmp: SnmpLab | None = None
        self.ssh_ports: dict[str, int] = {}
        self._sshemu: subprocess.Popen[str] | None = None
        self._cisco: list[CiscoSwitch] = []
        self._exporter: FlowExporter | None = None
        self.inventory_path = self.workdir / "inventory.yaml"
        self.state_dir = self.workdir / "sshemu-state"
        try:
            self._start(scenario, cisco)
        except BaseException:
            self.stop()
            raise

    # ------------------------------------------------------------------ start / stop

    def _device_interfaces(self) -> dict[str, list[str]]:
        """Each device's interfaces: the institutions' link interfaces plus its uplinks."""
        out: dict[str, list[str]] = {}
        for dev in self.data.get("devices") or []:
            out[dev["name"]] = list(dev.get("uplink_interfaces") or [])
        for link in self.data.get("links") or []:
            if link.get("interface"):
                out.setdefault(link["device"], []).append(link["interface"])
        return out

    def _start(self, scenario: Scenario, cisco: bool) -> None:
        self.snmp = SnmpLab(self.source_inventory, self.workdir / "snmp", scenario=scenario)
        interfaces = self._device_interfaces()
        devices = self.data.get("devices") or []
        emulated = [d for d in devices if d.get("device_type") in _EMULATED]
        if emulated:
            self._start_sshemu(emulated, interfaces)
        if cisco:
            for dev in devices:
                if dev.get("device_type") != "cisco_ios":
                    continue
                ssh = dev.get("ssh") or {}
                switch = start_cisco(
                    dev["name"],
                    interfaces.get(dev["name"]) or ["GigabitEthernet0/0"],
                    username=str(ssh.get("username", "admin")),
                    password=str(ssh.get("password", "admin")),
                    secret=str(ssh.get("secret", "enable")),
                    host=HOST,
                )
                self._cisco.append(switch)
                self.ssh_ports[dev["name"]] = switch.port
        self._write_inventory()
        if self.collector is not None:
            self._exporter = FlowExporter(self.collector, source=HOST)

    def _start_sshemu(
        self, devices: list[dict[str, Any]], interfaces: dict[str, list[str]]
    ) -> None:
        config = {
            "host": HOST,
            "devices": [
                {
                    "name": d["name"],
                    "profile": d["device_type"],
                    "interfaces": interfaces.get(d["name"]) or ["GigabitEthernet0/0/0"],
                    "username": str((d.get("ssh") or {}).get("username", "admin")),
                    "password": str((d.get("ssh") or {}).get("password", "admin")),
                }
                for d in devices
            ],
        }
        path = self.workdir / "sshemu.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        self.state_dir.mkdir(exist_ok=True)
        log = open(self.workdir / "sshemu.log", "w")  # noqa: SIM115 - handed to the child
        self._sshemu = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lab.sshemu",
                "--config",
                str(path),
                "--state-dir",
                str(self.state_dir),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        log.close()
        want = {d["name"] for d in devices}
        deadline = time.monotonic() + 60
        assert self._sshemu.stdout is not None
        fd = self._sshemu.stdout.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        pending = b""
        while want - set(self.ssh_ports):
            if self._sshemu.poll() is not None or time.monotonic() > deadline:
                tail = (self.workdir / "sshemu.log").read_text(errors="replace")[-500:]
                raise EdgeLabError(f"the SSH emulator did not start: {tail.strip()}")
            if not sel.select(timeout=0.5):
                continue
            pending += os.read(fd, 65536)  # raw reads: a buffered readline hides lines
            *lines, pending = pending.split(b"\n")
            for line in lines:
                parts = line.decode(errors="replace").split()
                if len(parts) == 3 and parts[0] == "ready":
                    self.ssh_ports[parts[1]] = int(parts[2])
        sel.close()

    def _write_inventory(self) -> None:
        assert self.snmp is not None
        data = self.data
        for dev in data.get("devices") or []:
            dev["mgmt_address"] = HOST
            if dev["name"] in self.snmp.ports:
                dev.setdefault("snmp", {})["port"] = self.snmp.ports[dev["name"]]
            if dev["name"] in self.ssh_ports:
                dev["ssh_port"] = self.ssh_ports[dev["name"]]
        self.inventory_path.write_text(
            yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )

    @property
    def pids(self) -> list[int]:
        """Every process this lab started (to be ended by PID)."""
        out = list(self.snmp.pids) if self.snmp else []
        if self._sshemu is not None:
            out.append(self._sshemu.pid)
        out.extend(s.pid for s in self._cisco)
        return out

    def stop(self) -> None:
        """End every peer by PID and remove the work dir if this lab made it."""
        if self._sshemu is not None:
            if self._sshemu.poll() is None:
                self._sshemu.send_signal(signal.SIGTERM)
                try:
                    self._sshemu.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.kill(self._sshemu.pid, signal.SIGKILL)
                    self._sshemu.wait()
            if self._sshemu.stdout is not None:
                self._sshemu.stdout.close()
            self._sshemu = None
        for switch in self._cisco:
            switch.stop()
        self._cisco = []
        if self.snmp is not None:
            self.snmp.stop()
            self.snmp = None
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ what the story needs

    def if_index(self, device: str, interface: str) -> int:
        """The ifIndex the SNMP agent serves for ``interface`` (what NetFlow records carry)."""
        assert self.snmp is not None
        for iface in self.snmp.routers.by_name(device).interfaces:
            if iface.name == interface:
                return iface.if_index
        raise KeyError(f"{device} has no interface {interface}")

    def domain_of(self, device: str) -> int:
        """The IPFIX observation domain the inventory registers for ``device``'s exporter."""
        for exp in self.data.get("exporters") or []:
            if exp.get("device") == device:
                return int(exp.get("observation_domain", 0))
        raise KeyError(f"no exporter registered for {device}")

    def send_flows(self, device: str, flows: list[Flow]) -> int:
        """Export ``flows`` as ``device``'s exporter would."""
        if self._exporter is None:
            raise EdgeLabError("this lab was started without a collector address")
        return self._exporter.send(flows, domain=self.domain_of(device))

    def send_from(self, source: str, device: str, flows: list[Flow]) -> int:
        """Export ``flows`` from another loopback ``source`` (an exporter nobody registered)."""
        if self.collector is None:
            raise EdgeLabError("this lab was started without a collector address")
        return FlowExporter(self.collector, source=source).send(
            flows, domain=self.domain_of(device)
        )

    def blackholes(self, device: str) -> list[str]:
        """Blackhole (NULL0) routes on an emulated LNS, from its state file."""
        path = self.state_dir / f"{device}.json"
        return list(json.loads(path.read_text()).get("blackholes") or []) if path.exists() else []
