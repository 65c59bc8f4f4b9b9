"""Scheduled jobs: heartbeat timeouts, the daily roll-over, expiry, template retention, re-publishing.

Each job is a plain function over a session (tests call them directly with a chosen `now`);
`build_scheduler(context)` wires them into an APScheduler BackgroundScheduler.

The roll-over runs at each site's local midnight (checked every minute by default, so a central that was down
at midnight closes the day when it comes back): every zone's day is closed into a DailyReport, the
day's counts reset, and visitors still inside are carried over into the new day (`inside` is kept
and reported as `carried_over`; the new day's peak starts from it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from central import metrics
from central.models import DailyReport, DenialCount, Gate, Site, Zone
from central.services.audit import audit
from central.services.gates import mark_stale_gates_offline
from central.services.partitions import partition_job
from central.services.passes import expire_passes, purge_templates
from central.services.tickets import expire_tickets
from protocol.clock import park_now

log = logging.getLogger(__name__)


def roll_over(session: Session, site_id: str, now: datetime | None = None) -> list[DailyReport]:
    """Close the site's business day if its local midnight has passed; returns the reports written.

    Visitors still inside are reported (`carried_over`) and then, by the site's `overnight` setting,
    carried out (the count starts the day at zero) or carried over into the new day."""
    now = now or park_now()
    site = session.get(Site, site_id, with_for_update=True)
    if site is None:
        return []
    today = now.astimezone(ZoneInfo(site.timezone)).date()
    if site.business_date is None:
        site.business_date = today
        return []
    if site.business_date >= today:
        return []
    day = site.business_date
    zones = session.scalars(select(Zone).where(Zone.site_id == site_id).order_by(Zone.number).with_for_update())
    denials: dict[int, dict[str, int]] = {}
    for row in session.scalars(select(DenialCount).where(DenialCount.site_id == site_id, DenialCount.day == day)):
        denials.setdefault(row.zone, {})[row.reason] = row.count
    reports = []
    for zone in zones:
        carried = max(0, zone.inside)
        existing = session.scalar(select(DailyReport).where(
            DailyReport.site_id == site_id, DailyReport.day == day, DailyReport.zone == zone.number))
        if existing is None:
            report = DailyReport(site_id=site_id, day=day, zone=zone.number, entries=zone.entries_today,
                                 exits=zone.exits_today, refused=zone.refused_today, peak=zone.peak,
                                 carried_over=carried, denials=denials.get(zone.number, {}))
            session.add(report)
            reports.append(report)
        zone.inside = carried if site.overnight == "carry_over" else 0
        zone.entries_today = 0
        zone.exits_today = 0
        zone.refused_today = 0
        zone.peak = zone.inside
        zone.updated_at = now
    site.business_date = today
    audit(session, None, "day.close", f"{site_id}/{day.isoformat()}", overnight=site.overnight,
          still_inside=sum(r.carried_over for r in reports))
    session.flush()
    return reports


def roll_over_all(session: Session, now: datetime | None = None, skip: Collection[str] = ()) -> list[DailyReport]:
    """`skip`: parks whose own server closes their day (a head office's park servers: their reports come
    with the replication)."""
    reports: list[DailyReport] = []
    for site_id in session.scalars(select(Site.id)).all():
        if site_id not in skip:
            reports.extend(roll_over(session, site_id, now))
    return reports


def heartbeat_check(session: Session, timeout_s: int, now: datetime | None = None,
                    skip: Collection[str] = ()) -> list[Gate]:
    """Mark gates silent for `timeout_s` offline and raise the alert (log + audit); `skip`: parks whose gates
    another server hears (their state comes with the replication)."""
    stale = mark_stale_gates_offline(session, timeout_s, now, skip)
    for gate in stale:
        log.warning("ALERT gate %s/%s offline: no heartbeat for %ss", gate.site_id, gate.name, timeout_s,
                    extra={"site": gate.site_id, "gate": gate.name})
    return stale


def expire(session: Session, now: datetime | None = None) -> tuple[int, int]:
    """Tickets and passes past their validity become expired; returns (tickets, passes)."""
    return expire_tickets(session, now), len(expire_passes(session, now))


def retention(session: Session, retention_days: int, now: datetime | None = None) -> list[int]:
    return purge_templates(session, retention_days, now)


def lagging_gates(session: Session) -> list[tuple[str, str]]:
    """Online gates whose reported store sequence is behind their site's: they get a full snapshot."""
    rows = session.execute(select(Gate.site_id, Gate.name).join(Site, Site.id == Gate.site_id)
                           .where(Gate.online.is_(True), Gate.store_seq < Site.sync_seq))
    return [(s, g) for s, g in rows]


def alert_round(sessions, cfg, now: datetime | None = None, skip: Collection[str] = (),
                peers: dict[str, tuple[str, ...] | None] | None = None, home: Collection[str] = ()) -> list:
    """The central's own alerts (central.services.alerting): check, then send what is new; returns what was sent.

    The notices go out between two transactions: no database lock waits on a webhook."""
    from central.services import alerting

    with sessions.begin() as session:
        alerting.check(session, cfg, now, skip, peers, home)
    with sessions() as session:
        notices = alerting.pending(session)
    if not notices:
        return []
    sent = alerting.deliver(notices, cfg, count=lambda channel, outcome: metrics.NOTIFICATIONS.labels(
        channel, outcome).inc())
    with sessions.begin() as session:
        alerting.mark_sent(session, sent)
    return sent


def build_scheduler(context):
    """An APScheduler BackgroundScheduler running every job against `context` (a CentralContext)."""
    from apscheduler.schedulers.background import BackgroundScheduler

    cfg = context.config.jobs
    sessions = context.sessions
    # A head office's park servers close their parks' days, watch their gates and raise their alerts.
    remote = frozenset(context.config.replication.remote_sites())
    # ... and the link with each replicating server is watched on both sides (alert "link_down").
    peers = context.config.replication.peers() if context.config.replication.enabled else {}
    home = sorted(context.config.home_sites() or ())

    def in_tx(fn, *args):
        def run():
            started, outcome = time.perf_counter(), "ok"
            try:
                with sessions.begin() as session:
                    fn(session, *args)
            except Exception:
                outcome = "failed"
                log.exception("scheduled job %s failed", fn.__name__)
            context.publisher.flush()
            metrics.SCHEDULER_RUNS.labels(fn.__name__, outcome).inc()
            metrics.SCHEDULER_SECONDS.labels(fn.__name__).observe(time.perf_counter() - started)
        run.__name__ = fn.__name__
        return run

    def snapshots():
        with sessions() as session:
            gates = lagging_gates(session)
        for site_id, gate in gates:
            try:
                context.publisher.send_snapshot(site_id, gate)
            except Exception:
                log.exception("snapshot for %s/%s failed", site_id, gate)

    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
    scheduler.add_job(in_tx(heartbeat_check, cfg.heartbeat_timeout_s, None, remote), "interval",
                      seconds=max(1, min(10, cfg.heartbeat_timeout_s // 3)), id="heartbeat")
    scheduler.add_job(in_tx(roll_over_all, None, remote), "interval", seconds=cfg.roll_over_check_s, id="roll_over")

    def alerts():
        started, outcome = time.perf_counter(), "ok"
        try:
            alert_round(sessions, context.config.alerts, None, remote, peers, home)
        except Exception:
            outcome = "failed"
            log.exception("scheduled job alerts failed")
        metrics.SCHEDULER_RUNS.labels("alerts", outcome).inc()
        metrics.SCHEDULER_SECONDS.labels("alerts").observe(time.perf_counter() - started)

    scheduler.add_job(alerts, "interval", seconds=context.config.alerts.interval_s, id="alerts")
    scheduler.add_job(in_tx(expire), "interval", minutes=10, id="expire")
    scheduler.add_job(in_tx(retention, cfg.template_retention_days), "interval", hours=1, id="retention")
    scheduler.add_job(context.publisher.flush, "interval", seconds=cfg.publish_interval_s, id="publish")
    scheduler.add_job(snapshots, "interval", seconds=cfg.snapshot_interval_s, id="snapshots")
    from central.services.visitor_bookings import face_round_all, purge_all

    # Visitor bookings: names and document digests go `retention_days` after the visit, as the notice says.
    scheduler.add_job(in_tx(purge_all, None, remote), "interval", hours=1, id="booking_retention")
    # Face entry: the visit day's faces onto the gates in the day's first minutes, past days' deleted.
    scheduler.add_job(in_tx(face_round_all, None, remote), "interval", minutes=5, id="booking_faces",
                      next_run_time=datetime.now(UTC))

    database = context.config.database
    scheduler.add_job(in_tx(partition_job, database.partition_months_ahead, database.retention_months), "interval",
                      hours=6, id="partitions", next_run_time=datetime.now(UTC))
    return scheduler
