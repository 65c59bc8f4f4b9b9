"""Ingest of passage events: store idempotently, count, replay the entry rules, record conflicts.

`ingest_batch` runs in the caller's transaction, for a batch of decoded events:

1. one multi-row INSERT ... ON CONFLICT (event_id) DO NOTHING RETURNING event_id tells which events
   are new; a repeated event id changes nothing;
2. the new events are taken in event-time order (offline gates deliver late and out of order);
3. the zones concerned are locked (FOR UPDATE on PostgreSQL) and their counts computed in memory:
   a confirmed passage in adds to `inside`, `entries_today` and maybe `peak`, out subtracts from
   `inside` and adds to `exits_today`; refusals are counted per day, zone and reason;
4. for granted entries, the credential's facts, its type's rules and the central's usage *before*
   this event go through `protocol.rules.decide` (biometric assumed matched, capacity ignored); a
   final refusal or `exit_first` becomes a Conflict naming both gates;
5. one UPDATE per zone, one executemany per usage table, and a Delta for tickets now used up.

The entry happened, so an event is always stored and counted, never rejected (pretix's "forced").
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from central.models import (
    AnnualPass,
    Conflict,
    CredentialUsage,
    DenialCount,
    PassageEventRecord,
    Site,
    Ticket,
    TicketType,
    Zone,
    utcnow,
)
from central.services.gates import ticket_type_rules
from central.services.sync import record_delta, ticket_change
from protocol.messages import PassageEvent, TicketTypeRules
from protocol.reasons import FINAL, Reason
from protocol.rules import Biometric, Credential, SitePolicy, Usage, ZoneState, decide

CONFLICT_REASONS = FINAL | {Reason.EXIT_FIRST}
_EVENTS = PassageEventRecord.__table__
_USAGE = CredentialUsage.__table__


@dataclass
class BatchResult:
    received: int = 0
    new: int = 0
    duplicates: int = 0
    passages: int = 0
    conflicts: list[str] = field(default_factory=list)
    sites: set[str] = field(default_factory=set)
    used_up: list[int] = field(default_factory=list)


def _insert(session: Session, model):
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def _event_row(e: PassageEvent, received_at: datetime) -> dict:
    return {
        "event_id": e.id, "site_id": e.site, "gate": e.gate, "zone": e.zone, "at": e.at,
        "direction": e.direction, "credential_kind": e.credential_kind, "credential_ref": e.credential_ref,
        "decision": e.decision, "reason": e.reason, "passed": e.passed, "headcount": e.headcount,
        "offline": e.offline, "mode": e.mode, "ticket_type": e.ticket_type, "claim_id": e.claim_id,
        "received_at": received_at,
    }


def ingest_batch(session: Session, events: list[PassageEvent], received_at: datetime | None = None) -> BatchResult:
    """Store and apply a batch of passage events in the caller's transaction (see the module doc)."""
    received_at = received_at or utcnow()
    result = BatchResult(received=len(events))
    unique: dict[str, PassageEvent] = {}
    for e in events:
        unique.setdefault(e.id, e)
    if not unique:
        return result
    new_ids = _insert_events(session, list(unique.values()), received_at)
    fresh = sorted((unique[i] for i in new_ids), key=lambda e: (e.at, e.id))
    result.new = len(fresh)
    result.duplicates = len(events) - len(fresh)
    if fresh:
        _apply(session, fresh, result)
    return result


_COLUMNS = ("event_id", "site_id", "gate", "zone", "at", "direction", "credential_kind", "credential_ref",
            "decision", "reason", "passed", "headcount", "offline", "mode", "ticket_type", "claim_id", "received_at")
_PG_TYPES = ("text", "text", "text", "int", "timestamptz", "text", "text", "text", "text", "text", "bool", "int",
             "bool", "text", "int", "text", "timestamptz")
_PG_INSERT = (
    f"INSERT INTO passage_events ({', '.join(_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'%s::{t}[]' for t in _PG_TYPES)}) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)


def _insert_events(session: Session, events: list[PassageEvent], received_at: datetime) -> set[str]:
    """Insert the events, skipping ids already stored; returns the ids that were new.

    PostgreSQL gets one INSERT ... SELECT FROM unnest(arrays): one parameter per column instead of
    one per value, about 3x faster than a multi-row VALUES list (measured: 25,000 vs 7,500 rows/s).
    """
    rows = [_event_row(e, received_at) for e in events]
    if session.get_bind().dialect.name == "postgresql":
        arrays = tuple([row[c] for row in rows] for c in _COLUMNS)
        result = session.connection().exec_driver_sql(_PG_INSERT, arrays)
        return {r[0] for r in result}
    stmt = _insert(session, _EVENTS).on_conflict_do_nothing(index_elements=["event_id"]).returning(_EVENTS.c.event_id)
    return set(session.scalars(stmt, rows))


# --- applying new events -----------------------------------------------------------------------


@dataclass
class _UsageRow:
    site_id: str
    ref: str
    entries: int
    exits: int
    last_entry_at: datetime | None
    last_gate: str | None
    bound: bool
    dirty: bool = False


def _apply(session: Session, fresh: list[PassageEvent], result: BatchResult) -> None:
    sites = {s.id: s for s in session.scalars(select(Site).where(Site.id.in_({e.site for e in fresh})))}
    known = [e for e in fresh if e.site in sites]
    if not known:
        return
    result.sites.update(e.site for e in known)
    zones = _lock_zones(session, {(e.site, e.zone) for e in known if 1 <= e.zone <= 32})
    passed = [e for e in known if e.passed]
    usage = _lock_usage(session, {(e.site, e.credential_ref) for e in passed if e.credential_ref})
    facts = _Facts(session, sites, {ref for (_s, ref) in usage})
    denials: dict[tuple[str, date, int, str], int] = defaultdict(int)
    conflicts: list[dict] = []

    for e in known:
        zone = zones.get((e.site, e.zone))
        if not e.passed:
            if e.decision == "refused":
                day = e.at.astimezone(ZoneInfo(sites[e.site].timezone)).date()
                denials[(e.site, day, e.zone, e.reason[:64])] += 1
                if zone is not None:
                    zone.refused_today += 1
            continue
        result.passages += 1
        n = e.headcount
        if zone is not None:
            if e.direction == "in":
                zone.inside += n
                zone.entries_today += n
                zone.peak = max(zone.peak, zone.inside)
            else:
                zone.inside -= n
                zone.exits_today += n
        if not e.credential_ref:
            continue
        row = usage[(e.site, e.credential_ref)]
        if e.direction == "in":
            if e.decision == "granted" and e.mode in ("normal", "locked"):
                reason = facts.replay(e, row, sites[e.site])
                if reason is not None:
                    conflicts.append({"event_id": e.id, "site_id": e.site, "credential_ref": e.credential_ref,
                                      "reason": str(reason), "gate": e.gate, "other_gate": row.last_gate,
                                      "at": e.at, "offline": e.offline, "created_at": utcnow()})
            row.entries += n
            if row.last_entry_at is None or e.at >= row.last_entry_at:
                row.last_entry_at = e.at
                row.last_gate = e.gate
            if e.binding:
                row.bound = True
        else:
            row.exits += n
        row.dirty = True

    now = utcnow()
    for zone in zones.values():
        zone.updated_at = now
    session.flush()
    dirty = [r for r in usage.values() if r.dirty]
    if dirty and session.get_bind().dialect.name == "postgresql":
        session.connection().exec_driver_sql(
            "UPDATE credential_usage u SET entries = v.entries, exits = v.exits, last_entry_at = v.last_entry_at, "
            "last_gate = v.last_gate, bound = v.bound FROM unnest(%s::text[], %s::text[], %s::int[], %s::int[], "
            "%s::timestamptz[], %s::text[], %s::bool[]) AS v(site_id, ref, entries, exits, last_entry_at, last_gate, "
            "bound) WHERE u.site_id = v.site_id AND u.ref = v.ref",
            ([r.site_id for r in dirty], [r.ref for r in dirty], [r.entries for r in dirty], [r.exits for r in dirty],
             [r.last_entry_at for r in dirty], [r.last_gate for r in dirty], [r.bound for r in dirty]))
    elif dirty:
        session.execute(
            update(_USAGE).where(_USAGE.c.site_id == bindparam("k_site"), _USAGE.c.ref == bindparam("k_ref"))
            .values(entries=bindparam("entries"), exits=bindparam("exits"), last_entry_at=bindparam("last_entry_at"),
                    last_gate=bindparam("last_gate"), bound=bindparam("bound")),
            [{"k_site": r.site_id, "k_ref": r.ref, "entries": r.entries, "exits": r.exits,
              "last_entry_at": r.last_entry_at, "last_gate": r.last_gate, "bound": r.bound} for r in dirty],
        )
    if denials:
        stmt = _insert(session, DenialCount)
        stmt = stmt.on_conflict_do_update(index_elements=["site_id", "day", "zone", "reason"],
                                          set_={"count": DenialCount.count + stmt.excluded["count"]})
        session.execute(stmt, [{"site_id": s, "day": d, "zone": z, "reason": r, "count": c}
                               for (s, d, z, r), c in denials.items()])
    if conflicts:
        session.execute(_insert(session, Conflict).on_conflict_do_nothing(index_elements=["event_id"]), conflicts)
        result.conflicts.extend(c["event_id"] for c in conflicts)
    _mark_used_up(session, facts, usage, result)


def _lock_zones(session: Session, keys: set[tuple[str, int]]) -> dict[tuple[str, int], Zone]:
    if not keys:
        return {}
    missing_rows = [{"site_id": s, "number": n, "name": f"Zone {n}", "inside": 0, "entries_today": 0,
                     "exits_today": 0, "refused_today": 0, "peak": 0} for s, n in sorted(keys)]
    session.execute(_insert(session, Zone).on_conflict_do_nothing(index_elements=["site_id", "number"]), missing_rows)
    site_ids = {s for s, _ in keys}
    rows = session.scalars(
        select(Zone).where(Zone.site_id.in_(site_ids)).order_by(Zone.site_id, Zone.number).with_for_update()
        .execution_options(populate_existing=True)
    )
    return {(z.site_id, z.number): z for z in rows if (z.site_id, z.number) in keys}


def _lock_usage(session: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], _UsageRow]:
    if not keys:
        return {}
    ordered = sorted(keys)
    out: dict[tuple[str, str], _UsageRow] = {}
    if session.get_bind().dialect.name == "postgresql":
        conn = session.connection()
        sites, refs = [s for s, _ in ordered], [r for _, r in ordered]
        conn.exec_driver_sql(
            "INSERT INTO credential_usage (site_id, ref, entries, exits, bound) "
            "SELECT s, r, 0, 0, false FROM unnest(%s::text[], %s::text[]) AS k(s, r) "
            "ON CONFLICT (site_id, ref) DO NOTHING", (sites, refs))
        rows = conn.exec_driver_sql(
            "SELECT u.site_id, u.ref, u.entries, u.exits, u.last_entry_at, u.last_gate, u.bound "
            "FROM credential_usage u JOIN unnest(%s::text[], %s::text[]) AS k(s, r) ON u.site_id = k.s AND u.ref = k.r "
            "ORDER BY u.site_id, u.ref FOR UPDATE OF u", (sites, refs))
        for row in rows:
            out[(row[0], row[1])] = _UsageRow(*row)
        return out
    session.execute(_insert(session, _USAGE).on_conflict_do_nothing(index_elements=["site_id", "ref"]),
                    [{"site_id": s, "ref": r, "entries": 0, "exits": 0, "bound": False} for s, r in ordered])
    by_site: dict[str, list[str]] = defaultdict(list)
    for s, r in ordered:
        by_site[s].append(r)
    for site_id, refs in by_site.items():
        for start in range(0, len(refs), 1000):
            part = refs[start:start + 1000]
            rows = session.execute(
                select(_USAGE).where(_USAGE.c.site_id == site_id, _USAGE.c.ref.in_(part))
                .order_by(_USAGE.c.ref).with_for_update()
            )
            for row in rows:
                out[(row.site_id, row.ref)] = _UsageRow(row.site_id, row.ref, row.entries, row.exits,
                                                        row.last_entry_at, row.last_gate, row.bound)
    return out


class _Facts:
    """What the central knows of the credentials in one batch, loaded with one query per kind."""

    def __init__(self, session: Session, sites: dict[str, Site], refs: set[str]) -> None:
        self.session = session
        ticket_ids = {int(r[1:]) for r in refs if r[:1] == "T" and r[1:].isdigit()}
        pass_ids = {int(r[1:]) for r in refs if r[:1] == "P" and r[1:].isdigit()}
        holder_ids = {int(r[1:]) for r in refs if r[:1] == "H" and r[1:].isdigit()}
        self.tickets: dict[int, Ticket] = {}
        if ticket_ids:
            for part in _parts(sorted(ticket_ids)):
                self.tickets.update((t.id, t) for t in session.scalars(select(Ticket).where(Ticket.id.in_(part))))
        self.passes: dict[int, AnnualPass] = {}
        if pass_ids:
            for part in _parts(sorted(pass_ids)):
                rows = session.scalars(select(AnnualPass).where(AnnualPass.id.in_(part)))
                self.passes.update((p.id, p) for p in rows)
        self.holder_pass: dict[int, AnnualPass] = {}
        if holder_ids:
            rows = session.scalars(select(AnnualPass).where(AnnualPass.person_id.in_(holder_ids))
                                   .order_by(AnnualPass.valid_to))
            for p in rows:  # the latest-ending pass wins
                self.holder_pass[p.person_id] = p
        self.rules: dict[int, TicketTypeRules] = {
            t.id: ticket_type_rules(t)
            for t in session.scalars(select(TicketType).where(TicketType.site_id.in_(sites)))
        }
        self.policies = {s.id: SitePolicy(timezone=s.timezone, opens=s.opens, closes=s.closes,
                                          pass_biometric=s.pass_biometric) for s in sites.values()}

    def credential(self, e: PassageEvent) -> tuple[Credential, TicketTypeRules | None] | None:
        ref = e.credential_ref
        kind, number = ref[:1], ref[1:]
        if not number.isdigit():
            return None
        if kind == "T":
            t = self.tickets.get(int(number))
            if t is None or t.site_id != e.site:
                return None
            status = t.status
            if status in ("used", "expired") or (t.status_changed_at and t.status_changed_at > e.at):
                status = "valid"  # usage and dates decide; a later refund does not undo an entry
            zones = frozenset(t.zones or ())
            return (Credential(kind=e.credential_kind, ref=ref, ticket_type=t.ticket_type_id, status=status,
                               valid_from=t.valid_from, valid_to=t.valid_to, slot_start=t.slot_start,
                               slot_end=t.slot_end, headcount=t.headcount, zones=zones),
                    self.rules.get(t.ticket_type_id))
        if kind in ("P", "H"):
            p = self.passes.get(int(number)) if kind == "P" else self.holder_pass.get(int(number))
            if p is None or p.site_id != e.site:
                return None
            status = p.status
            if status == "expired" or (p.status_changed_at and p.status_changed_at > e.at):
                status = "active"
            return (Credential(kind=e.credential_kind, ref=ref, status=status, valid_from=p.valid_from,
                               valid_to=p.valid_to, zones=frozenset(p.zones or ()), holder_bound=True), None)
        return None

    def replay(self, e: PassageEvent, row: _UsageRow, site: Site) -> Reason | None:
        """The reason the central's rules would have refused this entry, when it is a conflict."""
        found = self.credential(e)
        if found is None:
            return None
        credential, rules = found
        usage = Usage(entries=row.entries, exits=row.exits, last_entry_at=row.last_entry_at, bound=row.bound)
        verdict = decide(credential=credential, rules=rules, usage=usage, zone=ZoneState(zone=e.zone),
                         direction="in", now=e.at, site=self.policies[site.id], mode="normal",
                         biometric=Biometric(kind="face", matched=True))
        if verdict.granted:
            return None
        for reason in verdict.reasons:
            if reason in CONFLICT_REASONS:
                return reason
        return None


def _parts(values: list, size: int = 1000):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _mark_used_up(session: Session, facts: _Facts, usage: dict[tuple[str, str], _UsageRow],
                  result: BatchResult) -> None:
    """Tickets whose entries are all used become `used`; gates learn it with a Delta."""
    changes: dict[str, list] = defaultdict(list)
    for (site_id, ref), row in usage.items():
        if not row.dirty or ref[:1] != "T":
            continue
        ticket = facts.tickets.get(int(ref[1:])) if ref[1:].isdigit() else None
        if ticket is None or ticket.status != "valid":
            continue
        rules = facts.rules.get(ticket.ticket_type_id)
        if rules is None or rules.entries is None or row.entries < rules.entries * ticket.headcount:
            continue
        ticket.status = "used"
        ticket.status_changed_at = utcnow()
        changes[site_id].append(ticket_change(ticket))
        result.used_up.append(ticket.id)
    session.flush()
    for site_id, items in changes.items():
        for start in range(0, len(items), 5000):
            record_delta(session, site_id, items[start:start + 5000])
