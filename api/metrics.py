"""Prometheus metrics for ``/metrics``.

Two sources, one text page:
- the process's default registry: the NetFlow collector's counters (collector/netflow), the
  scheduler's job counters and durations (below), Python process metrics;
- the database, read at scrape time through the request's session: cases and actions by
  state, the enforcement queue depth, detections by kind, sweeps, webhook deliveries and
  failures, job locks. Read at scrape, these are the same whichever process is scraped when
  API, worker and scheduler run as separate processes on PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core.models import (
    ActionState,
    Case,
    Deadline,
    Detection,
    EnforcementAction,
    JobLock,
    Sweep,
    WebhookDelivery,
)
from core.timeutil import as_utc, utcnow

log = logging.getLogger(__name__)

# --- process metrics (this process's scheduler) ---------------------------------------------

JOB_SECONDS = Histogram(
    "edgewarden_scheduler_job_seconds",
    "Duration of scheduled job runs in this process",
    ["job"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
)
JOB_RUNS = Counter(
    "edgewarden_scheduler_job_runs", "Job slots this process ran", ["job", "outcome"]
)
JOB_FAILURES = Counter(
    "edgewarden_scheduler_job_failures", "Job runs in this process that raised", ["job"]
)


# --- database metrics (read at scrape) ------------------------------------------------------


def _ts(value: datetime | None) -> float:
    return 0.0 if value is None else as_utc(value).timestamp()


class DatabaseCollector(Collector):
    """Computes the state gauges from the database with a handful of GROUP BY queries."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "edgewarden_metrics_database_up", "1 if the database answered this scrape"
        )
        try:
            families = list(self._families())
        except SQLAlchemyError as exc:
            log.warning("metrics: database query failed: %s", exc.__class__.__name__)
            self.session.rollback()
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _grouped(
        self, name: str, doc: str, label: str, rows: Iterable[tuple[object, int]]
    ) -> GaugeMetricFamily:
        fam = GaugeMetricFamily(name, doc, labels=[label])
        for key, count in rows:
            fam.add_metric([str(key)], count)
        return fam

    def _families(self) -> Iterator[GaugeMetricFamily]:
        s = self.session
        yield self._grouped(
            "edgewarden_cases",
            "Cases by state",
            "state",
            s.execute(select(Case.state, func.count()).group_by(Case.state)).all(),
        )
        open_cases = GaugeMetricFamily("edgewarden_cases_open", "Cases not closed")
        open_cases.add_metric([], s.scalar(select(func.count()).where(Case.is_open)) or 0)
        yield open_cases
        yield self._grouped(
            "edgewarden_actions",
            "Enforcement actions by state",
            "state",
            s.execute(
                select(EnforcementAction.state, func.count()).group_by(EnforcementAction.state)
            ).all(),
        )
        depth = GaugeMetricFamily(
            "edgewarden_action_queue_depth",
            "Approved enforcement actions waiting for the worker",
        )
        depth.add_metric(
            [],
            s.scalar(select(func.count()).where(EnforcementAction.state == ActionState.APPROVED))
            or 0,
        )
        yield depth
        yield self._grouped(
            "edgewarden_detections",
            "Detections stored, by kind",
            "kind",
            s.execute(select(Detection.kind, func.count()).group_by(Detection.kind)).all(),
        )
        overdue = GaugeMetricFamily(
            "edgewarden_deadlines_overdue", "Deadlines past due and not met"
        )
        overdue.add_metric(
            [],
            s.scalar(
                select(func.count()).where(Deadline.met_at.is_(None), Deadline.due_at < utcnow())
            )
            or 0,
        )
        yield overdue
        yield from self._sweeps(s)
        yield from self._webhooks(s)
        yield from self._jobs(s)

    def _sweeps(self, s: Session) -> Iterator[GaugeMetricFamily]:
        yield self._grouped(
            "edgewarden_sweeps",
            "SNMP sweeps by status",
            "status",
            s.execute(select(Sweep.status, func.count()).group_by(Sweep.status)).all(),
        )
        last = s.execute(
            select(Sweep.started_at, Sweep.finished_at)
            .where(Sweep.finished_at.is_not(None))
            .order_by(Sweep.finished_at.desc())
            .limit(1)
        ).first()
        duration = GaugeMetricFamily(
            "edgewarden_sweep_last_duration_seconds", "Duration of the last finished SNMP sweep"
        )
        finished = GaugeMetricFamily(
            "edgewarden_sweep_last_finished_timestamp_seconds",
            "When the last SNMP sweep finished (Unix time)",
        )
        if last is not None:
            duration.add_metric([], _ts(last.finished_at) - _ts(last.started_at))
            finished.add_metric([], _ts(last.finished_at))
        yield duration
        yield finished
        recent = s.execute(
            select(Sweep.started_at, Sweep.finished_at)
            .where(Sweep.finished_at.is_not(None))
            .order_by(Sweep.finished_at.desc())
            .limit(100)
        ).all()
        if recent:
            durations = sorted(_ts(f) - _ts(st) for st, f in recent)
            top = GaugeMetricFamily(
                "edgewarden_sweep_duration_seconds_max",
                "Longest of the last 100 finished SNMP sweeps",
            )
            top.add_metric([], durations[-1])
            yield top

    def _webhooks(self, s: Session) -> Iterator[GaugeMetricFamily]:
        yield self._grouped(
            "edgewarden_webhook_deliveries",
            "Webhook deliveries by state (dead = the dead-letter list)",
            "state",
            s.execute(
                select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)
            ).all(),
        )
        failing = GaugeMetricFamily(
            "edgewarden_webhook_failures",
            "Webhook deliveries whose last attempt failed: retrying (still pending) or dead",
            labels=["kind"],
        )
        retrying = s.scalar(
            select(func.count()).where(
                WebhookDelivery.state == "pending", WebhookDelivery.attempts > 0
            )
        )
        dead = s.scalar(select(func.count()).where(WebhookDelivery.state == "dead"))
        failing.add_metric(["retrying"], retrying or 0)
        failing.add_metric(["dead"], dead or 0)
        yield failing

    def _jobs(self, s: Session) -> Iterator[GaugeMetricFamily]:
        runs = GaugeMetricFamily(
            "edgewarden_job_runs", "Slots each scheduled job ran (all instances)", labels=["job"]
        )
        failed = GaugeMetricFamily(
            "edgewarden_job_last_failed", "1 if the job's last run failed", labels=["job"]
        )
        finished = GaugeMetricFamily(
            "edgewarden_job_last_finished_timestamp_seconds",
            "When the job last finished (Unix time)",
            labels=["job"],
        )
        for row in s.scalars(select(JobLock).order_by(JobLock.name)):
            runs.add_metric([row.name], row.runs or 0)
            failed.add_metric([row.name], 1 if row.last_status == "failed" else 0)
            finished.add_metric([row.name], _ts(row.last_finished_at))
        yield runs
        yield failed
        yield finished


def render(session: Session) -> bytes:
    """The whole ``/metrics`` page: process registry, then the database gauges."""
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(DatabaseCollector(session))
    return generate_latest(REGISTRY) + generate_latest(scrape)
