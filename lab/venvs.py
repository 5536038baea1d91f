"""Separate virtual environments for lab peers whose pins clash with the service's.

snmpsim wants Debian's Python (for ``dbm.gnu``) and fake-switches pins an ancient Twisted;
neither may share the service's environment (../shared/LAB.md). Each peer gets its own venv
under ``EDGEWARDEN_LAB_CACHE`` (default ``~/.cache/edgewarden/lab``), made once with ``uv``
and reused; a marker file records what was installed so a changed spec rebuilds it."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


class LabSetupError(RuntimeError):
    """A lab peer could not be installed; the message says which command failed."""


@dataclass(frozen=True)
class VenvSpec:
    """What a peer's venv holds: packages installed normally, then ones installed --no-deps."""

    name: str
    packages: tuple[str, ...]
    no_deps: tuple[str, ...] = ()
    python: str = "/usr/bin/python3"
    env: dict[str, str] = field(default_factory=dict)

    def digest(self) -> str:
        blob = json.dumps([self.packages, self.no_deps, self.python], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("EDGEWARDEN_LAB_CACHE") or str(Path.home() / ".cache/edgewarden/lab")
    return Path(base)


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise LabSetupError(f"{' '.join(cmd)} failed: " + " | ".join(tail))


def ensure_venv(spec: VenvSpec) -> Path:
    """The venv's directory, creating or rebuilding it when its spec changed."""
    uv = shutil.which("uv")
    if uv is None:
        raise LabSetupError("uv is not on PATH; run scripts/setup.sh first")
    root = cache_dir() / spec.name
    marker = root / ".edgewarden-spec"
    if marker.exists() and marker.read_text().strip() == spec.digest():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    # Two test runs may build the same venv at once: the second waits and reuses it.
    with open(root.parent / f".{spec.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text().strip() == spec.digest():
            return root
        _build(spec, uv, root, marker)
    return root


def _build(spec: VenvSpec, uv: str, root: Path, marker: Path) -> None:
    if root.exists():
        shutil.rmtree(root)
    _run([uv, "venv", "--quiet", "--python", spec.python, str(root)])
    py = str(root / "bin/python")
    if spec.packages:
        _run([uv, "pip", "install", "--quiet", "--python", py, *spec.packages])
    if spec.no_deps:
        _run([uv, "pip", "install", "--quiet", "--no-deps", "--python", py, *spec.no_deps])
    marker.write_text(spec.digest() + "\n")


def bin_path(spec: VenvSpec, program: str) -> Path:
    """Path of ``program`` inside the peer's venv (made on first use)."""
    return ensure_venv(spec) / "bin" / program
