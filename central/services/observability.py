"""What the database says about the park's health, read at once: for /metrics and the central's own alerts.

`scrape_facts(session)` is a handful of aggregate reads (zones, gates, conflicts per site, parked
messages, open alerts); nothing personal is read: names of places, counts and codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from central.models import Alert, Conflict, Gate, ParkedMessage, Site, Zone


@dataclass(frozen=True)
class ZoneFact:
    site: str
    zone: int
    inside: int
    capacity: int | None


@dataclass(frozen=True)
class GateFact:
    site: str
    gate: str
    online: bool
    outbox: int


@dataclass
class ScrapeFacts:
    zones: list[ZoneFact] = field(default_factory=list)
    gates: list[GateFact] = field(default_factory=list)
    conflicts: dict[str, int] = field(default_factory=dict)
    claim_deadlines: dict[str, int] = field(default_factory=dict)
    parked: int = 0
    parked_bytes: int = 0
    alerts: dict[tuple[str, str], int] = field(default_factory=dict)


def scrape_facts(session: Session) -> ScrapeFacts:
    facts = ScrapeFacts()
    for site, number, inside, capacity in session.execute(
            select(Zone.site_id, Zone.number, Zone.inside, Zone.capacity).order_by(Zone.site_id, Zone.number)):
        facts.zones.append(ZoneFact(site, number, max(0, inside), capacity))
    for site, name, online, outbox in session.execute(
            select(Gate.site_id, Gate.name, Gate.online, Gate.outbox).order_by(Gate.site_id, Gate.name)):
        facts.gates.append(GateFact(site, name, bool(online), outbox or 0))
    for site, deadline in session.execute(select(Site.id, Site.claim_deadline_ms)):
        facts.claim_deadlines[site] = deadline
        facts.conflicts[site] = 0
    for site, n in session.execute(select(Conflict.site_id, func.count()).group_by(Conflict.site_id)):
        facts.conflicts[site] = n
    parked, parked_bytes = session.execute(
        select(func.count(), func.coalesce(func.sum(func.length(ParkedMessage.payload)), 0))).one()
    facts.parked, facts.parked_bytes = parked, int(parked_bytes)
    for site, kind, n in session.execute(select(Alert.site_id, Alert.kind, func.count())
                                         .where(Alert.resolved_at.is_(None)).group_by(Alert.site_id, Alert.kind)):
        facts.alerts[(site, kind)] = n
    return facts


__all__ = ["GateFact", "ScrapeFacts", "ZoneFact", "scrape_facts"]
