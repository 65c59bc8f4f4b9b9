"""Ingest of passage events: store idempotently, check, count, replay the entry rules, record conflicts.

`ingest_batch` runs in the caller's transaction, for a batch of decoded events:

1. one multi-row INSERT ... ON CONFLICT (event_id) DO NOTHING RETURNING event_id tells which events
   are new; a repeated event id changes nothing;
2. the new events are taken in event-time order (offline gates deliver late and out of order);
2a. each new event's facts are checked against what the central knows (`_Checks`; one query for
   the batch's gates, one per credential kind): an event that fails is kept with a `flag` naming
   the check, counts nothing (zone counts, refusals, usage, used-up tickets, Deltas) and raises the
   reporting gate's `implausible_event` alert;
3. the usage rows of the credentials concerned are locked (FOR UPDATE, in key order, so two workers
   never deadlock) and read: a conflict needs the usage *before* this event, consistently;
4. for granted entries, the credential's facts, its type's rules and that usage go through
   `protocol.rules.decide` (biometric assumed matched, capacity ignored); a final refusal or
   `exit_first` becomes a Conflict naming both gates;
5. one UPDATE of the usage rows, one UPDATE ... RETURNING of the tickets now used up;
6. last, so their row locks are held for milliseconds and not the whole batch: the refusal counts
   per day, zone and reason, each gate's stored passages of the park day (`gate_day_counts`, flagged
   ones too: the light path of the live counts compares them with the gate's own), each zone's counts
   as increments (`inside = inside + d`,
   `peak = max(peak, inside + the batch's highest rise)`: workers add, they never overwrite) and
   the Delta of the used-up tickets (the site's sequence row, locked until commit so that seq order
   is commit order).

Everything is Core statements over plain rows: no ORM objects are made for events, tickets or zones.

The entry happened, so a plausible event is always stored and counted, never rejected (pretix's
"forced"). What is plausible, and why each check holds for every event a real gate writes:

    unknown_site, unknown_gate  the site and gate (the topic's, see `central.bus.ingest_worker`) are registered
    future_time       `at` at most MAX_AHEAD_S after the central received it (gates run NTP; very old
                      events are fine: an offline gate delivers days late)
    gate_zone         the zone is the gate's (`gates.zone_number`); 0 is allowed on events that
                      passed nobody (a gate with no config yet refuses in zone 0)
    refused_passed    a refusal never lets anyone through
    gate_direction    an in-only or out-only gate passes the other way only in free or emergency mode
    locked_mode       a locked gate lets nobody in (exits only)
    no_credential     an entry with no credential: only in free or emergency mode (the controller's
                      counters, `credential_kind` "none"); exits are never refused, so they may have none
    credential_kind   "none" only in free or emergency mode; a T ref from a QR code or ID card, a
                      P or H ref from a card, face or fingerprint
    unknown_credential  T{id}, P{id}, H{id} names a ticket, pass or holder of this site
    ticket_type       the type the gate read from the code is the ticket's
    headcount         at most the ticket's headcount (1 for a pass or no credential): a gate writes
                      one event per passage
    credential_zone   an entry into a zone the ticket's or pass's zones (or its type's) exclude
    outside_validity  an entry more than CLOCK_SKEW outside the credential's whole validity

Events that pass the checks may still be conflicts (step 4): those are real passages an offline
gate could not refuse, and they count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import BigInteger, String, and_, any_, bindparam, cast, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from central.db import rowcount, table
from central.models import (
    AnnualPass,
    BookingPerson,
    Conflict,
    CredentialUsage,
    DenialCount,
    Gate,
    GateDayCount,
    PassageEventRecord,
    Site,
    Ticket,
    TicketType,
    Zone,
)
from central.services.alerts import IMPLAUSIBLE_EVENT, AlertRaise, raise_alerts
from central.services.facts import pass_credential, site_policy, ticket_credential
from central.services.gates import ticket_type_rules
from central.services.sync import record_delta, record_deltas
from protocol.clock import park_now
from protocol.ids import HOLDER, PASS, TICKET, is_ticket_ref, ref_kind, ref_number
from protocol.messages import MAX_AHEAD_S, PassageEvent, TicketChange, TicketTypeRules
from protocol.reasons import FINAL, Reason
from protocol.rules import Biometric, Credential, SitePolicy, Usage, ZoneState, decide

CONFLICT_REASONS = FINAL | {Reason.EXIT_FIRST}
CLOCK_SKEW = timedelta(minutes=5)  # a gate's clock against the validity it checked
FREE_MODES = frozenset({"free", "emergency"})
_KINDS_OF = {TICKET: frozenset({"qr", "id_card", "face"}), PASS: frozenset({"annual_pass", "face", "fingerprint"}),
             HOLDER: frozenset({"annual_pass", "face", "fingerprint"})}
_EVENTS = table(PassageEventRecord)
_USAGE = table(CredentialUsage)
_TICKETS = table(Ticket)
_PASSES = table(AnnualPass)
_TYPES = table(TicketType)
_SITES = table(Site)
_ZONES = table(Zone)
_GATES = table(Gate)
_TICKET_COLUMNS = [_TICKETS.c[n] for n in ("id", "site_id", "ticket_type_id", "status", "status_changed_at",
                                            "valid_from", "valid_to", "slot_start", "slot_end", "headcount",
                                            "zones", "id_digest")]
_PASS_COLUMNS = [_PASSES.c[n] for n in ("id", "site_id", "person_id", "status", "status_changed_at", "valid_from",
                                         "valid_to", "zones")]


@dataclass
class BatchResult:
    received: int = 0
    new: int = 0
    duplicates: int = 0
    passages: int = 0
    conflicts: list[str] = field(default_factory=list)
    sites: set[str] = field(default_factory=set)
    used_up: list[int] = field(default_factory=list)
    flagged: dict[str, str] = field(default_factory=dict)  # event id -> the check it failed
    counted: list[PassageEvent] = field(default_factory=list)  # new, not flagged: what moved the counts


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


def ingest_batch(session: Session, events: list[PassageEvent], received_at: datetime | None = None, *,
                 shard: str = "") -> BatchResult:
    """Store and apply a batch of passage events in the caller's transaction (see the module doc);
    `shard` names the worker (its own rows of `gate_day_counts`)."""
    received_at = received_at or park_now()
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
        _apply(session, fresh, result, received_at, shard[:32])
    return result


_COLUMNS = ("event_id", "site_id", "gate", "zone", "at", "direction", "credential_kind", "credential_ref",
            "decision", "reason", "passed", "headcount", "offline", "mode", "ticket_type", "claim_id", "received_at")
# The PassageEvent attribute (its JSON key) and PostgreSQL type of each column but the last (received_at).
_ATTRS = ("id", "site", "gate", "zone", "at", "direction", "credential_kind", "credential_ref", "decision", "reason",
          "passed", "headcount", "offline", "mode", "ticket_type", "claim_id")
_PG_TYPES = ("text", "text", "text", "int", "timestamptz", "text", "text", "text", "text", "text", "bool", "int",
             "bool", "text", "int", "text")
_PG_INSERT = (
    f"INSERT INTO passage_events ({', '.join(_COLUMNS)}) "
    f"SELECT {', '.join(f'x.{a}' for a in _ATTRS)}, %s FROM json_to_recordset(%s::json) "
    f"AS x({', '.join(f'{a} {t}' for a, t in zip(_ATTRS, _PG_TYPES, strict=True))}) "
    "ON CONFLICT (event_id, at) DO NOTHING RETURNING event_id"  # the key of a partitioned table (0013)
)
_json = msgspec.json.Encoder()


def _json_text(value) -> str:
    return _json.encode(value).decode()


def _id_list(ids) -> str:
    """Integer ids as one text parameter (`string_to_array(%s, ',')::bigint[]`): psycopg dumps a
    Python list element by element in Python, a string in one go."""
    return ",".join(map(str, ids))


def _insert_events(session: Session, events: list[PassageEvent], received_at: datetime) -> set[str]:
    """Insert the events, skipping ids already stored; returns the ids that were new.

    PostgreSQL gets the batch as one JSON document (msgspec encodes it in C) read by
    json_to_recordset: 500 events in 4 ms, against 10 ms for one array per column (psycopg dumps
    lists in Python) and about 3x that for a multi-row VALUES list.
    """
    if session.get_bind().dialect.name == "postgresql":
        result = session.connection().exec_driver_sql(_PG_INSERT, (received_at, _json_text(events)))
        return {r[0] for r in result}
    rows = [_event_row(e, received_at) for e in events]
    stmt = _insert(session, _EVENTS).on_conflict_do_nothing(index_elements=["event_id", "at"]).returning(
        _EVENTS.c.event_id)
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


class _ZoneDelta:
    """What a batch adds to one zone's counts; `rise` is the highest `inside` reached above the start."""

    __slots__ = ("entries", "exits", "inside", "refused", "rise")

    def __init__(self) -> None:
        self.inside = self.entries = self.exits = self.refused = 0
        self.rise: int | None = None  # None: no entry in this batch, the peak stays


@dataclass(frozen=True)
class _SiteFacts:
    id: str
    timezone: ZoneInfo
    policy: SitePolicy


def _apply(session: Session, fresh: list[PassageEvent], result: BatchResult, received_at: datetime,
           shard: str) -> None:
    sites = _load_sites(session, {e.site for e in fresh})
    flags = {e.id: "unknown_site" for e in fresh if e.site not in sites}
    known = [e for e in fresh if e.site in sites]
    facts = _Facts(session, sites, {e.credential_ref for e in known if e.passed and e.credential_ref},
                   {e.credential_ref for e in known if e.credential_kind == "face" and is_ticket_ref(e.credential_ref)})
    alerts: list[AlertRaise] = []
    if known:
        checks = _Checks(session, known, facts, received_at)
        for e in known:
            flag = checks.check(e)
            if flag is not None:
                flags[e.id] = flag
                alerts.append(AlertRaise(e.site, e.gate, IMPLAUSIBLE_EVENT,
                                         f"last: {flag} (event {e.id})", received_at))
        # Flagged events too: the republished occupancy takes back what other gates counted from them.
        result.sites.update(e.site for e in known)
    # What each gate made, as the central stored it (flagged passages too: the gate counted them): the
    # live counts' light path adds only what a gate counted beyond this (`central.web.live`).
    by_gate: dict[tuple[str, str, date, int], list[int]] = defaultdict(lambda: [0, 0])
    for e in known:
        if e.passed and 1 <= e.zone <= 32:
            tally = by_gate[(e.site, e.gate, e.at.astimezone(sites[e.site].timezone).date(), e.zone)]
            tally[0 if e.direction == "in" else 1] += e.headcount
    if flags:
        _store_flags(session, flags)
        result.flagged.update(flags)
        known = [e for e in known if e.id not in flags]
    if not known:
        raise_alerts(session, alerts)
        _add_to_gates(session, by_gate, shard)
        return
    result.counted.extend(known)
    passed = [e for e in known if e.passed]
    usage = _lock_usage(session, {(e.site, e.credential_ref) for e in passed if e.credential_ref})
    zones: dict[tuple[str, int], _ZoneDelta] = {}
    denials: dict[tuple[str, date, int, str], int] = defaultdict(int)
    conflicts: list[dict] = []
    now = park_now()

    for e in known:
        key = (e.site, e.zone)
        zone = zones.get(key)
        if zone is None and 1 <= e.zone <= 32:
            zone = zones[key] = _ZoneDelta()
        if not e.passed:
            if e.decision == "refused":
                day = e.at.astimezone(sites[e.site].timezone).date()
                denials[(e.site, day, e.zone, e.reason[:64])] += 1
                if zone is not None:
                    zone.refused += 1
            continue
        result.passages += 1
        n = e.headcount
        if zone is not None:
            if e.direction == "in":
                zone.inside += n
                zone.entries += n
                if zone.rise is None or zone.inside > zone.rise:
                    zone.rise = zone.inside
            else:
                zone.inside -= n
                zone.exits += n
        if not e.credential_ref:
            continue
        row = usage[(e.site, e.credential_ref)]
        if e.direction == "in":
            if e.decision == "granted" and e.mode in ("normal", "locked"):
                reason = facts.replay(e, row)
                if reason is not None:
                    conflicts.append({"event_id": e.id, "site_id": e.site, "credential_ref": e.credential_ref,
                                      "reason": str(reason), "gate": e.gate, "other_gate": row.last_gate,
                                      "at": e.at, "offline": e.offline, "created_at": now})
            row.entries += n
            if row.last_entry_at is None or e.at >= row.last_entry_at:
                row.last_entry_at = e.at
                row.last_gate = e.gate
            if e.binding:
                row.bound = True
        else:
            row.exits += n
        row.dirty = True

    dirty = [r for r in usage.values() if r.dirty]
    if dirty and session.get_bind().dialect.name == "postgresql":
        session.connection().exec_driver_sql(
            "UPDATE credential_usage u SET entries = v.e, exits = v.x, last_entry_at = v.t, last_gate = v.g, "
            "bound = v.b FROM json_to_recordset(%s::json) AS v(s text, r text, e int, x int, t timestamptz, g text, "
            "b bool) WHERE u.site_id = v.s AND u.ref = v.r",
            (_json_text([{"s": r.site_id, "r": r.ref, "e": r.entries, "x": r.exits, "t": r.last_entry_at,
                          "g": r.last_gate, "b": r.bound} for r in dirty]),))
    elif dirty:
        session.execute(
            update(_USAGE).where(_USAGE.c.site_id == bindparam("k_site"), _USAGE.c.ref == bindparam("k_ref"))
            .values(entries=bindparam("entries"), exits=bindparam("exits"), last_entry_at=bindparam("last_entry_at"),
                    last_gate=bindparam("last_gate"), bound=bindparam("bound")),
            [{"k_site": r.site_id, "k_ref": r.ref, "entries": r.entries, "exits": r.exits,
              "last_entry_at": r.last_entry_at, "last_gate": r.last_gate, "bound": r.bound} for r in dirty],
        )
    if conflicts:
        session.execute(_insert(session, Conflict).on_conflict_do_nothing(index_elements=["event_id"]), conflicts)
        result.conflicts.extend(c["event_id"] for c in conflicts)
    changes = _mark_used_up(session, facts, dirty, now, result)
    # The rows every worker writes, last (see the module doc).
    if denials:
        stmt = _insert(session, DenialCount)
        stmt = stmt.on_conflict_do_update(index_elements=["site_id", "day", "zone", "reason"],
                                          set_={"count": DenialCount.count + stmt.excluded["count"]})
        session.execute(stmt, [{"site_id": s, "day": d, "zone": z, "reason": r, "count": c}
                               for (s, d, z, r), c in sorted(denials.items())])
    raise_alerts(session, alerts)
    _add_to_gates(session, by_gate, shard)
    _add_to_zones(session, zones, now)
    big = {site_id for site_id, items in changes.items() if len(items) > 5000}
    record_deltas(session, {site_id: items for site_id, items in changes.items() if site_id not in big})
    for site_id in sorted(big):
        items = changes[site_id]
        for start in range(0, len(items), 5000):
            record_delta(session, site_id, items[start:start + 5000])


def _load_sites(session: Session, ids: set[str]) -> dict[str, _SiteFacts]:
    rows = session.execute(select(_SITES.c.id, _SITES.c.timezone, _SITES.c.opens, _SITES.c.closes,
                                  _SITES.c.pass_biometric).where(_SITES.c.id.in_(ids)))
    return {r.id: _SiteFacts(r.id, ZoneInfo(r.timezone), site_policy(r)) for r in rows}


_ZONE_ADD = (
    update(_ZONES)
    .where(_ZONES.c.site_id == bindparam("k_site"), _ZONES.c.number == bindparam("k_number"))
    .values(inside=_ZONES.c.inside + bindparam("d_inside"),
            entries_today=_ZONES.c.entries_today + bindparam("d_entries"),
            exits_today=_ZONES.c.exits_today + bindparam("d_exits"),
            refused_today=_ZONES.c.refused_today + bindparam("d_refused"),
            updated_at=bindparam("k_now"))
)


_PG_GATES = (
    "INSERT INTO gate_day_counts (site_id, gate, day, zone, shard, entries, exits) "
    "SELECT x.s, x.g, x.d, x.z, %s, x.i, x.o FROM json_to_recordset(%s::json) AS x(s text, g text, d date, z int, "
    "i int, o int) ON CONFLICT (site_id, gate, day, zone, shard) DO UPDATE "
    "SET entries = gate_day_counts.entries + excluded.entries, exits = gate_day_counts.exits + excluded.exits"
)


def _add_to_gates(session: Session, tallies: dict[tuple[str, str, date, int], list[int]], shard: str) -> None:
    """Add each gate's stored passages of the batch to its day's row of this worker (`shard`), in key
    order: rows no other worker writes, so batches never queue on them."""
    if not tallies:
        return
    rows = sorted(tallies.items())
    if session.get_bind().dialect.name == "postgresql":  # one JSON parameter, as the events (10 ms -> 1 ms)
        session.connection().exec_driver_sql(_PG_GATES, (shard, _json_text(
            [{"s": s, "g": g, "d": d, "z": z, "i": n[0], "o": n[1]} for (s, g, d, z), n in rows])))
        return
    stmt = _insert(session, GateDayCount)
    stmt = stmt.on_conflict_do_update(index_elements=["site_id", "gate", "day", "zone", "shard"], set_={
        "entries": GateDayCount.entries + stmt.excluded["entries"],
        "exits": GateDayCount.exits + stmt.excluded["exits"]})
    session.execute(stmt, [{"site_id": s, "gate": g, "day": d, "zone": z, "shard": shard, "entries": n[0],
                            "exits": n[1]} for (s, g, d, z), n in rows])


def _add_to_zones(session: Session, zones: dict[tuple[str, int], _ZoneDelta], now: datetime) -> None:
    """Add each zone's batch counts in one UPDATE (in key order); a zone without a row gets one."""
    greatest = func.greatest if session.get_bind().dialect.name == "postgresql" else func.max
    with_peak = _ZONE_ADD.values(peak=func.coalesce(greatest(_ZONES.c.peak, _ZONES.c.inside + bindparam("d_rise")),
                                                    _ZONES.c.peak))
    for (site_id, number), d in sorted(zones.items()):
        params = {"k_site": site_id, "k_number": number, "d_inside": d.inside, "d_entries": d.entries,
                  "d_exits": d.exits, "d_refused": d.refused, "k_now": now}
        stmt = _ZONE_ADD
        if d.rise is not None:
            stmt, params["d_rise"] = with_peak, d.rise
        if rowcount(session.execute(stmt, params)) == 0:
            session.execute(_insert(session, Zone).on_conflict_do_nothing(index_elements=["site_id", "number"]),
                            {"site_id": site_id, "number": number, "name": f"Zone {number}", "inside": 0,
                             "entries_today": 0, "exits_today": 0, "refused_today": 0, "peak": 0})
            session.execute(stmt, params)


def _lock_usage(session: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], _UsageRow]:
    if not keys:
        return {}
    ordered = sorted(keys)
    out: dict[tuple[str, str], _UsageRow] = {}
    if session.get_bind().dialect.name == "postgresql":
        conn = session.connection()
        keys_json = _json_text([{"s": s, "r": r} for s, r in ordered])
        conn.exec_driver_sql(
            "INSERT INTO credential_usage (site_id, ref, entries, exits, bound) "
            "SELECT s, r, 0, 0, false FROM json_to_recordset(%s::json) AS k(s text, r text) "
            "ON CONFLICT (site_id, ref) DO NOTHING", (keys_json,))
        locked = conn.exec_driver_sql(
            "SELECT u.site_id, u.ref, u.entries, u.exits, u.last_entry_at, u.last_gate, u.bound "
            "FROM credential_usage u JOIN json_to_recordset(%s::json) AS k(s text, r text) "
            "ON u.site_id = k.s AND u.ref = k.r ORDER BY u.site_id, u.ref FOR UPDATE OF u", (keys_json,))
        for row in locked:
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


def _rows_by_id(session: Session, columns: list, key, ids: set[int]):
    """Rows (Core, not ORM objects) whose `key` is one of `ids`: one array parameter on PostgreSQL."""
    if not ids:
        return
    if session.get_bind().dialect.name == "postgresql":
        ids_array = cast(func.string_to_array(bindparam("ids", type_=String), ","), postgresql.ARRAY(BigInteger))
        yield from session.execute(select(*columns).where(key == any_(ids_array)), {"ids": _id_list(sorted(ids))})
        return
    for part in _parts(sorted(ids)):
        yield from session.execute(select(*columns).where(key.in_(part)))


class _Facts:
    """What the central knows of the credentials in one batch, loaded with one query per kind."""

    def __init__(self, session: Session, sites: dict[str, _SiteFacts], refs: set[str],
                 face_tickets: Iterable[str] = ()) -> None:
        numbered = [(ref_kind(r), ref_number(r)) for r in refs]
        # Tickets entered by face: only a booked person who gave a face at booking can be (face entry).
        face_ids = {n for n in (ref_number(r) for r in face_tickets) if n is not None}
        self.face_tickets: set[int] = set(session.scalars(select(BookingPerson.ticket_id).where(
            BookingPerson.ticket_id.in_(face_ids), BookingPerson.face_entry.is_(True)))) if face_ids else set()
        ticket_ids = {n for k, n in numbered if k == TICKET and n is not None}
        pass_ids = {n for k, n in numbered if k == PASS and n is not None}
        holder_ids = {n for k, n in numbered if k == "H" and n is not None}
        self.tickets = {t.id: t for t in _rows_by_id(session, _TICKET_COLUMNS, _TICKETS.c.id, ticket_ids)}
        self.passes = {p.id: p for p in _rows_by_id(session, _PASS_COLUMNS, _PASSES.c.id, pass_ids)}
        self.holder_pass = {}
        for p in sorted(_rows_by_id(session, _PASS_COLUMNS, _PASSES.c.person_id, holder_ids),
                        key=lambda p: p.valid_to):
            self.holder_pass[p.person_id] = p  # the latest-ending pass wins
        self.rules: dict[int, TicketTypeRules] = {}
        self.type_zones: dict[int, list[int]] = {}
        if ticket_ids:
            for t in session.execute(select(_TYPES).where(_TYPES.c.site_id.in_(sites))):
                self.rules[t.id] = ticket_type_rules(t)
                self.type_zones[t.id] = list(t.zones or [])
        self.policies = {s.id: s.policy for s in sites.values()}

    def credential(self, e: PassageEvent) -> tuple[Credential, TicketTypeRules | None] | None:
        ref = e.credential_ref
        kind, number = ref_kind(ref), ref_number(ref)
        if kind is None or number is None:
            return None
        if kind == TICKET:
            t = self.tickets.get(number)
            if t is None or t.site_id != e.site:
                return None
            status = t.status
            if status in ("used", "expired") or (t.status_changed_at and t.status_changed_at > e.at):
                status = "valid"  # usage and dates decide; a later refund does not undo an entry
            return (ticket_credential(t, kind=e.credential_kind, ref=ref, status=status),
                    self.rules.get(t.ticket_type_id))
        if kind in (PASS, HOLDER):
            p = self.passes.get(number) if kind == PASS else self.holder_pass.get(number)
            if p is None or p.site_id != e.site:
                return None
            status = p.status
            if status == "expired" or (p.status_changed_at and p.status_changed_at > e.at):
                status = "active"
            return pass_credential(p, kind=e.credential_kind, ref=ref, status=status), None
        return None

    def replay(self, e: PassageEvent, row: _UsageRow) -> Reason | None:
        """The reason the central's rules would have refused this entry, when it is a conflict."""
        found = self.credential(e)
        if found is None:
            return None
        credential, rules = found
        usage = Usage(entries=row.entries, exits=row.exits, last_entry_at=row.last_entry_at, bound=row.bound)
        verdict = decide(credential=credential, rules=rules, usage=usage, zone=ZoneState(zone=e.zone),
                         direction="in", now=e.at, site=self.policies[e.site], mode="normal",
                         biometric=Biometric(kind="face", matched=True))
        if verdict.granted:
            return None
        for reason in verdict.reasons:
            if reason in CONFLICT_REASONS:
                return reason
        return None


@dataclass(frozen=True)
class _GateFacts:
    zone: int
    direction: str


class _Checks:
    """Whether each event's facts fit what the central knows (the module doc lists the checks)."""

    def __init__(self, session: Session, events: list[PassageEvent], facts: _Facts, received_at: datetime) -> None:
        self.facts = facts
        self.latest = received_at + timedelta(seconds=MAX_AHEAD_S)
        names = {e.gate for e in events}
        self.gates = {(g.site_id, g.name): _GateFacts(g.zone_number, g.direction) for g in session.execute(
            select(_GATES.c.site_id, _GATES.c.name, _GATES.c.zone_number, _GATES.c.direction)
            .where(_GATES.c.site_id.in_({e.site for e in events}), _GATES.c.name.in_(names)))}

    def check(self, e: PassageEvent) -> str | None:
        """The first check the event fails, or None when it may count."""
        gate = self.gates.get((e.site, e.gate))
        if gate is None:
            return "unknown_gate"
        if e.at > self.latest:
            return "future_time"
        if e.zone != gate.zone and (e.passed or e.zone != 0):
            return "gate_zone"
        if not e.passed:
            return None  # it counts no passage: a refusal, or a visitor who walked away
        if e.decision == "refused":
            return "refused_passed"
        free = e.mode in FREE_MODES
        entry = e.direction == "in"
        if not free and gate.direction != "both" and e.direction != gate.direction:
            return "gate_direction"
        if entry and e.mode == "locked":
            return "locked_mode"
        if e.credential_kind == "none" and not free:
            return "credential_kind"
        if not e.credential_ref:
            if e.headcount > 1:
                return "headcount"
            return None if free or not entry else "no_credential"
        return self._credential(e, entry and not free)

    def _credential(self, e: PassageEvent, entry: bool) -> str | None:
        kind, number = ref_kind(e.credential_ref), ref_number(e.credential_ref)
        if kind not in _KINDS_OF or number is None:
            return "unknown_credential"
        if e.credential_kind != "none" and e.credential_kind not in _KINDS_OF[kind]:
            return "credential_kind"
        f = self.facts
        if kind == TICKET:
            t = f.tickets.get(number)
            if t is None or t.site_id != e.site:
                return "unknown_credential"
            if e.credential_kind == "face" and number not in f.face_tickets:
                return "credential_kind"
            if e.ticket_type is not None and e.ticket_type != t.ticket_type_id:
                return "ticket_type"
            if e.headcount > t.headcount:
                return "headcount"
            rules = f.rules.get(t.ticket_type_id)
            zones, type_zones = t.zones or (), rules.zones if rules else ()
        else:
            p = f.passes.get(number) if kind == PASS else f.holder_pass.get(number)
            if p is None or p.site_id != e.site:
                return "unknown_credential"
            if e.headcount > 1:
                return "headcount"
            t, zones, type_zones = p, p.zones or (), ()
        if not entry:
            return None  # exits are never refused: an expired ticket still leaves
        if (zones and e.zone not in zones) or (type_zones and e.zone not in type_zones):
            return "credential_zone"
        if (t.valid_from and e.at < t.valid_from - CLOCK_SKEW) or (t.valid_to and e.at > t.valid_to + CLOCK_SKEW):
            return "outside_validity"
        return None


def _store_flags(session: Session, flags: dict[str, str]) -> None:
    """Mark the batch's implausible events (rows this transaction has just inserted)."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection().exec_driver_sql(
            "UPDATE passage_events e SET flag = v.f FROM json_to_recordset(%s::json) AS v(i text, f text) "
            "WHERE e.event_id = v.i", (_json_text([{"i": i, "f": f} for i, f in sorted(flags.items())]),))
        return
    session.execute(update(_EVENTS).where(_EVENTS.c.event_id == bindparam("k_id")).values(flag=bindparam("k_flag")),
                    [{"k_id": i, "k_flag": f} for i, f in sorted(flags.items())])


def _parts(values: list, size: int = 1000):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _mark_used_up(session: Session, facts: _Facts, dirty: list[_UsageRow], now: datetime,
                  result: BatchResult) -> dict[str, list[TicketChange]]:
    """Tickets whose entries are all used become `used` (one UPDATE ... RETURNING; a ticket refunded
    meanwhile stays refunded); returns the TicketChanges per site for the Delta that tells the gates."""
    due: list[int] = []
    for row in dirty:
        number = ref_number(row.ref)
        if not is_ticket_ref(row.ref) or number is None:
            continue
        ticket = facts.tickets.get(number)
        if ticket is None or ticket.status != "valid":
            continue
        rules = facts.rules.get(ticket.ticket_type_id)
        if rules is None or rules.entries is None or row.entries < rules.entries * ticket.headcount:
            continue
        due.append(ticket.id)
    if not due:
        return {}
    due.sort()  # row locks in id order
    changed: list[int] = []
    if session.get_bind().dialect.name == "postgresql":
        changed = [r[0] for r in session.connection().exec_driver_sql(
            "UPDATE tickets SET status = 'used', status_changed_at = %s "
            "WHERE id = ANY(string_to_array(%s, ',')::bigint[]) AND status = 'valid' RETURNING id",
            (now, _id_list(due)))]
    else:
        for part in _parts(due):
            changed += session.scalars(update(_TICKETS).where(and_(_TICKETS.c.id.in_(part),
                                                                     _TICKETS.c.status == "valid"))
                                       .values(status="used", status_changed_at=now).returning(_TICKETS.c.id))
    changes: dict[str, list[TicketChange]] = defaultdict(list)
    for ticket_id in sorted(changed):
        t = facts.tickets[ticket_id]
        changes[t.site_id].append(TicketChange(
            ticket_id=t.id, ticket_type=t.ticket_type_id, status="used", valid_from=t.valid_from,
            valid_to=t.valid_to, slot_start=t.slot_start, slot_end=t.slot_end, headcount=t.headcount,
            zones=list(t.zones or []) or facts.type_zones.get(t.ticket_type_id, []), id_digest=t.id_digest))
        result.used_up.append(t.id)
    return changes
