"""Live occupancy per zone and site: the counts the ingest keeps, as the `Occupancy` message.

`inside` is kept raw (entries minus exits as the central saw them, which may dip below zero when an
exit is ingested before its entry); everything shown or published uses max(0, inside).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.models import Zone
from protocol.clock import park_now
from protocol.messages import Occupancy, ZoneCount


def occupancy(session: Session, site_id: str, now: datetime | None = None) -> Occupancy:
    zones = session.scalars(select(Zone).where(Zone.site_id == site_id).order_by(Zone.number))
    return Occupancy(site=site_id, at=now or park_now(), zones=[
        ZoneCount(zone=z.number, name=z.name[:256], inside=max(0, z.inside), entries_today=z.entries_today,
                  exits_today=z.exits_today, peak=z.peak, capacity=z.capacity)
        for z in zones if 1 <= z.number <= 32
    ])


@dataclass(frozen=True)
class SiteTotals:
    inside: int
    entries_today: int
    exits_today: int
    capacity: int | None
    full_zones: list[int]


def site_totals(message: Occupancy) -> SiteTotals:
    caps = [z.capacity for z in message.zones]
    return SiteTotals(
        inside=sum(z.inside for z in message.zones),
        entries_today=sum(z.entries_today for z in message.zones),
        exits_today=sum(z.exits_today for z in message.zones),
        capacity=None if not caps or None in caps else sum(c for c in caps if c is not None),
        full_zones=[z.zone for z in message.zones if z.capacity is not None and z.inside >= z.capacity],
    )


def as_json(message: Occupancy, *, open_alerts: int | None = None) -> dict:
    """The dashboard's JSON; `open_alerts` (`central.services.alerts.open_alert_count`) when given."""
    totals = site_totals(message)
    extra = {} if open_alerts is None else {"open_alerts": open_alerts}
    return {
        "site": message.site,
        "at": message.at.isoformat(),
        "inside": totals.inside,
        "entries_today": totals.entries_today,
        "exits_today": totals.exits_today,
        "capacity": totals.capacity,
        "full_zones": totals.full_zones,
        "zones": [
            {"zone": z.zone, "name": z.name, "inside": z.inside, "entries_today": z.entries_today,
             "exits_today": z.exits_today, "peak": z.peak, "capacity": z.capacity,
             "full": z.capacity is not None and z.inside >= z.capacity}
            for z in message.zones
        ],
        **extra,
    }
