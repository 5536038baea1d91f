"""Database writer throughput: NetFlow aggregates → Observation rows → rules.engine.observe, in
observations per second, for the bulk path (collector/netflow/store.py + rules/engine.py) and,
as the baseline in the same run, the one-by-one path it replaced (tests/netflow/legacy_engine.py).

    uv run python bench/netflow_store.py [--keys 6000] [--chunk 2000] [--pg URL]

Each path gets a fresh migrated database with the same inventory (16 institutions of policy
``jincheng``, one leased line each) and writes the same aggregates three times, like three
flushes of a listener that keeps seeing the same keys:

- round 1: every key is new (insert observations; one detection per observation, the first of
  each institution opens a strike case and queues cuts, the rest join it as evidence);
- round 2: the same keys again with more flows (counts add up; ~half the detections become
  corroborated, which may auto-approve queued cuts);
- round 3: the same keys again (steady state: counts add up, nothing else changes).

Transactions as in ``Pipeline.write``: per chunk, store + commit, observe + commit. The two
paths must end with the same number of detections, cases, events, actions and audit entries
(printed, and checked: the bench exits 1 if they differ).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "netflow"))

from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from collector.netflow.aggregate import Aggregate  # noqa: E402
from collector.netflow.store import ExporterRegistry, load_registry  # noqa: E402
from core.db import make_engine  # noqa: E402
from core.migrate import upgrade  # noqa: E402
from core.models import (  # noqa: E402
    AuditEvent,
    Case,
    CaseEvent,
    County,
    Detection,
    Device,
    DeviceRole,
    EnforcementAction,
    Exporter,
    Institution,
    InstitutionKind,
    IpAllocation,
    Link,
    LinkKind,
    Observation,
)

T0_MS = 1_760_000_000_000
KINDS = ("outbound_internet",) * 8 + ("remote_control", "internet_vpn")

StoreFn = Callable[[Session, Sequence[Aggregate], ExporterRegistry, int], list[Observation]]
ObserveFn = Callable[..., list[Detection]]


def seed(db_url: str) -> list[int]:
    upgrade(db_url)
    with Session(make_engine(db_url)) as s:
        county = County(code="140502", name="城区", policy="jincheng")
        device = Device(
            name="edge-01",
            mgmt_address="127.0.0.1",
            device_type="cisco_ios",
            role=DeviceRole.EDGE_ROUTER,
        )
        s.add_all([county, device])
        s.flush()
        insts = [
            Institution(
                code=f"H1405020{i:04d}",
                name=f"医院{i}",
                kind=InstitutionKind.HOSPITAL,
                county_id=county.id,
                agreement_start=date(2025, 1, 1),
                agreement_end=date(2026, 12, 31),
            )
            for i in range(16)
        ]
        s.add_all(insts)
        s.flush()
        for i, inst in enumerate(insts):
            s.add(IpAllocation(institution_id=inst.id, prefix=f"10.0.{i}.0/24"))
            s.add(
                Link(
                    institution_id=inst.id,
                    kind=LinkKind.LEASED_LINE,
                    device_id=device.id,
                    interface=f"GigabitEthernet0/0/{i}",
                )
            )
        s.add(
            Exporter(
                address="127.0.0.1",
                observation_domain=0,
                sampling_rate=1,
                enabled=True,
                device_id=device.id,
            )
        )
        s.commit()
        return [i.id for i in insts]


def aggregates(inst_ids: list[int], n: int, round_no: int, seed_: int = 7) -> list[Aggregate]:
    rng = random.Random(seed_)
    out = []
    for k in range(n):
        idx = rng.randrange(len(inst_ids))
        kind = KINDS[rng.randrange(len(KINDS))]
        strong = k % 2 == 0 and round_no >= 2  # half become corroborated in round 2
        flows = 3 if strong else 1
        first = T0_MS + k * 10 + round_no * 1000
        sample = [
            {"exporter": "127.0.0.1", "src_addr": f"10.0.{idx}.{k % 250 + 1}", "n": j}
            for j in range(1 if round_no == 1 else 2)
        ]
        out.append(
            Aggregate(
                inst_ids[idx],
                kind,
                f"10.0.{idx}.{k % 250 + 1}",
                f"203.0.{(k // 250) % 250}.{k % 250 + 1}",
                443 if kind == "outbound_internet" else 3389,
                6,
                link_id=None,
                exporter=("127.0.0.1", 0),
                first_ms=first,
                last_ms=first + (120_000 if strong else 5_000),
                flows=flows,
                packets=flows * 4,
                octets=flows * 2000,
                sample=sample,
            )
        )
    return out


def counts(session: Session) -> dict[str, int]:
    return {
        m.__name__: int(session.scalar(select(func.count()).select_from(m)) or 0)
        for m in (Observation, Detection, Case, CaseEvent, EnforcementAction, AuditEvent)
    }


def run(
    db_url: str, store_fn: StoreFn, observe_fn: ObserveFn, keys: int, chunk: int
) -> tuple[list[float], dict[str, int]]:
    inst_ids = seed(db_url)
    engine = make_engine(db_url)
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as s:
        registry = load_registry(s)
    rates = []
    for round_no in (1, 2, 3):
        aggs = aggregates(inst_ids, keys, round_no)
        start = time.perf_counter()
        for i in range(0, len(aggs), chunk):
            with factory() as s:
                observations = store_fn(s, aggs[i : i + chunk], registry, 5)
                s.commit()
                observe_fn(s, observations, actor="collector:netflow")
                s.commit()
        rates.append(len(aggs) / (time.perf_counter() - start))
    with factory() as s:
        result = counts(s)
    engine.dispose()
    return rates, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=6000)
    parser.add_argument("--chunk", type=int, default=2000)
    parser.add_argument("--pg", metavar="URL", help="also run on this empty PostgreSQL database")
    args = parser.parse_args()

    from legacy_engine import observe_one_by_one, store_one_by_one

    from collector.netflow.store import store_observations
    from rules.engine import observe

    paths: list[tuple[str, StoreFn, ObserveFn]] = [
        ("one-by-one (baseline)", store_one_by_one, observe_one_by_one),
        ("bulk", store_observations, observe),
    ]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        urls = [("sqlite", lambda name: f"sqlite:///{tmp}/{name}.db")]
        if args.pg:
            urls.append(("postgresql", lambda name: _fresh_pg(args.pg, name)))
        for backend, url_of in urls:
            print(f"\n{backend}: {args.keys} keys, chunks of {args.chunk}, observations/s")
            print(f"{'path':24} {'round 1 (new)':>14} {'round 2':>10} {'round 3':>10}")
            results: list[dict[str, Any]] = []
            base: list[float] = []
            for i, (name, store_fn, observe_fn) in enumerate(paths):
                rates, result = run(url_of(f"p{i}"), store_fn, observe_fn, args.keys, args.chunk)
                results.append(result)
                print(f"{name:24} {rates[0]:14,.0f} {rates[1]:10,.0f} {rates[2]:10,.0f}")
                if not base:
                    base = rates
                else:
                    x = [r / b for r, b in zip(rates, base, strict=True)]
                    print(f"{'x baseline':24} {x[0]:14.1f} {x[1]:10.1f} {x[2]:10.1f}")
            print("rows written:", results[0])
            if results[0] != results[-1]:
                print("MISMATCH: bulk path wrote", results[-1])
                ok = False
    return 0 if ok else 1


def _fresh_pg(base_url: str, name: str) -> str:
    """A new database ``bench_<name>`` on the server of ``base_url`` (dropped first)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(base_url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    db = f"bench_store_{name}"
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{db}"'))
        c.execute(text(f'CREATE DATABASE "{db}"'))
    admin.dispose()
    return url.set(database=db).render_as_string(hide_password=False)


if __name__ == "__main__":
    sys.exit(main())
