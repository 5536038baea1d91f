"""`edgewarden serve` starts on the embedded default, answers, listens for NetFlow and stops
cleanly on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "EDGEWARDEN_DATABASE_URL": f"sqlite:///{tmp_path}/ew.db",
        "EDGEWARDEN_NETFLOW_PORT": str(_free_port(socket.SOCK_DGRAM)),
        "EDGEWARDEN_IPFIX_PORT": str(_free_port(socket.SOCK_DGRAM)),
        "EDGEWARDEN_DOCUMENTS_DIR": str(tmp_path / "docs"),
        "EDGEWARDEN_LOG_JSON": "true",
        "EDGEWARDEN_DEADLINE_CHECK_INTERVAL_S": "10",
        **extra,
    }


def _start(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "core", "serve", *args],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str, float]:
    """SIGTERM; returns (exit code, output, seconds it took to exit)."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"serve did not exit on SIGTERM:\n{out}") from None
    return proc.returncode, out, time.monotonic() - t0


def _wait_job(db: str, name: str, proc: subprocess.Popen[str], timeout: float = 20) -> dict:
    """The job's row once it has finished a run (polls the serve process's database)."""
    from api.jobs import job_status
    from core.db import session_factory

    deadline = time.monotonic() + timeout
    while True:
        rows: dict = {}
        with session_factory(db)() as s, contextlib.suppress(OperationalError):
            rows = {r["name"]: r for r in job_status(s)}  # fails until migrations ran
        if rows.get(name, {}).get("last_finished_at"):
            return rows[name]
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, f"job {name} did not run: {rows}"
        time.sleep(0.2)


def _json_lines(out: str) -> list[dict]:
    rows = []
    for line in out.splitlines():
        if line.strip():
            row = json.loads(line)  # every line is one JSON object
            assert {"ts", "level", "logger", "msg"} <= row.keys(), row
            rows.append(row)
    return rows


@pytest.mark.slow
def test_serve_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    api = _free_port()
    env = _env(tmp_path)
    nf, ipfix = int(env["EDGEWARDEN_NETFLOW_PORT"]), int(env["EDGEWARDEN_IPFIX_PORT"])
    proc = _start(tmp_path, env, "--port", str(api))
    token = ""
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
        # the scheduler of this process ran the deadline check (at start, its current slot)
        db = env["EDGEWARDEN_DATABASE_URL"]
        assert _wait_job(db, "deadline_check", proc)["last_status"] == "ok"
        from core.db import session_scope
        from core.models import Role
        from core.tokens import create_token

        with session_scope(db) as s:
            _, token = create_token(s, role=Role.VIEWER)
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"http://127.0.0.1:{api}/api/v1/institutions", headers=auth).is_success
        scraped = httpx.get(f"http://127.0.0.1:{api}/metrics", headers=auth, timeout=5)
        assert scraped.status_code == 200
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(scraped.text)
            for s in fam.samples
        }
        assert samples[("edgewarden_job_runs", (("job", "deadline_check"),))] >= 1
        assert samples[("edgewarden_metrics_database_up", ())] == 1
        assert ("edgewarden_netflow_observations_total", ()) in samples  # collector's counters
    finally:
        code, out, took = _stop(proc)
    assert code == 0, out
    assert took < 10, f"took {took:.1f} s to stop"
    rows = _json_lines(out)
    access = [r for r in rows if r["logger"] == "uvicorn.access"]
    assert any(r["path"] == "/healthz" and r["status"] == 200 for r in access), access
    roles = next(r for r in rows if r["msg"] == "edgewarden serve started")["roles"]
    assert roles == ["api", "collector", "worker", "scheduler"]
    assert any(r["msg"] == "edgewarden serve stopped" and r["failed"] is False for r in rows)
    assert token not in out and os.environ["EDGEWARDEN_SECRET_KEY"] not in out


@pytest.mark.slow
def test_serve_only_scheduler(tmp_path: Path) -> None:
    api = _free_port()
    env = _env(tmp_path)
    proc = _start(tmp_path, env, "--port", str(api), "--only", "scheduler")
    try:
        status = _wait_job(env["EDGEWARDEN_DATABASE_URL"], "deadline_check", proc, timeout=30)
        assert status["last_status"] == "ok" and status["runs"] == 1
        with pytest.raises(httpx.HTTPError):  # no API in this process
            httpx.get(f"http://127.0.0.1:{api}/healthz", timeout=1)
        for var in ("EDGEWARDEN_NETFLOW_PORT", "EDGEWARDEN_IPFIX_PORT"):  # no collector
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", int(env[var])))
    finally:
        code, out, took = _stop(proc)
    assert code == 0, out
    assert took < 10, f"took {took:.1f} s to stop"
    rows = _json_lines(out)
    assert next(r for r in rows if r["msg"] == "edgewarden serve started")["roles"] == ["scheduler"]
    assert not any(r["logger"].startswith(("uvicorn", "collector", "enforcer")) for r in rows)


def test_serve_rejects_unknown_role(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "core", "serve", "--only", "api,webui"],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "unknown role(s) webui" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "ew.db").exists()  # refused before touching the database


@pytest.mark.slow
def test_serve_exits_1_when_a_role_cannot_start(tmp_path: Path) -> None:
    """The API port is taken: the other roles are stopped and the exit code says so."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "core", "serve", "--port", str(port)],
            env=_env(tmp_path),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 1, run.stderr
    rows = _json_lines(run.stdout + run.stderr)
    assert any(r["msg"].startswith("role api failed") for r in rows), rows


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
