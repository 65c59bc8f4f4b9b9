"""Live occupancy per zone and site: the counts the ingest keeps, as the `Occupancy` message.

`inside` is kept raw (entries minus exits as the central saw them, which may dip below zero when an
exit is ingested before its entry); everything shown or published uses max(0, inside).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from central.models import GateDayCount, Site, Zone
from protocol.clock import park_now
from protocol.messages import GateCounts, GateSeen, Occupancy, ZoneCount


def occupancy(session: Session, site_id: str, now: datetime | None = None) -> Occupancy:
    """The zones' counts and, for the park's day, the passages stored per gate (`GateSeen`)."""
    return occupancies(session, [site_id], now)[0]


def occupancies(session: Session, site_ids: Sequence[str], now: datetime | None = None) -> list[Occupancy]:
    """`occupancy` of several parks in three queries, whatever their number: a head office's ingest
    publishes every busy park's a few times a second (a query set per park was a third of its CPU
    with 50 parks in the head-office benchmark)."""
    now = now or park_now()
    sites = list(dict.fromkeys(site_ids))
    zones: dict[str, list] = {s: [] for s in sites}
    for z in session.execute(select(Zone.site_id, Zone.number, Zone.name, Zone.inside, Zone.entries_today,
                                    Zone.exits_today, Zone.peak, Zone.capacity)
                             .where(Zone.site_id.in_(sites)).order_by(Zone.site_id, Zone.number)):
        zones[z.site_id].append(z)
    days = {s: now.astimezone(ZoneInfo(tz)).date() for s, tz in session.execute(
        select(Site.id, Site.timezone).where(Site.id.in_(sites))) if tz}
    seen: dict[str, list[GateSeen]] = {s: [] for s in sites}
    if days:
        rows = session.execute(
            select(GateDayCount.site_id, GateDayCount.day, GateDayCount.gate, GateDayCount.zone,
                   func.sum(GateDayCount.entries), func.sum(GateDayCount.exits))
            .where(GateDayCount.site_id.in_(list(days)), GateDayCount.day.in_(set(days.values())))
            .group_by(GateDayCount.site_id, GateDayCount.day, GateDayCount.gate, GateDayCount.zone)
            .order_by(GateDayCount.site_id, GateDayCount.gate, GateDayCount.zone))
        for site, day, gate, zone, n_in, n_out in rows:
            if days.get(site) == day and len(seen[site]) < 4096:
                seen[site].append(GateSeen(gate=gate, zone=zone, entries=int(n_in), exits=int(n_out)))
    return [Occupancy(site=s, at=now, zones=[
        ZoneCount(zone=z.number, name=z.name[:256], inside=max(0, z.inside), entries_today=z.entries_today,
                  exits_today=z.exits_today, peak=z.peak, capacity=z.capacity)
        for z in zones[s] if 1 <= z.number <= 32
    ], day=days.get(s), gates=seen[s]) for s in sites]


def with_gate_counts(message: Occupancy, counts: Iterable[GateCounts]) -> tuple[Occupancy, int]:
    """The light path: `message` (what the central has stored) plus what the gates counted beyond it.

    Per gate and zone, the gate's own count of the park day (`GateCounts`) less what the central has
    stored of that gate (`message.gates`, flagged passages included) is still on its way; it is added to
    the zone's counts. Never less than stored: a gate that lost its counts, or yesterday's counts, only
    leaves the stored figures. Returns the occupancy to show and how many passages it adds (0: stored)."""
    if message.day is None:
        return message, 0
    stored = {(g.gate, g.zone): g for g in message.gates}
    ins: dict[int, int] = {}
    outs: dict[int, int] = {}
    for c in counts:
        if c.site != message.site or c.day != message.day:
            continue
        for t in c.zones:
            seen = stored.get((c.gate, t.zone))
            ins[t.zone] = ins.get(t.zone, 0) + max(0, t.entries - (seen.entries if seen else 0))
            outs[t.zone] = outs.get(t.zone, 0) + max(0, t.exits - (seen.exits if seen else 0))
    zones = []
    pending = 0
    for z in message.zones:
        d_in, d_out = ins.get(z.zone, 0), outs.get(z.zone, 0)
        if not d_in and not d_out:
            zones.append(z)
            continue
        pending += d_in + d_out
        inside = max(0, z.inside + d_in - d_out)
        zones.append(msgspec.structs.replace(z, inside=inside, entries_today=z.entries_today + d_in,
                                             exits_today=z.exits_today + d_out, peak=max(z.peak, inside)))
    return (msgspec.structs.replace(message, zones=zones) if pending else message), pending


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


def as_json(message: Occupancy, *, open_alerts: int | None = None, pending: int | None = None) -> dict:
    """The dashboard's JSON; `open_alerts` (`central.services.alerts.open_alert_count`) when given;
    `pending` (from `with_gate_counts`) says which counts these are: `source` "gates" while some of
    them are the gates' own counts the central has not stored yet, "stored" otherwise."""
    totals = site_totals(message)
    extra: dict = {} if open_alerts is None else {"open_alerts": open_alerts}
    if pending is not None:
        extra.update(source="gates" if pending else "stored", pending=pending)
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
