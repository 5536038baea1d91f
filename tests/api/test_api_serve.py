"""`edgewarden serve` starts on the embedded default, answers, listens for NetFlow and stops
cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    api, nf, ipfix = _free_port(), _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_DGRAM)
    env = {
        **os.environ,
        "EDGEWARDEN_DATABASE_URL": f"sqlite:///{tmp_path}/ew.db",
        "EDGEWARDEN_NETFLOW_PORT": str(nf),
        "EDGEWARDEN_IPFIX_PORT": str(ipfix),
        "EDGEWARDEN_DOCUMENTS_DIR": str(tmp_path / "docs"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "serve", "--port", str(api)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{api}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{api}/readyz", timeout=2).status_code == 200
        assert (
            httpx.get(f"http://127.0.0.1:{api}/api/v1/institutions", timeout=2).status_code == 401
        )
        for port in (nf, ipfix):  # the NetFlow listeners hold their ports
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                    raise AssertionError(f"nothing listens on UDP {port}")
                except OSError:
                    pass
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out


def test_serve_refuses_to_start_without_secret_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EDGEWARDEN_SECRET_KEY"}
    env["EDGEWARDEN_DATABASE_URL"] = f"sqlite:///{tmp_path}/ew.db"
    run = subprocess.run(
        [sys.executable, "-m", "core", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "EDGEWARDEN_SECRET_KEY is not set" in run.stderr and "Traceback" not in run.stderr
