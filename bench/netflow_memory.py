"""Peak RSS of the listener pipeline (receive → decode → classify → aggregate → SQLite +
rules engine) during a short and a long flood over loopback UDP: memory must stay flat.

    uv run python bench/netflow_memory.py [--rate 1] [--short 10] [--long 60] [--churn N]

Each flood gets a fresh server process (bench/netflow_e2e.py's ``--serve``, pinned to the
second core) and a fresh database; the paced sender (first core) replays softflowd's v5 export
of the bench corpus at ``--rate`` M records/s. ``--churn N`` cycles through N variants of the
corpus (each pass XORs the low 16 bits of every destination address with the pass number
mod N), so N passes' worth of distinct aggregation keys and observations: the default 0
replays the corpus unchanged. Large N is bounded by the database writer (store + rules
engine, ~1-2k observations/s here), not by the listener. Peak = the sum of the VmHWM
(/proc/PID/status) of the server and of its receiver process (the listener reads the socket
in a child process) after the flood, the drain and a final database flush; the sum of their
VmRSS is sampled once a second.
Baseline: the short flood, same run. Target: long / short peak within 10 %.
Everything is on 127.0.0.1; each server is ended by its PID (its Popen handle).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from netflow_e2e import Ours, record_counts, seed, socket_counters, wait_drained

V5_HEADER, V5_RECORD = 24, 48


def proc_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def family(pid: int) -> list[int]:
    """The server and its child processes (the listener's receiver processes)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def family_kib(pid: int, field: str) -> tuple[int, int]:
    """(sum of ``field`` over the server and its children, the children's part)."""
    values = {p: proc_kib(p, field) for p in family(pid)}
    return sum(values.values()), sum(v for p, v in values.items() if p != pid)


class Churn:
    """The v5 corpus as a padded 2-D array, so a pass with new destinations is one XOR."""

    def __init__(self, datagrams: list[bytes], variants: int) -> None:
        self.variants = variants
        self.lengths = [len(d) for d in datagrams]
        width = max(self.lengths)
        self.base = np.zeros((len(datagrams), width), np.uint8)
        for i, d in enumerate(datagrams):
            self.base[i, : len(d)] = np.frombuffer(d, np.uint8)
        counts = [struct.unpack_from("!H", d, 2)[0] for d in datagrams]
        rows, cols = [], []
        for i, n in enumerate(counts):
            for r in range(n):
                off = V5_HEADER + r * V5_RECORD + 4  # dstaddr; its last two bytes
                rows += [i, i]
                cols += [off + 2, off + 3]
        self.rows = np.array(rows)
        self.cols = np.array(cols)

    def variant(self, n: int) -> list[bytes]:
        if n == 0:
            arr = self.base
        else:
            arr = self.base.copy()
            xor = np.tile(np.array([(n >> 8) & 0xFF, n & 0xFF], np.uint8), len(self.rows) // 2)
            arr[self.rows, self.cols] ^= xor
        return [arr[i, :length].tobytes() for i, length in enumerate(self.lengths)]


def flood(
    port: int, corpus: list[bytes], churn: Churn | None, rate_dgrams: float, seconds: float
) -> tuple[int, float]:
    """Paced send for ``seconds``; returns (datagrams sent, achieved datagrams/s)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    send = sock.send
    n = len(corpus)
    current = corpus
    start = time.perf_counter()
    sent = 0
    total = int(rate_dgrams * seconds)
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate_dgrams) + 1)
        while sent < due:
            i = sent % n
            if i == 0 and churn is not None:
                current = churn.variant((sent // n) % churn.variants)
            send(current[i])
            sent += 1
        ahead = sent / rate_dgrams - (time.perf_counter() - start)
        if ahead > 0.0005:
            time.sleep(ahead)
    elapsed = time.perf_counter() - start
    sock.close()
    return sent, sent / elapsed


def run(
    seconds: float,
    corpus: list[bytes],
    churn: Churn | None,
    rate_rec: float,
    core: int,
    flush_interval: float,
) -> dict[str, float]:
    per = record_counts(corpus)
    per_dgram = sum(per) / len(per)
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{tmp}/memory.db"
        seed(db_url)
        ours = Ours(db_url, 4 << 20, core, flush_interval=flush_interval)
        pid = ours.proc.pid
        samples: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(1.0):
                with contextlib.suppress(OSError, KeyError):
                    samples.append(family_kib(pid, "VmRSS")[0])

        sampler = threading.Thread(target=sample, daemon=True)
        try:
            start_rss = family_kib(pid, "VmRSS")[0]
            before = ours.ask()
            sampler.start()
            sent, achieved = flood(ours.port, corpus, churn, rate_rec / per_dgram, seconds)
            wait_drained(ours.port)
            after = ours.ask("flush")
            done.set()
            sampler.join()
            # both processes' peaks summed (an upper bound of the peak of the sum)
            peak, child_peak = family_kib(pid, "VmHWM")
            assert child_peak, "no receiver process found under the server"
            drops = (socket_counters(ours.port) or (0, 0))[1]
        finally:
            done.set()
            ours.close()
    sent_rec = (sent // len(corpus)) * sum(per) + sum(per[: sent % len(corpus)])
    return {
        "seconds": seconds,
        "start_mib": start_rss / 1024,
        "peak_mib": peak / 1024,
        "child_peak_mib": child_peak / 1024,
        "last_mib": (samples[-1] if samples else 0) / 1024,
        "sent_rec": sent_rec,
        "got_rec": after["records"] - before["records"],
        "kernel_drops": drops,
        "queue_dropped": after["queue_dropped"] - before["queue_dropped"],
        "observations": after["observations"],
        "rate": achieved * per_dgram,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=1.0, help="offered M records/s")
    parser.add_argument("--short", type=float, default=10.0)
    parser.add_argument("--long", type=float, default=60.0)
    parser.add_argument(
        "--flush-interval", type=float, default=5.0, help="DB write period (listener default 5)"
    )
    parser.add_argument("--churn", type=int, default=0, help="corpus variants cycled")
    parser.add_argument("--flows", type=int, default=100_000)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/edgewarden-bench"))
    args = parser.parse_args()
    from netflow_corpus import corpus

    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[0]})
    v5 = corpus(args.flows, args.cache, 64)[5]
    churn = Churn(v5, args.churn) if args.churn > 1 else None
    print(
        f"v5 flood at {args.rate:g}M rec/s over loopback, server on core {cores[-1]}, "
        f"churn {args.churn} variants, DB flush every {args.flush_interval:g} s"
    )
    results = [
        run(s, v5, churn, args.rate * 1e6, cores[-1], args.flush_interval)
        for s in (args.short, args.long)
    ]
    print(
        f"{'flood':>6} {'start MiB':>9} {'peak MiB':>9} {'rx proc':>8} {'end MiB':>8} "
        f"{'sent rec':>10} "
        f"{'got rec':>10} {'kernel drops':>12} {'queue drops':>11} {'observations':>12} "
        f"{'sent rec/s':>11}"
    )
    for r in results:
        print(
            f"{r['seconds']:5g}s {r['start_mib']:9.1f} {r['peak_mib']:9.1f} "
            f"{r['child_peak_mib']:8.1f} {r['last_mib']:8.1f} "
            f"{r['sent_rec']:10,.0f} {r['got_rec']:10,.0f} {r['kernel_drops']:12,.0f} "
            f"{r['queue_dropped']:11,.0f} {r['observations']:12,.0f} {r['rate']:11,.0f}"
        )
    ratio = results[1]["peak_mib"] / results[0]["peak_mib"]
    verdict = "PASS" if ratio <= 1.10 else "FAIL"
    print(
        f"\npeak RSS {args.long:g}s / {args.short:g}s = {ratio:.3f}  {verdict} "
        f"(target: within 10 %, baseline = the {args.short:g}s flood of this run)"
    )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
