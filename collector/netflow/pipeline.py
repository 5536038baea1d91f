"""receive → decode → classify → aggregate → store, synchronous and batch-at-a-time.

:meth:`Pipeline.process` is the in-memory part (called by the UDP listener for each batch of
datagrams, or by anything else that has datagrams, e.g. a Kafka consumer); :meth:`take` +
:meth:`write` move the aggregates into the database and hand them to the rules engine.
Only datagrams from registered, enabled exporters are decoded; others are counted per source
and raise one alert per source.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from prometheus_client import REGISTRY, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

from collector.netflow.aggregate import Aggregate, Aggregator, Drained
from collector.netflow.batch import FlowBatch
from collector.netflow.classify import Classifier
from collector.netflow.decoder import Decoder
from collector.netflow.store import (
    ACTOR,
    ExporterRegistry,
    alert_unknown_exporter,
    load_classifier,
    load_registry,
    store_observations,
)
from collector.netflow.templates import TemplateCache

log = logging.getLogger(__name__)

BATCH_SECONDS = Histogram(
    "edgewarden_netflow_batch_seconds",
    "Time to decode, classify and aggregate one batch of datagrams",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
_MAX_SOURCE_LABELS = 1000


@dataclass
class PipelineStats:
    unknown_sources: Counter[str] = field(default_factory=Counter)
    unregistered_records: int = 0  # registered address, unregistered observation domain
    queue_dropped: int = 0  # datagrams the listener could not queue
    observations_written: int = 0
    detections: int = 0
    store_errors: int = 0
    # the receiver processes' own counters ("host:port" -> datagrams, bytes, dropped,
    # truncated, kernel), as their last stats frame reported them
    receivers: dict[str, dict[str, int]] = field(default_factory=dict)


class Pipeline:
    def __init__(
        self,
        session_factory: Callable[[], Session],
        policy_name: str,
        *,
        template_path: Path | None = None,
        max_keys: int = 100_000,
        sample_size: int = 5,
        write_chunk: int = 2000,
        reload_interval: float = 60.0,
    ) -> None:
        self.write_chunk = write_chunk
        self.reload_interval = reload_interval
        self._loaded_at = 0.0
        self.session_factory = session_factory
        self.policy_name = policy_name
        self.template_path = template_path
        cache = TemplateCache()
        if template_path is not None:
            try:
                cache = TemplateCache.load(template_path)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("template cache %s unreadable (%s): starting empty", template_path, exc)
        self.decoder = Decoder(cache)
        self.aggregator = Aggregator(max_keys=max_keys, sample_size=sample_size)
        self.sample_size = sample_size
        self.stats = PipelineStats()
        self.registry = ExporterRegistry()
        self.classifier: Classifier = Classifier.build(allocations=(), backbone=())
        self._alerted: set[str] = set()
        self._alerts: list[str] = []
        self.reload()
        _PIPELINES.add(self)

    def reload(self) -> None:
        """Re-read exporters, allocations, backbone prefixes, the ingress map (interfaces
        mapped to links) and the policy's signatures; swapped in whole, so a batch being
        classified meanwhile uses the old or the new tables, never a mix."""
        with self.session_factory() as session:
            registry = load_registry(session)
            classifier = load_classifier(session, self.policy_name, registry)
        self.registry, self.classifier = registry, classifier
        self.decoder.default_sampling = registry.sampling()
        self._loaded_at = time.monotonic()

    def reload_if_due(self) -> bool:
        """:meth:`reload` when ``reload_interval`` has passed (the listener calls this from its
        writer thread, so inventory changes such as new interfaces reach the classifier);
        a failed reload is logged and the old tables stay."""
        if time.monotonic() - self._loaded_at < self.reload_interval:
            return False
        try:
            self.reload()
        except Exception:
            self._loaded_at = time.monotonic()  # retry after another interval, not per batch
            log.exception("reloading NetFlow classification tables failed; keeping the old")
            return False
        return True

    # -- in memory ---------------------------------------------------------------------------
    def process(self, datagrams: Iterable[tuple[bytes, str]]) -> FlowBatch:
        """Decode, classify and fold one batch; returns the accepted flow records."""
        start = time.perf_counter()
        knows = self.registry.knows
        accepted = []
        unknown = self.stats.unknown_sources
        for item in datagrams:
            if knows(item[1]):
                accepted.append(item)
            else:
                addr = item[1]
                unknown[addr] += 1
                if addr not in self._alerted:
                    self._alerted.add(addr)
                    self._alerts.append(addr)
        batch = self._registered_only(self.decoder.decode(accepted))
        self.aggregator.fold(batch, self.classifier.classify(batch))
        BATCH_SECONDS.observe(time.perf_counter() - start)
        return batch

    def _registered_only(self, batch: FlowBatch) -> FlowBatch:
        if not len(batch):
            return batch
        exact = np.array(
            [self.registry.match(a, d, 9) is not None for a, d in batch.exporters], bool
        )
        by_address = np.array(
            [self.registry.match(a, d, 5) is not None for a, d in batch.exporters], bool
        )
        exp = batch["exporter"]
        ok = np.where(batch["version"] == 5, by_address[exp], exact[exp])
        if ok.all():
            return batch
        self.stats.unregistered_records += int((~ok).sum())
        return batch.select(ok)

    # -- to the database ---------------------------------------------------------------------
    def take(self) -> tuple[Drained, list[str]]:
        """Detach what is to be written (call from the thread that calls process)."""
        alerts, self._alerts = self._alerts, []
        return self.aggregator.detach(), alerts

    def write(
        self,
        aggregates: Drained | Sequence[Aggregate],
        alerts: Sequence[str],
        between_chunks: Callable[[], None] | None = None,
    ) -> int:
        """Store observations (committed first), then let the rules engine judge them; in
        chunks of ``write_chunk`` keys, each its own transaction, so the ORM objects of one
        chunk are all that a large flush holds in memory. ``between_chunks`` runs before
        each chunk (the listener uses it to let decoding catch up first)."""
        from rules.engine import observe

        if not len(aggregates) and not alerts:
            return 0
        if isinstance(aggregates, Drained):
            chunks: Iterable[Sequence[Aggregate]] = aggregates.chunks(self.write_chunk)
        else:
            chunks = (
                aggregates[i : i + self.write_chunk]
                for i in range(0, len(aggregates), self.write_chunk)
            )
        written = 0
        try:
            with self.session_factory() as session:
                for addr in alerts:
                    alert_unknown_exporter(session, addr, self.stats.unknown_sources[addr])
                session.commit()
            for chunk in chunks:
                if between_chunks is not None:
                    between_chunks()
                with self.session_factory() as session:
                    observations = store_observations(
                        session, chunk, self.registry, self.sample_size
                    )
                    session.commit()
                    detections = observe(session, observations, actor=ACTOR)
                    session.commit()
                written += len(observations)
                self.stats.observations_written += len(observations)
                self.stats.detections += len(detections)
        except Exception:
            self.stats.store_errors += 1
            log.exception("storing %d NetFlow observations failed", len(aggregates) - written)
            raise
        return written

    def flush(self) -> int:
        """take() + write() + save templates, for callers without a separate writer thread."""
        aggregates, alerts = self.take()
        written = self.write(aggregates, alerts)
        self.save_templates()
        return written

    def save_templates(self) -> None:
        if self.template_path is not None and self.decoder.cache.dirty:
            try:
                self.decoder.cache.save(self.template_path)
            except OSError as exc:
                log.warning("cannot save NetFlow templates to %s: %s", self.template_path, exc)


_PIPELINES: weakref.WeakSet[Pipeline] = weakref.WeakSet()


class _Metrics(Collector):
    """Exports the counters the pipelines keep as plain ints (no cost in the hot path)."""

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        pipes = list(_PIPELINES)
        dg = CounterMetricFamily(
            "edgewarden_netflow_datagrams", "Datagrams decoded", labels=["version"]
        )
        rec = CounterMetricFamily("edgewarden_netflow_records", "Flow records", labels=["version"])
        err = CounterMetricFamily(
            "edgewarden_netflow_decode_errors", "Malformed input dropped", labels=["kind"]
        )
        unk = CounterMetricFamily(
            "edgewarden_netflow_unknown_exporter_datagrams",
            "Datagrams from unregistered sources, dropped",
            labels=["source"],
        )
        gaps = CounterMetricFamily(
            "edgewarden_netflow_sequence_gaps", "Sequence gaps per exporter", labels=["exporter"]
        )
        lost = CounterMetricFamily(
            "edgewarden_netflow_sequence_lost",
            "Records/datagrams lost per exporter (sequence)",
            labels=["exporter"],
        )
        misses = CounterMetricFamily(
            "edgewarden_netflow_template_misses", "Data sets that arrived before their template"
        )
        pend = CounterMetricFamily(
            "edgewarden_netflow_pending_dropped", "Held data sets dropped (buffer full)"
        )
        aggd = CounterMetricFamily(
            "edgewarden_netflow_aggregate_dropped_flows", "Flows not aggregated (key limit)"
        )
        qd = CounterMetricFamily(
            "edgewarden_netflow_queue_dropped", "Datagrams dropped before decoding (queue full)"
        )
        obs = CounterMetricFamily("edgewarden_netflow_observations", "Observations written")
        rxd = CounterMetricFamily(
            "edgewarden_netflow_receiver_datagrams",
            "Datagrams read by the receiver processes",
            labels=["listener"],
        )
        rxx = CounterMetricFamily(
            "edgewarden_netflow_receiver_dropped",
            "Datagrams lost before decoding: receiver backlog full, longer than the receive "
            "buffer, or dropped by the kernel (socket buffer full)",
            labels=["listener", "reason"],
        )
        for p in pipes:
            for where, c in list(p.stats.receivers.items()):
                rxd.add_metric([where], c.get("datagrams", 0))
                for reason, key in (("backlog", "dropped"), ("truncated", "truncated")):
                    rxx.add_metric([where, reason], c.get(key, 0))
                rxx.add_metric([where, "kernel"], c.get("kernel", 0))
        yield rxd
        yield rxx
        sums: dict[str, Counter[str]] = {
            k: Counter() for k in ("dg", "rec", "err", "unk", "gap", "lost")
        }
        m = Counter[str]()
        for p in pipes:
            s = p.decoder.stats
            sums["dg"].update({str(k): v for k, v in s.datagrams.items()})
            sums["rec"].update({str(k): v for k, v in s.records.items()})
            sums["err"].update(s.errors)
            for i, (src, n) in enumerate(p.stats.unknown_sources.most_common()):
                sums["unk"][src if i < _MAX_SOURCE_LABELS else "other"] += n
            sums["gap"].update({f"{a}/{d}": v for (a, d), v in s.sequence_gaps.items()})
            sums["lost"].update({f"{a}/{d}": v for (a, d), v in s.sequence_lost.items()})
            m["misses"] += s.template_misses
            m["pend"] += s.pending_dropped
            m["aggd"] += p.aggregator.dropped_flows
            m["qd"] += p.stats.queue_dropped
            m["obs"] += p.stats.observations_written
        for fam, key in (
            (dg, "dg"),
            (rec, "rec"),
            (err, "err"),
            (unk, "unk"),
            (gaps, "gap"),
            (lost, "lost"),
        ):
            for label, value in sums[key].items():
                fam.add_metric([label], value)
            yield fam
        for fam, key in (
            (misses, "misses"),
            (pend, "pend"),
            (aggd, "aggd"),
            (qd, "qd"),
            (obs, "obs"),
        ):
            fam.add_metric([], m[key])
            yield fam


REGISTRY.register(_Metrics())
