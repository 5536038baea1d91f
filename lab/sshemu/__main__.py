"""``python -m lab.sshemu --config FILE.yaml``: the emulated devices as a foreground process.

For the demo and for tests whose emulator must outlive a process they kill. Prints one
``ready NAME PORT`` line per device once all listen, then serves until SIGTERM or SIGINT and
exits 0. With ``--state-dir DIR`` each device's state is written to ``DIR/NAME.json`` after
every change, so another process can check it. The YAML file::

    host: 127.0.0.1            # optional
    devices:
      - name: HZ-EDGE-01
        profile: huawei        # or hp_comware
        interfaces: [GigabitEthernet0/0/1.1001]
        port: 0                # optional, 0 = any free port
        username: admin        # optional
        password: admin        # optional
        faults: {reject: [], stuck_up: [], hang_on: null, refuse_login: false}  # optional
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from lab.sshemu.model import PROFILES, EmulatedDevice, Faults
from lab.sshemu.server import EmulatorCore

_DEVICE_KEYS = {"name", "profile", "interfaces", "port", "username", "password", "faults"}
_FAULT_KEYS = {"reject", "stuck_up", "hang_on", "refuse_login"}


class ConfigError(ValueError):
    """The YAML file does not describe devices; the message says where."""


def _faults(raw: Any, where: str) -> Faults:
    if raw is None:
        return Faults()
    if not isinstance(raw, dict) or set(raw) - _FAULT_KEYS:
        raise ConfigError(f"{where}.faults: a mapping with keys {sorted(_FAULT_KEYS)}")
    return Faults(
        reject=[str(x) for x in raw.get("reject") or []],
        stuck_up={str(x) for x in raw.get("stuck_up") or []},
        hang_on=None if raw.get("hang_on") is None else str(raw["hang_on"]),
        refuse_login=bool(raw.get("refuse_login", False)),
    )


def load_config(path: Path) -> tuple[str, list[EmulatedDevice]]:
    """(host, devices) from the YAML file; ConfigError naming the bad entry otherwise."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("devices"), list):
        raise ConfigError(f"{path}: expected a mapping with a 'devices' list")
    devices = []
    for i, raw in enumerate(doc["devices"]):
        where = f"devices[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping")
        unknown = set(raw) - _DEVICE_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
        if not raw.get("name") or raw.get("profile") not in PROFILES:
            raise ConfigError(f"{where}: needs a name and a profile in {list(PROFILES)}")
        ifs = raw.get("interfaces")
        if not isinstance(ifs, list) or not ifs:
            raise ConfigError(f"{where}: interfaces must be a non-empty list")
        devices.append(
            EmulatedDevice(
                name=str(raw["name"]),
                profile=raw["profile"],
                interfaces=[str(x) for x in ifs],
                username=str(raw.get("username", "admin")),
                password=str(raw.get("password", "admin")),
                port=int(raw.get("port", 0)),
                faults=_faults(raw.get("faults"), where),
            )
        )
    return str(doc.get("host", "127.0.0.1")), devices


async def serve(host: str, devices: list[EmulatedDevice], state_dir: Path | None) -> None:
    core = EmulatorCore(devices, host, state_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ports = await core.start()
    for name, port in ports.items():
        print(f"ready {name} {port}", flush=True)
    try:
        await stop.wait()
    finally:
        await core.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.sshemu", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", required=True, type=Path, help="YAML file of devices")
    parser.add_argument("--state-dir", type=Path, help="write NAME.json here on every change")
    args = parser.parse_args(argv)
    try:
        host, devices = load_config(args.config)
        asyncio.run(serve(host, devices, args.state_dir))
    except (ConfigError, ValueError) as e:
        print(f"sshemu: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"sshemu: cannot listen: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
