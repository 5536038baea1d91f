"""``python -m lab.sshemu --config FILE.yaml``: a separate process that serves the devices,
reports ``ready NAME PORT``, writes state files and exits cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from netmiko import ConnectHandler
from netmiko.exceptions import NetmikoAuthenticationException

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
devices:
  - name: HZ-RUN-01
    profile: huawei
    interfaces: [GigabitEthernet0/0/1.1001]
  - name: H3C-RUN-01
    profile: hp_comware
    interfaces: [GigabitEthernet1/0/1.1001]
    password: other
    faults: {refuse_login: true}
"""


def _spawn(config: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lab.sshemu", "--config", str(config), *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_runner_serves_devices_until_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "devices.yaml"
    config.write_text(CONFIG)
    proc = _spawn(config, "--state-dir", str(tmp_path / "state"))
    try:
        assert proc.stdout is not None
        ready = dict(proc.stdout.readline().split()[1:] for _ in range(2))
        ports = {name: int(port) for name, port in ready.items()}
        assert set(ports) == {"HZ-RUN-01", "H3C-RUN-01"}
        conn = ConnectHandler(
            device_type="huawei",
            host="127.0.0.1",
            port=ports["HZ-RUN-01"],
            username="admin",
            password="admin",
            global_cmd_verify=True,
        )
        conn.send_command("system-view", expect_string=r"\]")
        conn.send_config_set(
            ["interface GigabitEthernet0/0/1.1001", "shutdown", "return"],
            enter_config_mode=False,
            exit_config_mode=False,
        )
        conn.paramiko_cleanup()
        state = json.loads((tmp_path / "state" / "HZ-RUN-01.json").read_text())
        assert state["admin_up"]["GigabitEthernet0/0/1.1001"] is False
        assert state["saved"] is False
        try:
            ConnectHandler(
                device_type="hp_comware",
                host="127.0.0.1",
                port=ports["H3C-RUN-01"],
                username="admin",
                password="other",
            )
            raise AssertionError("refuse_login from the YAML file was not applied")
        except NetmikoAuthenticationException:
            pass
    finally:
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 5
        assert proc.stderr is not None and "Traceback" not in proc.stderr.read()


def test_a_bad_config_file_is_a_one_line_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("devices:\n  - name: X\n    profile: junos\n    interfaces: [ge-0/0/0]\n")
    proc = _spawn(config)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert out == ""
    assert (
        err.strip() == "sshemu: devices[0]: needs a name and a profile in ['huawei', 'hp_comware']"
    )
