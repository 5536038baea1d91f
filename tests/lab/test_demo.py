"""`edgewarden demo` (README's first command) runs the whole story and exits 0: the lab, a real
`edgewarden serve`, NetFlow in, cuts verified on the emulated LNS, documents, transitions,
blacklist, the unallocated address, the forged exporter and the 24-hour report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_plays_to_the_end(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "core", "demo", "--workdir", str(tmp_path), "--timeout", "90"],
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("EDGEWARDEN_")},
            "COLUMNS": "200",
        },
    )
    out = proc.stdout + proc.stderr
    (tmp_path / "demo-output.txt").write_text(out)
    assert proc.returncode == 0, out[-3000:]
    for needle in (
        "strike 1",
        "cut #",
        "restore #",
        "strike 2",
        "county reconnection refused",
        "blacklisted",
        "unauthorized_ip 10.145.250.",
        "counted and dropped; no detection",
        "report for case",
    ):
        assert needle in out, f"{needle!r} missing from the demo output:\n{out[-3000:]}"
    report = next(tmp_path.glob("report-case-*.md")).read_text(encoding="utf-8")
    for heading in ("事件起因", "处置过程", "影响范围", "整改措施"):
        assert heading in report
    assert "P140" in report
