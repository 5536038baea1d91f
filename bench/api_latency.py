"""API latency under load (issue 7, Performance): p50/p99 of GET /api/v1/cases and
GET /api/v1/detections at an open-loop 200 requests/s, with a county operator and a city admin
token, while the collector ingests NetFlow v9 at a high rate; baseline in the same run: the
same load against /healthz (the floor of the stack: uvicorn + FastAPI + the client).

    uv run python bench/api_latency.py [--seconds 10] [--rps 200] [--flow-rate 100000]

PostgreSQL 15 is a throwaway cluster (tests/pgserver.py) holding 10,000 institutions, 100,000
detections and 10,000 cases (bulk core INSERTs, tests/api/api_seed.py). The API is a real
``edgewarden serve --only api`` (uvicorn) process, the sink a real ``edgewarden serve --only
collector``; the NetFlow sender is a separate process replaying softflowd's v9 export of
bench/netflow_corpus.py's capture. Latency is measured from each request's scheduled start
(open loop: a slow answer does not slow the schedule, so queueing shows in the figures).
Everything is on 127.0.0.1; every process started here is ended by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TARGET_P99_MS = 50.0


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def prepare(db_url: str, tmp: Path) -> dict[str, str]:
    """Migrate, import the sample inventory, bulk-seed the issue's scale; return tokens."""
    from sqlalchemy import insert
    from sqlalchemy.orm import Session

    from core.db import make_engine
    from core.inventory import import_file
    from core.migrate import upgrade
    from core.models import Exporter, Role
    from core.tokens import create_token
    from tests.api.api_seed import COUNTY_A, SAMPLE, bulk_seed

    upgrade(db_url)
    eng = make_engine(db_url)
    with Session(eng) as s:
        import_file(s, SAMPLE, actor="bench")
        s.execute(
            insert(Exporter),
            [{"address": "127.0.0.1", "observation_domain": 0, "sampling_rate": 1}],
        )
        _, op = create_token(s, role=Role.COUNTY_OPERATOR, counties=[COUNTY_A], name="bench-op")
        _, admin = create_token(s, role=Role.CITY_ADMIN, name="bench-admin")
        s.commit()
    t0 = time.perf_counter()
    counts = bulk_seed(eng)
    print(f"seeded {counts} in {time.perf_counter() - t0:.1f} s", flush=True)
    eng.dispose()
    return {"county_operator": op, "city_admin": admin}


def start(role: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "core", "serve", "--only", role],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_http(url: str, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def sender(port: int, rate_records: float, seconds: float, cache: str, out: mp.Queue) -> None:
    """Replay v9 datagrams at ``rate_records`` records/s for ``seconds`` (own process)."""
    from netflow_corpus import corpus
    from netflow_e2e import record_counts, replay

    datagrams = corpus(100_000, Path(cache))[9]
    per = record_counts(datagrams)
    per_dgram = sum(per) / len(per)
    rate_dgrams = rate_records / per_dgram
    total = int(rate_dgrams * seconds)
    achieved = replay(port, datagrams, rate_dgrams, total)
    out.put({"datagrams": total, "records_per_s": achieved * per_dgram})


async def load(
    base: str, path: str, token: str | None, rps: float, seconds: float
) -> tuple[list[float], int]:
    """Open-loop GETs at ``rps``; latency (ms) from each request's scheduled time."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    n = int(rps * seconds)
    lat: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:

        async def one(at: float) -> None:
            nonlocal errors
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                r = await client.get(path, timeout=10.0)
                if r.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            lat.append((time.perf_counter() - at) * 1000.0)

        t0 = time.perf_counter() + 0.2
        await asyncio.gather(*(one(t0 + i / rps) for i in range(n)))
    return lat, errors


def time_one(base: str, path: str, token: str | None) -> float:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    t = time.perf_counter()
    httpx.get(base + path, headers=headers, timeout=30.0)
    return (time.perf_counter() - t) * 1000.0


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="per endpoint and token")
    parser.add_argument("--rps", type=float, default=200.0)
    parser.add_argument("--flow-rate", type=float, default=100_000.0, help="records/s")
    parser.add_argument("--cache", default="/tmp/edgewarden-bench")
    args = parser.parse_args()

    from cryptography.fernet import Fernet

    from tests.pgserver import LocalCluster

    tmp = Path(tempfile.mkdtemp(prefix="ew-api-bench-"))
    cluster = LocalCluster()
    server = cluster.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        db_url = server.create_database("ew_api_bench")
        key = Fernet.generate_key().decode()
        os.environ["EDGEWARDEN_SECRET_KEY"] = key
        tokens = prepare(db_url, tmp)
        api_port, flow_port, ipfix_port = (
            free_port(),
            free_port(socket.SOCK_DGRAM),
            free_port(socket.SOCK_DGRAM),
        )
        env = {
            **os.environ,
            "EDGEWARDEN_DATABASE_URL": db_url,
            "EDGEWARDEN_SECRET_KEY": key,
            "EDGEWARDEN_API_PORT": str(api_port),
            "EDGEWARDEN_NETFLOW_PORT": str(flow_port),
            "EDGEWARDEN_IPFIX_PORT": str(ipfix_port),
            "EDGEWARDEN_SCHEDULER_ENABLED": "false",
            "EDGEWARDEN_LOG_LEVEL": "WARNING",
            "EDGEWARDEN_DOCUMENTS_DIR": str(tmp / "documents"),
            "EDGEWARDEN_REPORTS_DIR": str(tmp / "reports"),
        }
        procs.append(start("api", env, tmp / "api.log"))
        procs.append(start("collector", env, tmp / "collector.log"))
        base = f"http://127.0.0.1:{api_port}"
        wait_http(base + "/readyz")
        time.sleep(1.0)  # the collector binds its sockets

        plan = [
            ("/healthz (baseline)", "/healthz", None),
            ("GET /api/v1/cases  county_operator", "/api/v1/cases", "county_operator"),
            ("GET /api/v1/cases  city_admin", "/api/v1/cases", "city_admin"),
            ("GET /api/v1/detections  county_operator", "/api/v1/detections", "county_operator"),
            ("GET /api/v1/detections  city_admin", "/api/v1/detections", "city_admin"),
        ]
        total_s = len(plan) * (args.seconds + 1.5) + 5
        q: mp.Queue = mp.Queue()
        flow = mp.Process(
            target=sender, args=(flow_port, args.flow_rate, total_s, args.cache, q), daemon=True
        )
        if args.flow_rate > 0:
            flow.start()
            time.sleep(3.0)  # the sender builds its corpus and starts
        print(
            f"load: {args.rps:.0f} req/s open loop, {args.seconds:.0f} s per line; NetFlow v9 "
            f"replay target {args.flow_rate:,.0f} records/s to the collector\n"
        )
        print(
            f"{'target':42} {'n':>6} {'err':>4} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
            f"{'serial ms':>9}"
        )
        results: dict[str, tuple[float, float]] = {}
        for label, path, role in plan:
            token = tokens[role] if role else None
            # Service time: one request at a time (closed loop), also warms the caches.
            serial = [time_one(base, path, token) for _ in range(30)]
            lat, errors = asyncio.run(load(base, path, token, args.rps, args.seconds))
            p50, p99 = pct(lat, 0.50), pct(lat, 0.99)
            results[label] = (p50, p99)
            print(
                f"{label:42} {len(lat):>6} {errors:>4} {p50:>8.1f} {p99:>8.1f} "
                f"{max(lat):>8.1f} {pct(serial, 0.5):>9.1f}",
                flush=True,
            )
        if args.flow_rate > 0:
            flow.join(total_s + 30)
        sent = q.get(timeout=5) if args.flow_rate > 0 else {"records_per_s": 0}
        print(f"\nNetFlow sender: {sent}")
        floor = results["/healthz (baseline)"][1]
        print(f"target p99 < {TARGET_P99_MS:.0f} ms; baseline /healthz p99 {floor:.1f} ms")
        for label, (_, p99) in results.items():
            if label.startswith("GET"):
                verdict = "meets" if p99 < TARGET_P99_MS else "MISSES"
                print(
                    f"  {label:42} p99 {p99:7.1f} ms  {verdict} the target "
                    f"({p99 / floor:.1f}x the floor)"
                )
    finally:
        for p in procs:
            stop(p)
        cluster.stop()
        print(f"logs in {tmp}")


if __name__ == "__main__":
    main()
