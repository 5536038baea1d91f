"""A Cisco IOS device over SSH for the enforcer's tests: fake-switches in its own venv.

fake-switches 1.5.0 pins a Twisted that cannot build on Python 3.11, so it lives in a venv of
its own (lab/venvs.py) with a current Twisted, and runs as a child process through
``fakeswitches_main.py``, which fixes its known problems (../shared/LAB.md). Verify interface
state with ``show running-config interface X``: its ``show interfaces`` never says
"administratively down"."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.venvs import LabSetupError, VenvSpec, ensure_venv

FAKESWITCHES_VENV = VenvSpec(
    name="fakeswitches",
    packages=("twisted[conch]", "tftpy", "netaddr", "lxml"),
    no_deps=("fake-switches==1.5.0",),
)
LAUNCHER = Path(__file__).with_name("fakeswitches_main.py")


class CiscoSwitch:
    """A running fake-switches process; ``stop`` ends it by its PID."""

    def __init__(
        self,
        proc: subprocess.Popen[str],
        name: str,
        host: str,
        port: int,
        username: str,
        password: str,
        secret: str,
        log_path: Path,
    ) -> None:
        self._proc = proc
        self.name = name
        self.host = host
        self.port = port
        self.pid = proc.pid
        self.username = username
        self.password = password
        self.secret = secret
        self.log_path = log_path

    def netmiko_params(self) -> dict[str, Any]:
        """Keyword arguments for ``netmiko.ConnectHandler`` (call ``enable()`` after)."""
        return {
            "device_type": "cisco_ios",
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "secret": self.secret,
        }

    def alive(self) -> bool:
        return self._proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM to our child's PID, SIGKILL if it lingers."""
        if self._proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self._proc.wait(timeout)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> CiscoSwitch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ssh_answers(host: str, port: int, timeout: float) -> bool:
    """True once the port accepts a connection and sends an SSH identification line."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def start_cisco(
    name: str,
    interfaces: list[str],
    port: int = 0,
    username: str = "admin",
    password: str = "admin",
    secret: str = "enable",
    host: str = "127.0.0.1",
    model: str = "cisco_generic",
    timeout: float = 30.0,
) -> CiscoSwitch:
    """Start a fake Cisco IOS switch named ``name`` (its prompt) with exactly ``interfaces``
    (sub-interfaces' parents added); returns when its SSH port answers."""
    if not interfaces:
        raise ValueError("a fake switch needs at least one interface")
    python = ensure_venv(FAKESWITCHES_VENV) / "bin" / "python"
    fd, log_name = tempfile.mkstemp(prefix=f"fakeswitch-{name}-", suffix=".log")
    log_path = Path(log_name)
    cmd = [
        str(python),
        str(LAUNCHER),
        f"--name={name}",
        f"--host={host}",
        f"--port={port}",
        f"--username={username}",
        f"--password={password}",
        f"--secret={secret}",
        f"--model={model}",
        "--interfaces=" + ",".join(interfaces),
    ]
    with os.fdopen(fd, "w") as log:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True
        )
    switch: CiscoSwitch | None = None
    try:
        deadline = time.monotonic() + timeout
        bound = _read_ready(proc, deadline)
        switch = CiscoSwitch(proc, name, host, bound, username, password, secret, log_path)
        while not _ssh_answers(host, bound, timeout=1.0):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LabSetupError(f"fake switch {name} never answered SSH on port {bound}")
            time.sleep(0.05)
        return switch
    except BaseException as e:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        if switch is not None:
            switch.stop()
        else:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            log_path.unlink(missing_ok=True)
        if isinstance(e, LabSetupError):
            raise LabSetupError(f"{e}: {' | '.join(tail)}") from None
        raise


def _read_ready(proc: subprocess.Popen[str], deadline: float) -> int:
    """The port from the launcher's ``ready PORT`` line."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = proc.stdout.readline()
            if not line:
                raise LabSetupError(f"fake switch exited with status {proc.wait()}")
            if line.startswith("ready "):
                return int(line.split()[1])
        raise LabSetupError("fake switch did not report ready in time")
    finally:
        sel.close()
