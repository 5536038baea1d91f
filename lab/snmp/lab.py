"""A lab inventory's edge routers served over SNMP, the way the collector will meet them.

Devices whose inventory SNMP version is v2c share one snmpsim (community = device name);
each v3 device gets its own v3-only snmpsim that serves its data for the empty context, as a
real device would. ``write_inventory`` copies the inventory with the ports the agents got, so
a test imports it and sweeps exactly these agents.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from lab.snmp.agents import HOST, AgentError, SnmpSim, SnmpSimPool, V3User
from lab.snmp.routers import LabRouters, Scenario, routers_from_inventory
from lab.snmp.snmprec import write_snmprec


class SnmpLab:
    """Start agents for every edge_router/firewall of ``inventory`` (see module docstring).

    ``routers``/``scenario`` are routers_from_inventory's; ``ports`` maps device -> UDP port;
    ``processes`` > 1 runs that many snmpsim processes for the v2c devices, each serving
    every v2c device; devices are spread over them round-robin (``pool_ports`` lists all)."""

    def __init__(
        self,
        inventory: Path | str,
        workdir: Path | str | None = None,
        *,
        scenario: Scenario = "default",
        processes: int = 1,
    ) -> None:
        self.inventory = Path(inventory)
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="ew-snmplab-"))
        self.routers: LabRouters = routers_from_inventory(self.inventory, scenario=scenario)
        self.scenario = self.routers.scenario
        self.ports: dict[str, int] = {}
        self.pool_ports: list[int] = []
        self._pool: SnmpSimPool | None = None
        self._v3: list[SnmpSim] = []
        try:
            self._start(processes)
        except BaseException:
            self.stop()
            raise

    def _start(self, processes: int) -> None:
        v2c_dir = self.workdir / "v2c"
        v2c = [r for r in self.routers if r.snmp.get("version", "v2c") != "v3"]
        for r in v2c:
            community = str(r.snmp.get("community") or r.name)
            write_snmprec(r, v2c_dir / f"{community}.snmprec")
        if v2c:
            self._pool = SnmpSimPool(v2c_dir, processes=processes, cache_dir=self.workdir / "cache")
            self.pool_ports = self._pool.ports
            for i, r in enumerate(v2c):  # every process serves every file: spread the load
                self.ports[r.name] = self.pool_ports[i % len(self.pool_ports)]
        for r in self.routers:
            if r.snmp.get("version") != "v3":
                continue
            try:
                user = V3User.from_inventory(r.snmp)
            except KeyError as exc:
                raise AgentError(f"{r.name}: v3 device without {exc} in its snmp settings") from exc
            d = self.workdir / f"v3-{r.name}"
            write_snmprec(r, d / f"{r.name}.snmprec")
            agent = SnmpSim(
                d,
                v3_user=user,
                v3_only=True,
                default_context=r.name,
                cache_dir=self.workdir / f"cache-{r.name}",
            )
            self._v3.append(agent)
            self.ports[r.name] = agent.port

    @property
    def pids(self) -> list[int]:
        return [*(self._pool.pids if self._pool else []), *(a.pid for a in self._v3)]

    def write_inventory(self, path: Path | str) -> Path:
        """The inventory with every served device's SNMP port set to its agent's port."""
        data: dict[str, Any] = yaml.safe_load(self.inventory.read_text(encoding="utf-8"))
        for dev in data.get("devices") or []:
            if dev.get("name") in self.ports:
                dev["mgmt_address"] = HOST
                dev.setdefault("snmp", {})["port"] = self.ports[dev["name"]]
        path = Path(path)
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path

    def stop(self) -> None:
        """End every agent by PID; remove the work dir if this lab made it."""
        for a in self._v3:
            a.stop()
        self._v3 = []
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
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
