"""Two scheduler PROCESSES on one PostgreSQL database (as with `serve --only scheduler` on two
hosts): each 1-second slot of a shared job runs in exactly one of them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import signal, sys, threading, time
from api.jobs import JobSpec
from api.scheduler import Scheduler
from core.settings import load_settings

url, out, me = sys.argv[1:4]

def record(ctx):
    with open(out, "a") as f:
        f.write(f"{ctx.slot.isoformat()} {me}\\n")
    time.sleep(0.2)

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
s = Scheduler(url, settings=load_settings(database_url=url),
              jobs=[JobSpec("shared", 1, record, lease_s=0.9)], holder=me)
s.start()
print("ready", flush=True)
stop.wait()
s.shutdown(wait=True)
"""


@pytest.mark.slow
def test_two_scheduler_processes_one_run_per_slot(db_url_pg: str, tmp_path: Path) -> None:
    procs = []
    for name in ("p1", "p2"):
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", SCRIPT, db_url_pg, str(tmp_path / f"{name}.log"), name],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        time.sleep(5)
    finally:
        outs = []
        for p in procs:
            p.send_signal(signal.SIGTERM)
            outs.append(p.communicate(timeout=20)[0])
    assert [p.returncode for p in procs] == [0, 0], outs
    lines = [
        line.split()
        for name in ("p1", "p2")
        if (tmp_path / f"{name}.log").exists()
        for line in (tmp_path / f"{name}.log").read_text().splitlines()
    ]
    per_slot = Counter(slot for slot, _ in lines)
    assert len(per_slot) >= 4, lines
    assert max(per_slot.values()) == 1, per_slot
