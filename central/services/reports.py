"""Reports for managers: visitors per day and hour, by gate and ticket type, re-entries, denials,
offline conflicts, settlement per sales channel and group customer, suspicious patterns, and the
daily summary.

Days and hours are the site's local ones. The database groups passages into UTC buckets of 15
minutes (every real UTC offset is a multiple of 15 minutes) and Python folds the buckets into local
hours and days, so the same code runs on SQLite and PostgreSQL and returns at most 96 rows per day
and group, however many passages there were.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, is_dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, Label, and_, case, cast, func, literal_column, select
from sqlalchemy.orm import Session, aliased

from central.i18n import _l
from central.models import Conflict, PassageEventRecord, Ticket, TicketType
from central.services import Invalid
from central.services.gates import get_site
from protocol.clock import park_now

BUCKET_S = 900
MAX_DAYS = 366
GROUP_CHANNELS = ("agency", "group", "ota")
PASS_KINDS = ("annual_pass", "face", "fingerprint")
P = PassageEventRecord


@dataclass(frozen=True)
class Period:
    """Local days `start`..`end` (both included) of a site, and the UTC instants they span."""

    site_id: str
    tz: ZoneInfo
    start: date
    end: date

    @property
    def utc_from(self) -> datetime:
        return datetime.combine(self.start, time(0), tzinfo=self.tz).astimezone(UTC)

    @property
    def utc_to(self) -> datetime:
        return datetime.combine(self.end + timedelta(days=1), time(0), tzinfo=self.tz).astimezone(UTC)

    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]


def period(session: Session, site_id: str, start: date | None = None, end: date | None = None,
           now: datetime | None = None) -> Period:
    """A report period for the site; missing ends mean today (site time)."""
    site = get_site(session, site_id)
    tz = ZoneInfo(site.timezone)
    today = (now or park_now()).astimezone(tz).date()
    start = start or end or today
    end = end or start
    if end < start:
        raise Invalid("bad_period", _l("The end of the period is before its start."))
    if (end - start).days >= MAX_DAYS:
        raise Invalid("bad_period", _l('A report covers at most %(n)s days.', n=MAX_DAYS))
    return Period(site_id, tz, start, end)


def _epoch(session: Session, column):
    """Whole seconds since the epoch of a stored UTC time, on either backend."""
    if session.get_bind().dialect.name == "sqlite":
        return cast(func.strftime("%s", column), Integer)
    return cast(func.floor(func.extract("epoch", column)), Integer)


def _bucket(session: Session, column, seconds: int):
    """The UTC bucket number of `column` (seconds since the epoch // `seconds`), on either backend."""
    if session.get_bind().dialect.name == "sqlite":
        return _epoch(session, column) / seconds
    return cast(func.floor(func.extract("epoch", column) / seconds), Integer)


def _local(bucket: int, seconds: int, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(int(bucket) * seconds, UTC).astimezone(tz)


def _in_period(p: Period):
    """The period's events that count: a flagged (implausible) event is kept but counts nothing."""
    return and_(P.site_id == p.site_id, P.at >= p.utc_from, P.at < p.utc_to, P.flag.is_(None))


_entered = case((and_(P.direction == "in", P.passed.is_(True)), P.headcount), else_=0)
_exited = case((and_(P.direction == "out", P.passed.is_(True)), P.headcount), else_=0)
_refused = case((P.decision == "refused", 1), else_=0)


@dataclass
class Traffic:
    entries: int = 0
    exits: int = 0
    refused: int = 0

    def add(self, entries: int, exits: int, refused: int) -> None:
        self.entries += int(entries or 0)
        self.exits += int(exits or 0)
        self.refused += int(refused or 0)


def _traffic_buckets(session: Session, p: Period, *group_by, seconds: int = BUCKET_S):
    bucket = _bucket(session, P.at, seconds).label("bucket")
    stmt = (select(bucket, *group_by, func.sum(_entered), func.sum(_exited), func.sum(_refused))
            .where(_in_period(p)).group_by(bucket, *group_by))
    return session.execute(stmt).all()


@dataclass(frozen=True)
class DayRow:
    day: date
    entries: int
    exits: int
    refused: int


def visitors_per_day(session: Session, p: Period) -> list[DayRow]:
    totals: dict[date, Traffic] = {d: Traffic() for d in p.days()}
    for bucket, entries, exits, refused in _traffic_buckets(session, p):
        day = _local(bucket, BUCKET_S, p.tz).date()
        totals.setdefault(day, Traffic()).add(entries, exits, refused)
    return [DayRow(d, t.entries, t.exits, t.refused) for d, t in sorted(totals.items())]


@dataclass(frozen=True)
class HourRow:
    hour: int
    entries: int
    exits: int
    refused: int


def visitors_per_hour(session: Session, p: Period) -> list[HourRow]:
    """Hours of the day 0-23, summed over the period's days."""
    totals = [Traffic() for _ in range(24)]
    for bucket, entries, exits, refused in _traffic_buckets(session, p):
        totals[_local(bucket, BUCKET_S, p.tz).hour].add(entries, exits, refused)
    return [HourRow(h, t.entries, t.exits, t.refused) for h, t in enumerate(totals)]


def per_minute(session: Session, p: Period) -> dict[int, tuple[int, int]]:
    """Entries and exits per minute of the period's first day: {minute of the day: (entries, exits)}."""
    out: dict[int, tuple[int, int]] = {}
    for bucket, entries, exits, _refused in _traffic_buckets(session, p, seconds=60):
        local = _local(bucket, 60, p.tz)
        if local.date() != p.start:
            continue
        minute = local.hour * 60 + local.minute
        e, x = out.get(minute, (0, 0))
        out[minute] = (e + int(entries or 0), x + int(exits or 0))
    return out


@dataclass(frozen=True)
class GateRow:
    gate: str
    entries: int
    exits: int
    refused: int
    offline: int


def by_gate(session: Session, p: Period) -> list[GateRow]:
    offline = func.sum(case((P.offline.is_(True), 1), else_=0))
    rows = session.execute(select(P.gate, func.sum(_entered), func.sum(_exited), func.sum(_refused), offline)
                           .where(_in_period(p)).group_by(P.gate).order_by(P.gate)).all()
    return [GateRow(g, int(e or 0), int(x or 0), int(r or 0), int(o or 0)) for g, e, x, r, o in rows]


@dataclass(frozen=True)
class TicketTypeRow:
    ticket_type: int | None
    name: str
    entries: int
    refused: int


def by_ticket_type(session: Session, p: Period) -> list[TicketTypeRow]:
    rows = session.execute(
        select(P.ticket_type, TicketType.name, func.sum(_entered), func.sum(_refused))
        .outerjoin(TicketType, TicketType.id == P.ticket_type)
        .where(_in_period(p)).group_by(P.ticket_type, TicketType.name).order_by(P.ticket_type)).all()
    return [TicketTypeRow(t, name or ("(pass, face or other)" if t is None else f"type {t}"), int(e or 0),
                          int(r or 0)) for t, name, e, r in rows]


@dataclass(frozen=True)
class ReentryRow:
    credential_kind: str
    credentials: int
    reentries: int


def reentries(session: Session, p: Period) -> list[ReentryRow]:
    """Credentials that entered more than once in the period, and how many entries beyond the first."""
    per_credential = (select(P.credential_kind.label("kind"), P.credential_ref, func.count().label("n"))
                      .where(_in_period(p), P.direction == "in", P.passed.is_(True), P.credential_ref != "")
                      .group_by(P.credential_kind, P.credential_ref)
                      .having(func.count() > 1).subquery())
    rows = session.execute(select(per_credential.c.kind, func.count(), func.sum(per_credential.c.n - 1))
                           .group_by(per_credential.c.kind).order_by(per_credential.c.kind)).all()
    return [ReentryRow(k, int(c), int(n or 0)) for k, c, n in rows]


@dataclass(frozen=True)
class ReasonRow:
    reason: str
    count: int


def denials_by_reason(session: Session, p: Period) -> list[ReasonRow]:
    n = func.count().label("n")
    rows = session.execute(select(P.reason, n).where(_in_period(p), P.decision == "refused")
                           .group_by(P.reason).order_by(n.desc(), P.reason)).all()
    return [ReasonRow(r, int(c)) for r, c in rows]


@dataclass(frozen=True)
class ConflictRow:
    at: datetime
    credential_ref: str
    reason: str
    gate: str
    other_gate: str | None
    offline: bool
    resolved: bool


def conflicts(session: Session, p: Period, limit: int = 1000) -> list[ConflictRow]:
    rows = session.scalars(select(Conflict).where(Conflict.site_id == p.site_id, Conflict.at >= p.utc_from,
                                                  Conflict.at < p.utc_to).order_by(Conflict.at).limit(limit))
    return [ConflictRow(c.at.astimezone(p.tz), c.credential_ref, c.reason, c.gate, c.other_gate, c.offline,
                        c.resolved_at is not None) for c in rows]


@dataclass(frozen=True)
class SettlementRow:
    channel: str
    customer: str
    tickets: int
    visitors: int
    amount: Decimal
    refunded_tickets: int
    refunded_amount: Decimal

    @property
    def net(self) -> Decimal:
        return self.amount - self.refunded_amount


def _settlement(session: Session, p: Period, *, per_customer: bool) -> list[SettlementRow]:
    refunded = Ticket.status == "refunded"
    customer: Label[Any] = (Ticket.channel_ref if per_customer else literal_column("''")).label("customer")
    stmt = (select(Ticket.channel, customer, func.count(), func.sum(Ticket.headcount),
                   func.sum(Ticket.price), func.sum(case((refunded, 1), else_=0)),
                   func.sum(case((refunded, Ticket.price), else_=0)))
            .where(Ticket.site_id == p.site_id, Ticket.issued_at >= p.utc_from, Ticket.issued_at < p.utc_to))
    if per_customer:
        stmt = (stmt.where(Ticket.channel.in_(GROUP_CHANNELS)).group_by(Ticket.channel, Ticket.channel_ref)
                .order_by(Ticket.channel, Ticket.channel_ref))
    else:
        stmt = stmt.group_by(Ticket.channel).order_by(Ticket.channel)
    rows = session.execute(stmt).all()
    return [SettlementRow(ch, cu or "", int(n), int(v or 0), Decimal(a or 0).quantize(Decimal("0.01")), int(rn or 0),
                          Decimal(ra or 0).quantize(Decimal("0.01"))) for ch, cu, n, v, a, rn, ra in rows]


def settlement_by_channel(session: Session, p: Period) -> list[SettlementRow]:
    """Tickets sold in the period per sales channel: count, visitors, amount, refunds."""
    return _settlement(session, p, per_customer=False)


def settlement_by_customer(session: Session, p: Period) -> list[SettlementRow]:
    """The same per group customer (travel agency, OTA, group: the ticket's channel reference)."""
    return _settlement(session, p, per_customer=True)


@dataclass(frozen=True)
class RepeatedRefusal:
    credential_kind: str
    credential_ref: str
    refusals: int
    gates: int
    first_at: datetime
    last_at: datetime


def repeated_refusals(session: Session, p: Period, at_least: int = 5, limit: int = 200) -> list[RepeatedRefusal]:
    """A credential refused again and again: someone trying a copied or cancelled code."""
    n = func.count().label("n")
    rows = session.execute(
        select(P.credential_kind, P.credential_ref, n, func.count(P.gate.distinct()), func.min(P.at), func.max(P.at))
        .where(_in_period(p), P.decision == "refused", P.credential_ref != "")
        .group_by(P.credential_kind, P.credential_ref).having(func.count() >= at_least)
        .order_by(n.desc()).limit(limit)).all()
    return [RepeatedRefusal(k, r, int(c), int(g), a.astimezone(p.tz), b.astimezone(p.tz)) for k, r, c, g, a, b in rows]


@dataclass(frozen=True)
class TwoGates:
    credential_ref: str
    gate: str
    at: datetime
    other_gate: str
    other_at: datetime
    minutes: float


def two_gates_apart(session: Session, p: Period, within_min: int = 10, limit: int = 200) -> list[TwoGates]:
    """A pass (or its holder's face or finger) entering at two gates minutes apart: a shared card."""
    a, b = aliased(P), aliased(P)
    window_s = within_min * 60
    entered = lambda e: and_(e.direction == "in", e.passed.is_(True), e.credential_kind.in_(PASS_KINDS))  # noqa: E731
    rows = session.execute(
        select(a.credential_ref, a.gate, a.at, b.gate, b.at)
        .join(b, and_(b.site_id == a.site_id, b.credential_ref == a.credential_ref, b.gate != a.gate,
                      b.at > a.at, _epoch(session, b.at) - _epoch(session, a.at) <= window_s))
        .where(a.site_id == p.site_id, a.at >= p.utc_from, a.at < p.utc_to, a.credential_ref != "",
               entered(a), entered(b))
        .order_by(a.at).limit(limit)).all()
    return [TwoGates(r, g1, t1.astimezone(p.tz), g2, t2.astimezone(p.tz), round((t2 - t1).total_seconds() / 60, 1))
            for r, g1, t1, g2, t2 in rows]


@dataclass(frozen=True)
class DailySummary:
    site_id: str
    day: date
    entries: int
    exits: int
    refused: int
    hours: list[HourRow]
    gates: list[GateRow]
    ticket_types: list[TicketTypeRow]
    denials: list[ReasonRow]
    reentries: list[ReentryRow]
    conflicts: list[ConflictRow]
    channels: list[SettlementRow]


def daily_summary(session: Session, site_id: str, day: date) -> DailySummary:
    p = period(session, site_id, day, day)
    totals = visitors_per_day(session, p)[0]
    return DailySummary(site_id, day, totals.entries, totals.exits, totals.refused, visitors_per_hour(session, p),
                        by_gate(session, p), by_ticket_type(session, p), denials_by_reason(session, p),
                        reentries(session, p), conflicts(session, p), settlement_by_channel(session, p))


def to_csv(rows: Sequence | Iterable) -> str:
    """Rows of one report dataclass as CSV text with a header line (money and times as text)."""
    rows = list(rows)
    out = io.StringIO()
    writer = csv.writer(out)
    if not rows:
        return ""
    names = [f.name for f in fields(rows[0])]
    extra = ["net"] if isinstance(rows[0], SettlementRow) else []
    writer.writerow(names + extra)
    for row in rows:
        values = asdict(row) if is_dataclass(row) and not isinstance(row, type) else dict(row)
        cells = [_cell(values[n]) for n in names] + [_cell(getattr(row, e)) for e in extra]
        writer.writerow(cells)
    return out.getvalue()


def _cell(value) -> str:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    text = "" if value is None else str(value)
    # A cell starting with = + - @ is a formula to a spreadsheet: neutralise it (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _number(text) else text


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

