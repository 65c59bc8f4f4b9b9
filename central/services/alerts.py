"""Alerts for staff: something a gate did that a person must look at, with the gate named.

One open alert per site, gate and kind: a repeat raises its `count` and `last_at` instead of adding a
row (a partial unique index, `resolved_at IS NULL`, holds that under concurrent ingest workers), so a
gate that floods implausible events makes one line on the staff's list, not thousands. Resolving it
closes the row; the next occurrence opens a new one. Details never carry personal data: check names
and event ids only.

Kinds so far:

    implausible_event   the central's checks refused to count a gate's passage event
                        (`central.services.ingest`); the event is stored with its `flag`
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from central.db import table
from central.i18n import _l
from central.models import Alert, utcnow
from central.services import NotFound, Refused
from central.services.audit import audit

IMPLAUSIBLE_EVENT = "implausible_event"
_ALERTS = table(Alert)


@dataclass(frozen=True)
class AlertView:
    id: int
    site_id: str
    gate: str
    kind: str
    detail: str
    first_at: datetime
    last_at: datetime
    count: int


@dataclass(frozen=True)
class AlertRaise:
    """One occurrence (or `count` of them) to add to the gate's open alert of this kind."""

    site_id: str
    gate: str
    kind: str
    detail: str
    at: datetime
    count: int = 1


def raise_alerts(session: Session, raised: list[AlertRaise]) -> None:
    """Open or add to the alerts in one statement per alert, in key order (two workers never deadlock)."""
    if not raised:
        return
    merged: dict[tuple[str, str, str], list] = {}  # key -> [first_at, last_at, detail, count]
    for a in sorted(raised, key=lambda a: a.at):
        key = (a.site_id, a.gate[:64], a.kind)
        seen = merged.setdefault(key, [a.at, a.at, "", 0])
        seen[1], seen[2], seen[3] = a.at, a.detail[:256], seen[3] + a.count
    insert = (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(_ALERTS)
    greatest = func.greatest if session.get_bind().dialect.name == "postgresql" else func.max
    stmt = insert.on_conflict_do_update(
        index_elements=["site_id", "gate", "kind"], index_where=_ALERTS.c.resolved_at.is_(None),
        set_={"count": _ALERTS.c.count + insert.excluded["count"],
              "last_at": greatest(_ALERTS.c.last_at, insert.excluded["last_at"]),
              "detail": insert.excluded["detail"]})
    for key in sorted(merged):
        first_at, last_at, detail, count = merged[key]
        session.execute(stmt, {"site_id": key[0], "gate": key[1], "kind": key[2], "detail": detail,
                               "first_at": first_at, "last_at": last_at, "count": count})


def open_alerts(session: Session, site_id: str, *, limit: int = 200) -> list[AlertView]:
    """The site's open alerts, the latest first."""
    rows = session.scalars(select(Alert).where(Alert.site_id == site_id, Alert.resolved_at.is_(None))
                           .order_by(Alert.last_at.desc(), Alert.id.desc()).limit(limit))
    return [AlertView(a.id, a.site_id, a.gate, a.kind, a.detail, a.first_at, a.last_at, a.count) for a in rows]


def open_alert_count(session: Session, site_id: str) -> int:
    return session.scalar(select(func.count()).select_from(Alert)
                          .where(Alert.site_id == site_id, Alert.resolved_at.is_(None))) or 0


def resolve_alert(session: Session, alert_id: int, actor: str | None = None) -> Alert:
    """A person has looked at it: closed; the gate's next occurrence opens a new alert."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound("no_alert", _l('There is no such alert.'))
    if alert.resolved_at is not None:
        raise Refused("alert_resolved", _l('This alert is already resolved.'))
    alert.resolved_at = utcnow()
    alert.resolved_by = actor
    audit(session, actor, "alert.resolve", str(alert_id), kind=alert.kind, gate=alert.gate)
    return alert


__all__ = ["IMPLAUSIBLE_EVENT", "AlertRaise", "AlertView", "open_alert_count", "open_alerts", "raise_alerts",
           "resolve_alert"]
