"""Every park at a glance, for a head office: occupancy against capacity, entries per minute, gates
online, open alerts, and the totals over the parks a person works for.

Read from what the ingest keeps (zone counts, stored passages, gate rows, alerts); one query per
figure over all the parks at once, so the page costs the same for two parks or fifty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from central.models import Alert, Gate, PassageEventRecord, Site, Zone
from protocol.clock import park_now

RATE_WINDOW = timedelta(minutes=5)  # entries per minute: the mean over the last five minutes


@dataclass(frozen=True)
class ParkFigures:
    site: str
    name: str
    timezone: str
    inside: int
    capacity: int | None  # None: a zone without a capacity, so no total limit
    entries_today: int
    exits_today: int
    entries_per_min: float
    gates_online: int
    gates: int
    open_alerts: int
    full_zones: int

    @property
    def load(self) -> float | None:
        """inside / capacity (0..1+), None without a limit."""
        return None if not self.capacity else self.inside / self.capacity


@dataclass(frozen=True)
class Overview:
    parks: list[ParkFigures]
    at: datetime

    @property
    def totals(self) -> ParkFigures:
        caps = [p.capacity for p in self.parks]
        return ParkFigures(
            site="", name="", timezone="", inside=sum(p.inside for p in self.parks),
            capacity=None if not caps or None in caps else sum(c or 0 for c in caps),
            entries_today=sum(p.entries_today for p in self.parks), exits_today=sum(p.exits_today for p in self.parks),
            entries_per_min=sum(p.entries_per_min for p in self.parks),
            gates_online=sum(p.gates_online for p in self.parks), gates=sum(p.gates for p in self.parks),
            open_alerts=sum(p.open_alerts for p in self.parks), full_zones=sum(p.full_zones for p in self.parks))


def overview(session: Session, site_ids: list[str], now: datetime | None = None) -> Overview:
    """The figures of these parks (in the order given), as the ingest last stored them."""
    now = now or park_now()  # passages carry the park's time (a simulated one in the demo)
    wanted = list(dict.fromkeys(site_ids))
    sites = {s.id: s for s in session.scalars(select(Site).where(Site.id.in_(wanted)))}
    zones: dict[str, list[Zone]] = {}
    for zone in session.scalars(select(Zone).where(Zone.site_id.in_(wanted), Zone.number.between(1, 32))):
        zones.setdefault(zone.site_id, []).append(zone)
    since = now - RATE_WINDOW
    entries = dict(session.execute(
        select(PassageEventRecord.site_id, func.coalesce(func.sum(PassageEventRecord.headcount), 0))
        .where(PassageEventRecord.site_id.in_(wanted), PassageEventRecord.at >= since,
               PassageEventRecord.at <= now, PassageEventRecord.direction == "in",
               PassageEventRecord.passed.is_(True), PassageEventRecord.flag.is_(None))
        .group_by(PassageEventRecord.site_id)).all())
    gates = {site: (int(online or 0), total) for site, online, total in session.execute(
        select(Gate.site_id, func.sum(case((Gate.online.is_(True), 1), else_=0)), func.count())
        .where(Gate.site_id.in_(wanted)).group_by(Gate.site_id)).all()}
    alerts = dict(session.execute(
        select(Alert.site_id, func.count()).where(Alert.site_id.in_(wanted), Alert.resolved_at.is_(None))
        .group_by(Alert.site_id)).all())
    parks = []
    for site_id in wanted:
        site = sites.get(site_id)
        if site is None:
            continue
        mine = zones.get(site_id, [])
        caps = [z.capacity for z in mine]
        online, total = gates.get(site_id, (0, 0))
        parks.append(ParkFigures(
            site=site_id, name=site.name or site_id, timezone=site.timezone,
            inside=sum(max(0, z.inside) for z in mine),
            capacity=None if not caps or None in caps else sum(c or 0 for c in caps),
            entries_today=sum(z.entries_today for z in mine), exits_today=sum(z.exits_today for z in mine),
            entries_per_min=round(int(entries.get(site_id, 0)) / (RATE_WINDOW.total_seconds() / 60), 1),
            gates_online=online, gates=total, open_alerts=int(alerts.get(site_id, 0)),
            full_zones=sum(1 for z in mine if z.capacity is not None and z.inside >= z.capacity)))
    return Overview(parks=parks, at=now)


__all__ = ["Overview", "ParkFigures", "overview"]
