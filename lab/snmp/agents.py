"""SNMP agents the collector is tested against: real ones and ones that misbehave on purpose.

- ``SnmpSim``: PyPI snmpsim 1.2.2 in its own venv (Debian's Python, for ``dbm.gnu``) serving
  ``.snmprec`` files; the community is the file's stem. Optionally an SNMPv3 authPriv user,
  v3 only, and a file served for the empty SNMPv3 context as a real device would.
- ``SnmpSimPool``: K snmpsim processes over the same data, so load tests measure the poller.
- ``NetSnmpd``: Debian's net-snmp ``snmpd`` as a second, independent agent.
- ``SilentAgent``, ``DyingAgent``, ``BrokenAgent``: never answers; answers the first N
  requests then goes silent; serves GETBULK rows that loop or go backwards.

Every agent is a process of its own, started by the constructor (ready when it returns),
ended by its PID in ``stop()``, and a context manager. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self

from lab.snmp.snmprec import IP_NET_TO_PHYSICAL, SYS_NAME, RouterSpec, write_snmprec
from lab.venvs import VenvSpec, bin_path, ensure_venv

HOST = "127.0.0.1"
# pysnmp needs `cryptography` for SNMPv3 privacy (DES/AES); snmpsim does not pull it in.
SNMPSIM_VENV = VenvSpec(
    "snmpsim", ("snmpsim==1.2.2", "pysmi", "cryptography"), python="/usr/bin/python3"
)
SNMPD = "/usr/sbin/snmpd"
REPO_ROOT = Path(__file__).resolve().parents[2]
# snmpsim serves the data file named "self" for requests whose SNMPv3 context is empty.
DEFAULT_CONTEXT_FILE = "self.snmprec"


class AgentError(RuntimeError):
    """An agent did not start or answer; the message says which and ends with its log."""


@dataclass(frozen=True)
class V3User:
    """An SNMPv3 USM user with authPriv (SHA/AES by default); keys must be 8+ characters."""

    name: str
    auth_key: str
    priv_key: str
    auth_proto: str = "SHA"
    priv_proto: str = "AES"

    @classmethod
    def from_inventory(cls, snmp: dict[str, Any]) -> V3User:
        """From an inventory device's ``snmp`` mapping (user, auth_key, priv_key, protocols)."""
        return cls(
            name=str(snmp["user"]),
            auth_key=str(snmp["auth_key"]),
            priv_key=str(snmp["priv_key"]),
            auth_proto=str(snmp.get("auth_protocol") or "sha").upper(),
            priv_proto=str(snmp.get("priv_protocol") or "aes").upper(),
        )

    def snmpcmd_args(self, context: str | None = None) -> list[str]:
        """net-snmp command-line options for this user (and ``-n context`` if given)."""
        args = [
            "-v3",
            "-l",
            "authPriv",
            "-u",
            self.name,
            "-a",
            self.auth_proto,
            "-A",
            self.auth_key,
            "-x",
            self.priv_proto,
            "-X",
            self.priv_key,
        ]
        return [*args, "-n", context] if context else args


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago (agents retry if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def snmpget(
    port: int,
    oid: str = SYS_NAME,
    *,
    community: str | None = "public",
    v3: V3User | None = None,
    context: str | None = None,
    timeout: float = 0.3,
    retries: int = 0,
) -> str | None:
    """The value net-snmp's ``snmpget`` prints for ``oid`` (-Oqv), or None on any failure."""
    auth = v3.snmpcmd_args(context) if v3 else ["-v2c", "-c", community or ""]
    cmd = ["snmpget", *auth, "-On", "-Oqv", f"-t{timeout}", f"-r{retries}", f"{HOST}:{port}", oid]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=_no_mibs(), stdin=subprocess.DEVNULL
    )
    out = proc.stdout.strip()
    if proc.returncode != 0 or not out or out.startswith("No Such"):
        return None
    return out.strip('"')


def _die_with_parent() -> None:
    """In the child: SIGTERM when the process (strictly: the thread) that started it ends,
    so a killed test run leaves no agent behind (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _no_mibs() -> dict[str, str]:
    return {**os.environ, "MIBS": ""}


class _Process:
    """A child process with a log file and a temp dir, ended by PID on stop()."""

    port: int

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix=f"ew-{type(self).__name__.lower()}-"))
        self._log_path = self._tmp / "agent.log"
        self._log: IO[bytes] | None = None
        self._atexit = False

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise AgentError(f"{type(self).__name__} is not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self._log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def _spawn(
        self,
        cmd: Sequence[str],
        env: dict[str, str] | None = None,
        stdout: int | IO[bytes] | None = None,
    ) -> subprocess.Popen[bytes]:
        if self._log is None:
            self._log = self._log_path.open("ab")
        if not self._atexit:  # a test that forgets stop() still leaves no process behind
            atexit.register(self._end_process)
            self._atexit = True
        self._proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else self._log,
            stderr=self._log,
            env=env,
            start_new_session=True,  # a Ctrl-C in the test run does not hit it first
            preexec_fn=_die_with_parent,
        )
        return self._proc

    def _end_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        for stream in (proc.stdout,):
            if stream is not None:
                stream.close()

    def stop(self) -> None:
        """End the process (SIGTERM, then SIGKILL after 5 s) and remove the temp dir."""
        self._end_process()
        if self._atexit:
            atexit.unregister(self._end_process)
            self._atexit = False
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_ready(self, probe: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise _PortTaken(f"{what} exited at start: {self.log_tail()}")
            if _port_taken_by_other(self.pid, self.port):
                # snmpsim logs "Listening" and carries on when its bind fails
                raise _PortTaken(f"{what}: another process holds UDP port {self.port}")
            if probe():
                return
            time.sleep(0.05)
        raise AgentError(f"{what} not ready after {timeout:.0f} s: {self.log_tail()}")


class _PortTaken(AgentError):
    """The agent could not have its port (or died at once): worth a retry on another port."""


def _port_taken_by_other(pid: int, port: int) -> bool:
    """True if a UDP socket bound to ``port`` exists and none of them is ``pid``'s."""
    inodes: set[str] = set()
    try:
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{f[9]}]")
        if not inodes:
            return False
        fd_dir = Path(f"/proc/{pid}/fd")
        mine = set()
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                mine.add(os.readlink(fd))
    except OSError:
        return False  # no /proc (or the process just ended): let the other checks decide
    return not (inodes & mine)


def snmpsim_program() -> Path:
    """snmpsim-command-responder in its venv (made on first use; ~1 s when cached)."""
    return bin_path(SNMPSIM_VENV, "snmpsim-command-responder")


class SnmpSim(_Process):
    """snmpsim 1.2.2 serving every ``*.snmprec`` in ``data_dir`` on 127.0.0.1:``port``.

    v1/v2c: the community is the file's stem. SNMPv3 (``v3_user``): the context name is the
    file's stem, and ``default_context`` names the file served for the empty context (what a
    poller sends to a real device). ``v3_only`` turns v1/v2c off. ``cache_dir`` keeps the
    index between runs (default: a temp dir removed on stop). ``probe_community`` is the
    file used for the readiness check (default: the first file)."""

    def __init__(
        self,
        data_dir: Path | str,
        port: int = 0,
        v3_user: V3User | None = None,
        *,
        v3_only: bool = False,
        default_context: str | None = None,
        cache_dir: Path | str | None = None,
        probe_community: str | None = None,
        start_timeout: float = 180.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir).resolve()
        files = sorted(self.data_dir.glob("*.snmprec"))
        if not files:
            raise AgentError(f"no *.snmprec files in {self.data_dir}")
        if v3_only and v3_user is None:
            raise AgentError("v3_only needs a v3_user")
        if default_context is not None and v3_user is None:
            raise AgentError("default_context is for SNMPv3; give a v3_user")
        self.v3_user = v3_user
        self.v3_only = v3_only
        self.default_context = default_context
        self.probe_community = probe_community or files[0].stem
        self.cache_dir = Path(cache_dir) if cache_dir else self._tmp / "cache"
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        data_dirs = [self.data_dir]
        if default_context is not None:
            src = self.data_dir / f"{default_context}.snmprec"
            if not src.exists():
                raise AgentError(f"default_context: no {src}")
            alias = self._tmp / "default-context"
            alias.mkdir()
            # snmpsim names a symlinked file after its target, so link or copy the file.
            try:
                os.link(src, alias / DEFAULT_CONTEXT_FILE)
            except OSError:
                shutil.copyfile(src, alias / DEFAULT_CONTEXT_FILE)
            data_dirs.append(alias)
        program = str(snmpsim_program())
        env = {**os.environ, "SNMPSIM_ALLOW_ROOT": "true"}
        for attempt in range(3):
            self.port = port or free_udp_port()
            cmd = [program, "--log-level=error", f"--cache-dir={self.cache_dir}"]
            if v3_only:
                cmd.append("--v3-only")
            cmd += [f"--data-dir={d}" for d in data_dirs]
            cmd.append(f"--agent-udpv4-endpoint={HOST}:{self.port}")
            if v3_user:
                cmd += [
                    f"--v3-user={v3_user.name}",
                    f"--v3-auth-key={v3_user.auth_key}",
                    f"--v3-auth-proto={v3_user.auth_proto}",
                    f"--v3-priv-key={v3_user.priv_key}",
                    f"--v3-priv-proto={v3_user.priv_proto}",
                ]
            cmd += list(extra_args)
            self._spawn(cmd, env=env)
            try:
                self._wait_ready(self._probe, start_timeout, f"snmpsim on port {self.port}")
                return
            except _PortTaken:
                self._end_process()  # e.g. the port was taken meanwhile: try another
                if port or attempt == 2:
                    self.stop()
                    raise
            except AgentError:
                self.stop()
                raise

    def _probe(self) -> bool:
        if self.v3_only and self.v3_user:
            got = snmpget(self.port, v3=self.v3_user, context=self.probe_community)
        else:
            got = snmpget(self.port, community=self.probe_community)
        return got is not None


class SnmpSimPool:
    """``processes`` snmpsim processes over one data dir on separate ports (the first builds
    the shared index, the others start from it). ``ports``/``pids`` in start order."""

    def __init__(self, data_dir: Path | str, processes: int = 2, **kwargs: Any) -> None:
        if processes < 1:
            raise AgentError("a pool needs at least one process")
        self._tmp: Path | None = None
        if "cache_dir" not in kwargs:
            self._tmp = Path(tempfile.mkdtemp(prefix="ew-snmpsim-pool-"))
            kwargs["cache_dir"] = self._tmp
        self.agents: list[SnmpSim] = []
        try:
            self.agents.append(SnmpSim(data_dir, **kwargs))
            for _ in range(processes - 1):
                self.agents.append(SnmpSim(data_dir, **kwargs))
        except BaseException:
            self.stop()
            raise

    @property
    def ports(self) -> list[int]:
        return [a.port for a in self.agents]

    @property
    def pids(self) -> list[int]:
        return [a.pid for a in self.agents]

    def stop(self) -> None:
        for a in self.agents:
            a.stop()
        self.agents = []
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NetSnmpd(_Process):
    """Debian's net-snmp snmpd on 127.0.0.1:``port`` with a read-only v2c ``community`` and
    an optional SNMPv3 authPriv user; ``extra_config`` is appended to its snmpd.conf. Its
    persistent state lives in a temp dir, so parallel runs do not share engine IDs or users."""

    def __init__(
        self,
        port: int = 0,
        community: str = "public",
        v3_user: V3User | None = None,
        extra_config: str = "",
        *,
        sys_name: str = "lab-snmpd",
        start_timeout: float = 15.0,
    ) -> None:
        super().__init__()
        if not Path(SNMPD).exists():
            raise AgentError(f"{SNMPD} is missing: apt-get install snmpd snmp")
        self.community = community
        self.v3_user = v3_user
        self.sys_name = sys_name
        conf = self._tmp / "snmpd.conf"
        lines = [
            f"rocommunity {community} {HOST}",
            f"sysName {sys_name}",
            "dontLogTCPWrappersConnects yes",
        ]
        if v3_user:
            lines += [
                f'createUser {v3_user.name} {v3_user.auth_proto} "{v3_user.auth_key}" '
                f'{v3_user.priv_proto} "{v3_user.priv_key}"',
                f"rouser {v3_user.name} priv",
            ]
        conf.write_text("\n".join([*lines, extra_config, ""]))
        state = self._tmp / "state"
        state.mkdir()
        env = {**_no_mibs(), "SNMP_PERSISTENT_DIR": str(state), "SNMPCONFPATH": str(self._tmp)}
        for attempt in range(3):
            self.port = port or free_udp_port()
            self._spawn(
                [SNMPD, "-f", "-Lo", "-C", "-c", str(conf), f"udp:{HOST}:{self.port}"], env=env
            )
            try:
                self._wait_ready(
                    lambda: snmpget(self.port, community=community) is not None,
                    start_timeout,
                    f"snmpd on port {self.port}",
                )
                return
            except _PortTaken:
                self._end_process()  # e.g. the port was taken meanwhile: try another
                if port or attempt == 2:
                    self.stop()
                    raise
            except AgentError:
                self.stop()
                raise


class _UdpChild(_Process):
    """A lab.snmp.udp_agents process; it binds its own port and prints it."""

    def __init__(self, *args: str, start_timeout: float = 20.0) -> None:
        super().__init__()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        proc = self._spawn(
            [sys.executable, "-m", "lab.snmp.udp_agents", *args], env=env, stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + start_timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([proc.stdout], [], [], max(left, 0))
            chunk = os.read(proc.stdout.fileno(), 64) if ready else b""
            if not chunk:
                self.stop()
                raise AgentError(f"{type(self).__name__} did not start: {self.log_tail()}")
            line += chunk
        self.port = int(line.split()[1])


class SilentAgent(_UdpChild):
    """Binds a UDP port on 127.0.0.1 and never answers (a dead or filtered device)."""

    def __init__(self, port: int = 0) -> None:
        super().__init__("silent", str(port))


class DyingAgent(_UdpChild):
    """A UDP proxy in front of the agent on ``upstream_port`` that forwards the first
    ``answer_first`` requests (every datagram counts, SNMPv3 discovery too), relays their
    answers, then goes silent for good: an agent that dies mid-walk."""

    def __init__(self, upstream_port: int, answer_first: int = 3) -> None:
        if answer_first < 0:
            raise AgentError("answer_first must be >= 0")
        self.upstream_port = upstream_port
        self.answer_first = answer_first
        super().__init__("dying", str(upstream_port), str(answer_first))


class BrokenAgent(_UdpChild):
    """An SNMPv2c responder (any community) whose walk of ``prefix`` is broken:
    ``loop`` — after the subtree's last OID it returns the first again, so a walk never ends;
    ``out_of_order`` — rows come pairwise swapped, so the second OID sorts before the first.
    GET and everything outside ``prefix`` answer correctly from ``spec`` (default: a small
    router with 8 ARP entries; ``spec.arp`` is what the broken ARP walk holds)."""

    def __init__(
        self,
        mode: Literal["loop", "out_of_order"] = "loop",
        *,
        spec: RouterSpec | None = None,
        prefix: str = IP_NET_TO_PHYSICAL,
    ) -> None:
        if mode not in ("loop", "out_of_order"):
            raise AgentError(f"mode must be loop or out_of_order, not {mode!r}")
        self.mode = mode
        self.prefix = prefix
        self.spec = spec or _small_router("broken")
        tmp = Path(tempfile.mkdtemp(prefix="ew-broken-data-"))
        try:
            data = write_snmprec(self.spec, tmp / f"{self.spec.name}.snmprec")
            super().__init__("broken", mode, str(data), prefix)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _small_router(name: str) -> RouterSpec:
    from lab.snmp.snmprec import Arp, Iface, Route

    spec = RouterSpec(name=name)
    spec.interfaces = [
        Iface(1, "GigabitEthernet0/0/0", "uplink", high_speed=10_000),
        Iface(2, "GigabitEthernet0/0/1.1001", "H14050200001 晋城市人民医院", high_speed=100),
    ]
    spec.arp = [Arp(2, f"10.145.0.{i}", f"02:00:00:00:00:{i:02x}") for i in range(2, 10)]
    spec.routes = [Route("10.0.0.0", 8, "10.140.254.1", 1), Route("10.145.0.0", 28, "0.0.0.0", 2)]
    return spec


def ensure_snmpsim() -> Path:
    """Create the snmpsim venv now (scripts/setup.sh warms it with this)."""
    return ensure_venv(SNMPSIM_VENV)
