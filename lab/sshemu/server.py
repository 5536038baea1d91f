"""SSH servers (asyncssh) for the emulated devices, in the caller's event loop or on a
background thread.

The terminal behaves like a router's VTY over a PTY: characters are echoed as they arrive,
a line ends at CR, LF or CRLF, output lines end in CRLF, and the prompt follows. netmiko's
``cmd_verify`` waits for that echo, so it is exact. ``EmulatorCore`` does the work in an
event loop (used directly by ``python -m lab.sshemu``); ``start`` runs one on a thread for
tests and returns an ``Emulator`` handle."""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh

from lab.sshemu.cli import CliSession
from lab.sshemu.model import PROFILES, DeviceConfig, DeviceState, EmulatedDevice, Faults
from lab.sshemu.vendors import NL, VENDORS

_host_key: asyncssh.SSHKey | None = None
_host_key_lock = threading.Lock()


def host_key() -> asyncssh.SSHKey:
    """One host key per process: generating one per device would only cost time."""
    global _host_key
    with _host_key_lock:
        if _host_key is None:
            _host_key = asyncssh.generate_private_key("ssh-ed25519")
        return _host_key


class _Device:
    """One device's configuration, its listener and its open connections."""

    def __init__(self, spec: EmulatedDevice) -> None:
        if spec.profile not in PROFILES:
            raise ValueError(f"device {spec.name}: unknown profile {spec.profile!r}")
        self.spec = spec
        self.vendor = VENDORS[spec.profile]
        self.cfg = DeviceConfig(spec, self.vendor.render)
        self.acceptor: asyncssh.SSHAcceptor | None = None
        self.conns: set[asyncssh.SSHServerConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()


class _Server(asyncssh.SSHServer):
    def __init__(self, dev: _Device) -> None:
        self.dev = dev
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.dev.conns.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.dev.conns.discard(self.conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        spec = self.dev.spec
        if self.dev.cfg.faults.refuse_login:
            return False
        user_ok = hmac.compare_digest(username.encode(), spec.username.encode())
        return user_ok and hmac.compare_digest(password.encode(), spec.password.encode())


async def _session(dev: _Device, process: asyncssh.SSHServerProcess[str]) -> None:
    sess = CliSession(dev.cfg, dev.vendor)
    if process.command:
        process.stdout.write(sess.run_exec(process.command) + NL)
        process.exit(0)
        return
    process.stdout.write(sess.greeting())
    buf: list[str] = []
    last_cr = False
    while not sess.closed:
        try:
            data = await process.stdin.read(4096)
        except (asyncssh.TerminalSizeChanged, asyncssh.BreakReceived, asyncssh.SignalReceived):
            continue
        except (asyncssh.DisconnectError, asyncssh.ConnectionLost, BrokenPipeError):
            break
        if not data:
            break
        if sess.hung:
            continue  # a hung device reads and says nothing
        out: list[str] = []
        for ch in data:
            if sess.hung or sess.closed:
                break
            if ch in "\r\n":
                if ch == "\n" and last_cr:
                    last_cr = False
                    continue
                last_cr = ch == "\r"
                line = "".join(buf)
                buf.clear()
                out.append(NL)
                out.append(sess.handle(line))
                continue
            last_cr = False
            if ch in "\x7f\x08":
                if buf:
                    buf.pop()
                    out.append("\b \b")
            elif ch == "\x1a":  # Ctrl+Z: back to user view
                buf.clear()
                out.append(sess.ctrl_z())
            elif ch == "\x03":  # Ctrl+C: drop the line
                buf.clear()
                out.append(NL + sess.prompt())
            elif ch >= " " or ch == "\t":
                buf.append(ch)
                out.append(ch)
        if out:
            process.stdout.write("".join(out))
    process.exit(0)


class EmulatorCore:
    """All devices' SSH servers in the running event loop."""

    def __init__(
        self, devices: list[EmulatedDevice], host: str = "127.0.0.1", state_dir: Path | None = None
    ) -> None:
        names = [d.name for d in devices]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate device names: {sorted(dupes)}")
        self.host = host
        self.devices = {d.name: _Device(d) for d in devices}
        self.ports: dict[str, int] = {}
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
            for dev in self.devices.values():
                dev.cfg.listeners.append(_state_writer(state_dir))
                _state_writer(state_dir)(dev.cfg)

    async def start(self) -> dict[str, int]:
        key = host_key()
        try:
            for name, dev in self.devices.items():
                dev.acceptor = await asyncssh.create_server(
                    lambda dev=dev: _Server(dev),
                    self.host,
                    dev.spec.port,
                    server_host_keys=[key],
                    process_factory=self._factory(dev),
                    line_editor=False,
                    encoding="utf-8",
                    keepalive_interval=0,
                )
                self.ports[name] = dev.acceptor.get_port()
        except BaseException:
            await self.stop()
            raise
        return dict(self.ports)

    @staticmethod
    def _factory(dev: _Device) -> Callable[[asyncssh.SSHServerProcess[str]], Any]:
        def factory(process: asyncssh.SSHServerProcess[str]) -> None:
            task = asyncio.get_running_loop().create_task(_session(dev, process))
            dev.tasks.add(task)
            task.add_done_callback(dev.tasks.discard)

        return factory

    async def stop(self) -> None:
        """Stop listening and drop every open session (hung ones too)."""
        for dev in self.devices.values():
            if dev.acceptor is not None:
                dev.acceptor.close()
        for dev in self.devices.values():
            for conn in list(dev.conns):
                conn.abort()
            for task in list(dev.tasks):
                task.cancel()
            if dev.acceptor is not None:
                await dev.acceptor.wait_closed()
                dev.acceptor = None
            if dev.tasks:
                await asyncio.gather(*dev.tasks, return_exceptions=True)

    def state(self, name: str) -> DeviceState:
        return self._dev(name).cfg.snapshot()

    def set_faults(self, name: str, faults: Faults) -> None:
        cfg = self._dev(name).cfg
        with cfg.lock:
            cfg.faults = copy.deepcopy(faults)

    def _dev(self, name: str) -> _Device:
        try:
            return self.devices[name]
        except KeyError:
            raise KeyError(f"no emulated device named {name!r}") from None


def state_json(state: DeviceState) -> dict[str, Any]:
    """A DeviceState as plain JSON (for ``--state-dir`` files)."""
    return {
        "name": state.name,
        "profile": state.profile,
        "sysname": state.sysname,
        "admin_up": state.admin_up,
        "descriptions": state.descriptions,
        "acls": {str(n): [r.render() for r in rules] for n, rules in state.acls.items()},
        "filters": state.filters,
        "blackholes": sorted(state.blackholes),
        "saved": state.saved,
        "save_count": state.save_count,
        "commands": state.commands,
        "rejected": state.rejected,
    }


def _state_writer(state_dir: Path) -> Callable[[DeviceConfig], None]:
    def write(cfg: DeviceConfig) -> None:
        path = state_dir / f"{cfg.device.name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state_json(cfg.snapshot()), indent=1))
        os.replace(tmp, path)

    return write


class Emulator:
    """Handle on emulated devices served from a background thread (see ``start``)."""

    def __init__(
        self, core: EmulatorCore, loop: asyncio.AbstractEventLoop, thread: threading.Thread
    ) -> None:
        self._core = core
        self._loop = loop
        self._thread = thread
        self.host = core.host
        self.ports: dict[str, int] = dict(core.ports)

    def state(self, name: str) -> DeviceState:
        """A snapshot of the device's configuration, save state and command log."""
        return self._core.state(name)

    def set_faults(self, name: str, faults: Faults) -> None:
        """Replace the device's faults; sessions see them from their next command/login."""
        self._core.set_faults(name, faults)

    def netmiko_params(self, name: str) -> dict[str, Any]:
        """Keyword arguments for ``netmiko.ConnectHandler`` to reach this device."""
        spec = self._core._dev(name).spec
        return {
            "device_type": spec.profile,
            "host": self.host,
            "port": self.ports[name],
            "username": spec.username,
            "password": spec.password,
        }

    def stop(self) -> None:
        """Close every listener and session, then end the loop's thread."""
        if self._loop.is_closed():
            return
        fut = asyncio.run_coroutine_threadsafe(self._core.stop(), self._loop)
        try:
            fut.result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(
    devices: list[EmulatedDevice], host: str = "127.0.0.1", state_dir: Path | None = None
) -> Emulator:
    """Serve ``devices`` on ``host`` from a background thread; returns once all listen."""
    core = EmulatorCore(devices, host, state_dir)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="sshemu", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(core.start(), loop).result(timeout=30)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        raise
    return Emulator(core, loop, thread)
