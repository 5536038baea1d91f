"""Vectorized aggregation: sums, time bounds and bounded evidence across batches; the key
limit drops (and counts) flows instead of growing; drain starts empty. Plus the listener's
bounded hand-over queue."""

from __future__ import annotations

import numpy as np

from collector.netflow.aggregate import Aggregator
from collector.netflow.batch import FLOW_DTYPE, FlowBatch, parse_address
from collector.netflow.classify import CANDIDATE_DTYPE, KIND_CODE

EXP = ("192.0.2.1", 7)


def _batch(flows: list[tuple[str, str, int, int, int]]) -> FlowBatch:
    """(src, dst, dst_port, packets, first_ms) per record, TCP, one exporter."""
    recs = np.zeros(len(flows), FLOW_DTYPE)
    for i, (src, dst, port, packets, first) in enumerate(flows):
        recs[i]["src_hi"], recs[i]["src_lo"] = parse_address(src)
        recs[i]["dst_hi"], recs[i]["dst_lo"] = parse_address(dst)
        recs[i]["dst_port"] = port
        recs[i]["protocol"] = 6
        recs[i]["version"] = 9
        recs[i]["packets"] = packets
        recs[i]["octets"] = packets * 100
        recs[i]["first_ms"] = first
        recs[i]["last_ms"] = first + 10
    return FlowBatch.from_records(recs, [EXP])


def _candidates(n: int, institution: int = 3, kind: str = "outbound_internet") -> np.ndarray:
    c = np.zeros(n, CANDIDATE_DTYPE)
    c["row"] = np.arange(n)
    c["kind"] = KIND_CODE[kind]
    c["institution"] = institution
    c["link"] = -1
    return c


def test_fold_sums_times_and_samples_across_batches() -> None:
    agg = Aggregator(sample_size=2)
    flows = [
        ("10.0.0.1", "203.0.113.9", 443, 2, 1000),
        ("10.0.0.1", "203.0.113.9", 443, 3, 500),
        ("10.0.0.2", "2001:db8::1", 3389, 1, 2000),
    ]
    for _ in range(3):
        b = _batch(flows)
        agg.fold(b, _candidates(len(b)))
    out = {a.key: a for a in agg.drain()}
    web = out[(3, "outbound_internet", "10.0.0.1", "203.0.113.9", 443, 6)]
    assert (web.flows, web.packets, web.octets) == (6, 15, 1500)
    assert (web.first_ms, web.last_ms) == (500, 1010)
    assert web.exporter == EXP and web.link_id is None
    assert len(web.sample) == 2  # bounded, one per batch until full
    assert web.sample[0]["dst_addr"] == "203.0.113.9" and web.sample[0]["exporter"] == EXP[0]
    v6 = out[(3, "outbound_internet", "10.0.0.2", "2001:db8::1", 3389, 6)]
    assert (v6.flows, v6.packets) == (3, 3)
    assert len(out) == 2
    assert agg.drain() == [] and len(agg) == 0


def test_key_limit_counts_dropped_flows_and_keeps_known_keys() -> None:
    agg = Aggregator(max_keys=2)
    first = _batch([("10.0.0.1", f"203.0.113.{i}", 80, 1, 0) for i in range(2)])
    agg.fold(first, _candidates(2))
    more = _batch([("10.0.0.1", f"203.0.113.{i}", 80, 1, 0) for i in range(5)] * 2)
    agg.fold(more, _candidates(10))
    assert agg.dropped_flows == 6  # 3 new keys x 2 flows
    out = agg.drain()
    assert sorted(a.flows for a in out) == [3, 3]
    agg.fold(more, _candidates(10))  # after a drain there is room again
    assert len(agg) == 2


def test_growth_beyond_initial_capacity_keeps_earlier_keys() -> None:
    agg = Aggregator(max_keys=5000)
    flows = [("10.0.0.1", f"198.51.{i // 256}.{i % 256}", 80, 1, 0) for i in range(3000)]
    agg.fold(_batch(flows[:1000]), _candidates(1000))
    agg.fold(_batch(flows), _candidates(3000))
    out = agg.drain()
    assert len(out) == 3000
    assert sorted({a.flows for a in out}) == [1, 2]
    assert sum(a.flows for a in out) == 4000


def test_listener_queue_is_bounded_and_drops_are_counted() -> None:
    from collector.netflow.listener import NetflowListener
    from collector.netflow.pipeline import PipelineStats

    class _Sink:  # stands in for the pipeline's bookkeeping only; no peer involved
        def __init__(self) -> None:
            self.stats = PipelineStats()
            self.seen = 0

        def process(self, batch: list[tuple[bytes, str]]) -> None:
            self.seen += len(batch)

    sink = _Sink()
    listener = NetflowListener(sink, "127.0.0.1", [0], max_queue=3)  # type: ignore[arg-type]
    for _ in range(5):
        listener.enqueue(b"x", "127.0.0.1")
    assert listener.queued == 3 and sink.stats.queue_dropped == 2
    assert listener.drain() == 3 and sink.seen == 3 and listener.queued == 0
