"""The central's Prometheus metrics: what its processes count, and what the database says at scrape time.

    counted in the process (prometheus_client; several processes: multiprocess mode, one file per process)
        park_passages_total{site,zone,direction}   counted passages, after the ingest's commit
        park_refusals_total{site,reason}           counted refusals, by reason code
        park_ingest_events_total{outcome}          stored, duplicate, parked, conflict, flagged
        park_ingest_lag_seconds                    per batch: its oldest online event, gate clock to commit
        park_ingest_batch_seconds                  one batch's transaction
        park_claim_seconds                         one claim, from the queue to the reply
        park_claims_total{outcome}                 granted, refused, late, invalid, error
        park_http_requests_total{endpoint,status}  and park_http_request_seconds{endpoint}
        park_scheduler_runs_total{job,outcome}     and park_scheduler_job_seconds{job}
        park_alert_notifications_total{channel,outcome}
    read from the database at each scrape (`DatabaseCollector`: the truth, whichever process wrote it)
        park_zone_occupancy{site,zone}  park_zone_capacity{site,zone}  park_gate_up{site,gate}
        park_gate_outbox_events{site,gate} (as the gate last reported)  park_conflicts_total{site}
        park_parked_messages  park_parked_messages_bytes  park_claim_deadline_seconds{site}
        park_alerts_open{site,kind}

Labels are codes and names of places (site, zone number, gate, reason code, endpoint): never a person,
a ticket code or a credential. Several ingest workers, claim servers and the scheduler each count in
their own process; with `PROMETHEUS_MULTIPROC_DIR` set (the systemd units set it, or `[metrics]
multiprocess_dir`), prometheus_client writes each process's values to a file there and the web
process's /metrics adds them up (`render`).
"""

from __future__ import annotations

import os
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

PASSAGES = Counter("park_passages", "Passages counted by the central, after the ingest's commit",
                   ["site", "zone", "direction"])
REFUSALS = Counter("park_refusals", "Refusals counted by the central, by reason code", ["site", "reason"])
INGEST_EVENTS = Counter("park_ingest_events", "Gate passage events the ingest handled, by outcome", ["outcome"])
INGEST_LAG = Histogram("park_ingest_lag_seconds",
                       "Per batch: how long its oldest online event took from the gate's clock to the commit",
                       buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
INGEST_BATCH = Histogram("park_ingest_batch_seconds", "One ingest batch's transaction",
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
CLAIM_SECONDS = Histogram("park_claim_seconds", "One central claim, from the queue to the reply",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2.5))
CLAIMS = Counter("park_claims", "Central claims, by outcome", ["outcome"])
HTTP_REQUESTS = Counter("park_http_requests", "Web requests, by view and status", ["endpoint", "status"])
HTTP_SECONDS = Histogram("park_http_request_seconds", "Web request time, by view", ["endpoint"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))
SCHEDULER_RUNS = Counter("park_scheduler_runs", "Scheduled job runs, by outcome", ["job", "outcome"])
SCHEDULER_SECONDS = Histogram("park_scheduler_job_seconds", "Scheduled job time", ["job"],
                              buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120))
NOTIFICATIONS = Counter("park_alert_notifications", "Alert notices sent by the central itself",
                        ["channel", "outcome"])


def prepare(multiprocess_dir: str | None) -> None:
    """Before a service counts anything: with a folder, every process of the central counts into it."""
    if not multiprocess_dir and not os.environ.get(MULTIPROC_ENV):
        return
    folder = os.environ.setdefault(MULTIPROC_ENV, multiprocess_dir or "")
    Path(folder).mkdir(parents=True, exist_ok=True)
    _forget_dead(Path(folder))
    from prometheus_client import values

    values.ValueClass = values.get_value_class()
    # The metrics above were made before the variable was set: those without labels hold their values
    # already (the labelled ones make theirs at first use), so they are made afresh in the new mode.
    for metric in (INGEST_LAG, INGEST_BATCH, CLAIM_SECONDS):
        metric._metric_init()


def _forget_dead(folder: Path) -> None:
    """Drop the files of processes that are gone (prometheus_client names them <kind>_<pid>.db), so the
    folder does not grow with every restart; their counts leave the sums, which Prometheus reads as a
    counter reset (rate() and increase() allow for it)."""
    for path in folder.glob("*.db"):
        pid = path.stem.rpartition("_")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, as another user


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def count_batch(counted: Iterable, *, stored: int, duplicates: int, conflicts: int, flagged: int, parked: int,
                committed_at: float, batch_s: float) -> None:
    """One committed ingest batch: tallied first, so a batch of 500 events is a few increments."""
    passages: Tally[tuple[str, str, str]] = Tally()
    refusals: Tally[tuple[str, str]] = Tally()
    oldest: float | None = None
    for e in counted:
        if e.passed:
            passages[(e.site, str(e.zone), e.direction)] += e.headcount or 1
        elif e.decision == "refused":
            refusals[(e.site, e.reason or "unknown")] += 1
        if not e.offline:
            at = e.at.timestamp()
            oldest = at if oldest is None or at < oldest else oldest
    for labels, n in passages.items():
        PASSAGES.labels(*labels).inc(n)
    for reason_labels, n in refusals.items():
        REFUSALS.labels(*reason_labels).inc(n)
    for outcome, n in (("stored", stored), ("duplicate", duplicates), ("conflict", conflicts),
                       ("flagged", flagged), ("parked", parked)):
        if n:
            INGEST_EVENTS.labels(outcome).inc(n)
    INGEST_BATCH.observe(batch_s)
    if oldest is not None:
        INGEST_LAG.observe(max(0.0, committed_at - oldest))


class DatabaseCollector(Collector):
    """Gauges whose truth is the database, read at scrape time (one short read-only transaction)."""

    def __init__(self, sessions) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        from central.services.observability import scrape_facts

        with self.sessions() as session:
            facts = scrape_facts(session)
        occupancy = GaugeMetricFamily("park_zone_occupancy", "Visitors inside a zone now",
                                      labels=["site", "zone"])
        capacity = GaugeMetricFamily("park_zone_capacity", "A zone's capacity (zones without one are left out)",
                                     labels=["site", "zone"])
        for z in facts.zones:
            occupancy.add_metric([z.site, str(z.zone)], z.inside)
            if z.capacity:
                capacity.add_metric([z.site, str(z.zone)], z.capacity)
        up = GaugeMetricFamily("park_gate_up", "1 while the gate's heartbeat arrives, 0 once it is missed",
                               labels=["site", "gate"])
        outbox = GaugeMetricFamily("park_gate_outbox_events",
                                   "Events a gate holds for the central (its last status)", labels=["site", "gate"])
        for g in facts.gates:
            up.add_metric([g.site, g.gate], 1 if g.online else 0)
            outbox.add_metric([g.site, g.gate], g.outbox)
        conflicts = CounterMetricFamily("park_conflicts", "Passages the central's rules would have refused "
                                        "(what offline gates could not see)", labels=["site"])
        deadline = GaugeMetricFamily("park_claim_deadline_seconds", "The site's claim deadline", labels=["site"])
        for site, n in facts.conflicts.items():
            conflicts.add_metric([site], n)
        for site, ms in facts.claim_deadlines.items():
            deadline.add_metric([site], ms / 1000)
        parked = GaugeMetricFamily("park_parked_messages", "Messages the ingest could not store, kept for a look",
                                   value=facts.parked)
        parked_bytes = GaugeMetricFamily("park_parked_messages_bytes", "The parked messages' stored payload bytes",
                                         value=facts.parked_bytes)
        alerts = GaugeMetricFamily("park_alerts_open", "Open alerts, by kind", labels=["site", "kind"])
        for (site, kind), n in facts.alerts.items():
            alerts.add_metric([site, kind], n)
        yield from (occupancy, capacity, up, outbox, conflicts, deadline, parked, parked_bytes, alerts)


class _Default(Collector):
    """This process's own metrics (single-process mode): the default registry's."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def render(sessions) -> tuple[bytes, str]:
    """The /metrics body: every process's counts (multiprocess mode) or this one's, and the database's."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.MultiProcessCollector(registry)
    else:
        registry.register(_Default())
    registry.register(DatabaseCollector(sessions))
    return generate_latest(registry), CONTENT_TYPE_LATEST


__all__ = ["CLAIMS", "CLAIM_SECONDS", "HTTP_REQUESTS", "HTTP_SECONDS", "INGEST_BATCH", "INGEST_EVENTS",
           "INGEST_LAG", "NOTIFICATIONS", "PASSAGES", "REFUSALS", "SCHEDULER_RUNS", "SCHEDULER_SECONDS",
           "DatabaseCollector", "count_batch", "multiprocess", "prepare", "render"]
