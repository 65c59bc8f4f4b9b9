"""Replication between a park's own server and the head office, each with its own database and broker.

A park server is authoritative for its gates; the head office sells for every park and watches them
all. Both write, so each sends the other what changed, over MQTT through the park broker's bridge
(`central.bus.bridge`, `central.bus.replicator`), with nothing of our own in between but an outbox:

- **Capture**: PostgreSQL triggers on every replicated table write the changed rows (`to_jsonb`) into
  `repl_outbox` in the change's own transaction (new rows once per statement, from its transition
  table), so a change is sent if and only if it committed,
  whatever wrote it (the ORM, Core statements, the ingest's COPY-like inserts). `setup` installs the
  triggers; a central without `[replication]` has none and pays nothing.
- **Order**: the sender gives committed changes their position (`sequence`, one sender at a time), so a
  transaction that commits late cannot be skipped by a reader already past it.
- **Exactly once**: the receiver applies a batch "all of origin's changes for me in (after, upto]" and
  records `upto` in `repl_applied` in the same transaction; a resent batch applies nothing twice, a
  batch past a gap applies nothing and the acknowledgement makes the sender go back.
- **Ids**: each server's sequences give ids congruent to its `replication.number` modulo 64 (`setup`),
  so rows and signed codes of two servers never share an id.
- **Who owns what**: a park's home server owns its gates' facts (passages, usage, counts, alerts: flow
  "home"); both sides change sales, bookings, holders and settings (flow "both"). Where both may change
  one row while the link is down the merge is one both sides reach in any order: a ticket's status only
  moves forward (held < valid < used < expired < refunded < revoked), a conflict's earliest resolution
  stands, a zone's counts are its home's. A refund the head office made of a ticket the park's gates
  admitted meanwhile is recorded as a conflict at the park (and so at both) for a manager to resolve.
- **Nothing lost**: a change that will not apply (a rule of this database refuses it) is kept in
  `repl_parked` with the error; the rest of the batch applies.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec
from sqlalchemy import Connection, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from central.db import rowcount
from central.models import (
    AnnualPass,
    Base,
    BiometricTemplate,
    Conflict,
    CredentialUsage,
    ReplicationApplied,
    ReplicationParked,
    ReplicationPeer,
    Ticket,
    utcnow,
)
from protocol.reasons import Reason

log = logging.getLogger(__name__)

STRIDE = 64  # ids: this server's number modulo STRIDE
ID_FLOOR = {"integer": 1 << 24, "bigint": 1 << 40}  # new ids start above these (rows made before setup keep theirs)
STATUS_ORDER = ("held", "valid", "used", "expired", "refunded", "revoked")
# A refund that crossed an admission: recorded with the reason a gate would have given had it known (its
# text in both languages is the gates'), under the event id "refund:T<id>".
REFUNDED_AFTER_USE = Reason.REFUNDED.value
APPLYING = "repl.applying"  # the session setting that keeps applied changes out of this server's outbox


@dataclass(frozen=True)
class Table:
    name: str
    site: str | None  # the column naming the row's park, "person"/"booking" (the parent's), None: every park
    flow: str = "both"  # "home": only the park's home server's changes travel
    keep_local: tuple[tuple[str, str], ...] = ()  # each server's own bookkeeping (column, value of a new row)
    home_columns: tuple[str, ...] = ()  # the home server's: at home never taken from another server
    pk: tuple[str, ...] = ()  # when the database's key is not the model's (partitioned tables)
    merge: str = ""  # "status": forward only; "resolution": the first resolution stands

    @property
    def columns(self) -> list[str]:
        return [c.name for c in Base.metadata.tables[self.name].columns]

    @property
    def key(self) -> tuple[str, ...]:
        return self.pk or tuple(c.name for c in Base.metadata.tables[self.name].primary_key.columns)


_COUNTS = ("inside", "entries_today", "exits_today", "refused_today", "peak", "updated_at")
# In foreign-key order: a seed sends parents before children.
TABLES: tuple[Table, ...] = (
    Table("sites", "id", keep_local=(("sync_seq", "0"),), home_columns=("business_date", "emergency_ended_at")),
    Table("signing_keys", None),
    Table("ticket_types", "site_id"),
    Table("zones", "site_id", home_columns=_COUNTS),
    Table("gates", "site_id", flow="home"),
    Table("slot_quotas", "site_id"),
    Table("customers", "site_id"),
    Table("group_orders", "site_id"),
    Table("shifts", "site_id"),
    Table("tickets", "site_id", merge="status"),
    Table("persons", "site_id"),
    Table("annual_passes", "site_id"),
    Table("biometric_templates", "person"),
    Table("holder_photos", "person"),
    Table("payments", "site_id"),
    Table("finance_settings", "site_id"),
    Table("booking_settings", "site_id"),
    # made on demand by the first booking of a day, so on both sides: one row per park and day, each
    # server keeping its own id (nothing refers to it)
    Table("booking_days", "site_id", pk=("site_id", "day")),
    Table("bookings", "site_id"),
    Table("booking_persons", "booking"),
    Table("booking_documents", "site_id"),
    Table("booking_blocks", "site_id"),
    Table("passage_events", "site_id", flow="home", pk=("id", "at")),
    Table("credential_usage", "site_id", flow="home"),
    Table("conflicts", "site_id", merge="resolution"),
    Table("alerts", "site_id", flow="home"),
    Table("gate_day_counts", "site_id", flow="home"),
    Table("denial_counts", "site_id", flow="home"),
    Table("daily_reports", "site_id", flow="home"),
    Table("help_requests", "site_id", flow="home"),
)
BY_NAME = {t.name: t for t in TABLES}
HOME_FLOW = tuple(t.name for t in TABLES if t.flow == "home")

# --- capture ------------------------------------------------------------------------------------

_CAPTURE_FUNCTION = """
CREATE OR REPLACE FUNCTION repl_capture() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  body jsonb;
  site text;
  local_cols text[] := CASE WHEN TG_ARGV[2] = '' THEN '{}'::text[] ELSE string_to_array(TG_ARGV[2], ',') END;
BEGIN
  IF coalesce(current_setting('repl.applying', true), '') = 'on' THEN
    RETURN NULL;  -- a change another server made: it is not sent back
  END IF;
  IF TG_OP = 'DELETE' THEN body := to_jsonb(OLD); ELSE body := to_jsonb(NEW); END IF;
  IF TG_OP = 'UPDATE' AND (body - local_cols) = (to_jsonb(OLD) - local_cols) THEN
    RETURN NULL;  -- nothing another server keeps changed (a site's delta sequence)
  END IF;
  IF TG_ARGV[0] = '' THEN
    site := NULL;
  ELSIF TG_ARGV[0] = 'person' THEN
    SELECT p.site_id INTO site FROM persons p WHERE p.id = (body->>'person_id')::bigint;
  ELSIF TG_ARGV[0] = 'booking' THEN
    SELECT b.site_id INTO site FROM bookings b WHERE b.id = (body->>'booking_id')::bigint;
  ELSE
    site := body->>TG_ARGV[0];
  END IF;
  INSERT INTO repl_outbox (tbl, op, site_id, row)
  VALUES (TG_ARGV[1], CASE TG_OP WHEN 'DELETE' THEN 'D' ELSE 'U' END, site, body - local_cols);
  RETURN NULL;
END
$fn$
"""
# New rows, by far the most (passages), once per statement from its transition table: a row trigger's
# call per row cost the ingest a third of its rate; this one INSERT ... SELECT far less (make bench).
_CAPTURE_INSERTS = """
CREATE OR REPLACE FUNCTION repl_capture_inserts() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF coalesce(current_setting('repl.applying', true), '') = 'on' THEN
    RETURN NULL;
  END IF;
  IF TG_ARGV[2] = '' THEN  -- json, not jsonb: the row is kept as text and sent as it is
    EXECUTE format('INSERT INTO repl_outbox (tbl, op, site_id, row) SELECT %L, ''U'', %s, to_json(n) FROM repl_new n',
                   TG_ARGV[1], TG_ARGV[0]);
  ELSE
    EXECUTE format('INSERT INTO repl_outbox (tbl, op, site_id, row) '
                   'SELECT %L, ''U'', %s, to_jsonb(n) - %L::text[] FROM repl_new n',
                   TG_ARGV[1], TG_ARGV[0], '{' || TG_ARGV[2] || '}');
  END IF;
  RETURN NULL;
END
$fn$
"""


def _site_sql(t: Table, row: str = "n") -> str:
    """The row's park as SQL over the row `row` (the transition table's in the trigger, the table's in a seed)."""
    if t.site is None:
        return "NULL::text"
    if t.site in ("person", "booking"):
        parent = "persons" if t.site == "person" else "bookings"
        return f"(SELECT p.site_id FROM {parent} p WHERE p.id = {row}.{t.site}_id)"
    return f"{row}.{t.site}::text"


def setup(conn: Connection, number: int) -> dict[str, int]:
    """Install the capture triggers and give this server's ids their own residue (idempotent).

    Returns, per table with a sequence, the next id it will give."""
    if not 1 <= number < STRIDE:
        raise ValueError(f"replication.number must be 1-{STRIDE - 1}")
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('repl_setup'))"))
    conn.execute(text(_CAPTURE_FUNCTION))
    conn.execute(text(_CAPTURE_INSERTS))
    for t in TABLES:
        local = ",".join(c for c, _ in t.keep_local)
        conn.execute(text(f"DROP TRIGGER IF EXISTS repl_capture ON {t.name}"))
        conn.execute(text(f"DROP TRIGGER IF EXISTS repl_capture_insert ON {t.name}"))
        args = ", ".join(f"'{a}'" for a in (t.site or "", t.name, local))
        conn.execute(text(f"CREATE TRIGGER repl_capture AFTER UPDATE OR DELETE ON {t.name} "
                          f"FOR EACH ROW EXECUTE FUNCTION repl_capture({args})"))
        conn.execute(text(f"CREATE TRIGGER repl_capture_insert AFTER INSERT ON {t.name} "
                          f"REFERENCING NEW TABLE AS repl_new FOR EACH STATEMENT "
                          f"EXECUTE FUNCTION repl_capture_inserts('{_site_sql(t)}', '{t.name}', '{local}')"))
    # Positions continue above any this database gave before, even restored from a backup (its sequence
    # then restarts lower, and the other server, which holds those positions, would take new changes for
    # old ones): they start at the clock's microseconds, far above a count of changes.
    conn.execute(text("SELECT setval('repl_pos', greatest((SELECT CASE WHEN is_called THEN last_value ELSE 0 END "
                      "FROM repl_pos), floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint))"))
    starts = {t.name: value for t in TABLES if (value := _stride(conn, t, number)) is not None}
    seed(conn, tables=("signing_keys",))  # registered at the first start, before the capture: the gates need them
    return starts


def _stride(conn: Connection, t: Table, number: int) -> int | None:
    if "id" not in t.columns:
        return None
    seq = conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": t.name}).scalar()
    if seq is None:
        return None  # ids chosen by people (ticket types: 0-65535, in the code)
    kind, increment, last = conn.execute(text(
        "SELECT data_type::text, increment_by, coalesce(last_value, 0) FROM pg_sequences "
        "WHERE format('%I.%I', schemaname, sequencename) = :s OR sequencename = :s"), {"s": seq}).one()
    if increment == STRIDE and last % STRIDE == number:
        return last + STRIDE  # already set up
    top = conn.execute(text(f"SELECT coalesce(max(id), 0) FROM {t.name}")).scalar() or 0
    start = max(top, last, ID_FLOOR.get(kind, ID_FLOOR["integer"]))
    start += (number - start) % STRIDE or STRIDE
    conn.execute(text(f"ALTER SEQUENCE {seq} INCREMENT BY {STRIDE} MINVALUE 1 RESTART WITH {start}"))
    return start


def seed(session: Session | Connection, sites: Sequence[str] | None = None,
         tables: Sequence[str] | None = None) -> int:
    """Put every current row (of `sites`, or all; of `tables`, or all) into the outbox: a new server's
    first copy, or a server that was set up after rows existed. Applying a row twice changes nothing, so
    seeding again is harmless. Returns the changes queued."""
    total = 0
    for t in TABLES:
        if tables is not None and t.name not in tables:
            continue
        local = ", ".join(f"'{c}'" for c, _ in t.keep_local)
        row = f"to_jsonb(r) - ARRAY[{local}]::text[]"
        site_expr = _site_sql(t, "r")
        where = f"{site_expr} = ANY(:sites)" if sites is not None and t.site is not None else "TRUE"
        result = session.execute(text(
            f"INSERT INTO repl_outbox (tbl, op, site_id, row) SELECT '{t.name}', 'U', {site_expr}, {row} "
            f"FROM {t.name} r WHERE {where} ORDER BY {', '.join('r.' + k for k in t.key)}"),
            {"sites": list(sites or ())})
        total += rowcount(result)
    return total


# --- sending ------------------------------------------------------------------------------------


def sequence(session: Session, limit: int = 20000) -> int:
    """Give committed changes their positions, in the order they were made; one sender at a time.
    Returns the last position given (so far, ever)."""
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext('repl_sequence'))"))
    last = session.execute(text("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM repl_pos")).scalar()
    base = int(last or 0)
    given = rowcount(session.execute(text(  # positions in the order the changes were made (row_number)
        "UPDATE repl_outbox o SET pos = :base + n.k FROM ("
        "  SELECT seq, row_number() OVER (ORDER BY seq) AS k FROM ("
        "    SELECT seq FROM repl_outbox WHERE pos IS NULL ORDER BY seq LIMIT :limit) s) n "
        "WHERE o.seq = n.seq"), {"base": base, "limit": limit}))
    if given:
        session.execute(text("SELECT setval('repl_pos', :top)"), {"top": base + given})
    return base + given


@dataclass(frozen=True)
class Pending:
    after: int
    upto: int  # every change up to here was looked at: those for the peer are in `changes`
    changes: list[tuple[int, str, str, str]]  # (pos, table, op, row as JSON text)


def pending(session: Session, sites: Sequence[str] | None, after: int, limit: int) -> Pending:
    """The changes after position `after` that a peer gets: a park server (its `sites`) gets its parks'
    rows and the rows for every park (signing keys), but not the head office's copies of its own gates'
    facts; the head office (`sites` None) gets a park server's rows of its parks (a park's signing key
    is not the head office's to trust)."""
    if sites is None:
        window = session.execute(text(
            "SELECT max(pos) FROM (SELECT pos FROM repl_outbox WHERE pos > :after ORDER BY pos LIMIT :limit) w"),
            {"after": after, "limit": limit}).scalar()
        top = window or after
        rows = session.execute(text(
            "SELECT pos, tbl, op, row::text FROM repl_outbox WHERE pos > :after AND pos <= :top "
            "AND site_id IS NOT NULL ORDER BY pos"), {"after": after, "top": top}).all()
    else:
        window = session.execute(text(
            "SELECT max(pos) FROM (SELECT pos FROM repl_outbox WHERE pos > :after ORDER BY pos LIMIT :limit) w"),
            {"after": after, "limit": limit * 4}).scalar()
        top = window or after
        rows = session.execute(text(
            "SELECT pos, tbl, op, row::text FROM repl_outbox WHERE pos > :after AND pos <= :top "
            "AND (site_id IS NULL OR site_id = ANY(:sites)) AND tbl <> ALL(:home) ORDER BY pos LIMIT :limit"),
            {"after": after, "top": top, "sites": list(sites), "home": list(HOME_FLOW), "limit": limit}).all()
        if len(rows) == limit:
            top = rows[-1][0]
    return Pending(after, top, [(r[0], r[1], r[2], r[3]) for r in rows])


def acknowledged(session: Session, peer: str, applied: int, behind: bool = False) -> int:
    """Record a peer's acknowledgement (only forward, unless `behind`: it answered a batch past what it
    holds, so it lost changes it had confirmed, restored from a backup, and gets them again); returns what
    it has confirmed."""
    row = session.get(ReplicationPeer, peer, with_for_update=True)
    if row is None:
        row = ReplicationPeer(peer=peer, acked_seq=0)
        session.add(row)
    row.acked_at = utcnow()  # heard from, even when it confirms nothing new
    if behind and applied < row.acked_seq:
        log.warning("replication: %s holds our changes up to %s only, not %s (restored?): sending them again",
                    peer, applied, row.acked_seq)
        row.acked_seq = applied
    row.acked_seq = max(row.acked_seq, applied)
    return row.acked_seq


def prune(session: Session, peers: Iterable[str], keep: timedelta = timedelta(days=7)) -> int:
    """Forget changes every peer confirmed `keep` ago (kept meanwhile for a peer restored from a backup)."""
    names = list(peers)
    if not names:
        return 0
    acked = dict(session.execute(select(ReplicationPeer.peer, ReplicationPeer.acked_seq)
                                 .where(ReplicationPeer.peer.in_(names))).all())
    low = min(acked.get(name, 0) for name in names)
    if low <= 0:
        return 0
    return rowcount(session.execute(text("DELETE FROM repl_outbox WHERE pos <= :low AND at < :before"),
                                    {"low": low, "before": utcnow() - keep}))


@dataclass(frozen=True)
class Link:
    """What a person sees of the link with another server."""

    peer: str
    sites: tuple[str, ...] | None  # the parks it is the home of (None: the head office)
    heard_at: datetime | None  # its last batch or acknowledgement
    waiting: int  # this server's changes it has not confirmed
    parked: int  # its changes that would not apply here
    up: bool


def links(session: Session, peers: dict[str, tuple[str, ...] | None], now: datetime | None = None,
          quiet_s: float = 60.0) -> list[Link]:
    """Each peer's link: up while it was heard from in the last `quiet_s` (replicators say something every
    15 s even with nothing to send)."""
    now = now or utcnow()
    names = list(peers)
    acked = {p.peer: p for p in session.scalars(select(ReplicationPeer).where(ReplicationPeer.peer.in_(names)))}
    applied = {a.origin: a for a in session.scalars(
        select(ReplicationApplied).where(ReplicationApplied.origin.in_(list(peers))))}
    parked = dict(session.execute(select(ReplicationParked.origin, func.count()).where(
        ReplicationParked.origin.in_(list(peers))).group_by(ReplicationParked.origin)).all())
    out = []
    for name, sites in peers.items():
        times = [t for t in (getattr(acked.get(name), "acked_at", None),
                             getattr(applied.get(name), "applied_at", None)) if t is not None]
        heard = max(times) if times else None
        confirmed = acked[name].acked_seq if name in acked else 0
        if sites is None:
            theirs, args = "site_id IS NOT NULL", {}
        else:
            theirs, args = "(site_id IS NULL OR site_id = ANY(:sites)) AND tbl <> ALL(:home)", {
                "sites": list(sites), "home": list(HOME_FLOW)}
        waiting = session.execute(text(  # counted up to 100,000: enough to say how far behind
            f"SELECT count(*) FROM (SELECT 1 FROM repl_outbox WHERE (pos IS NULL OR pos > :c) AND {theirs} "
            "LIMIT 100000) w"), {"c": confirmed, **args}).scalar() or 0
        out.append(Link(name, sites, heard, waiting, int(parked.get(name, 0)),
                        heard is not None and (now - heard).total_seconds() <= quiet_s))
    return out


# --- applying -----------------------------------------------------------------------------------


@functools.cache
def _upsert_sql(table: str, at_home: bool) -> str:
    t = BY_NAME[table]
    local = dict(t.keep_local)
    cols = [c for c in t.columns if c not in local]
    key = t.key
    own_id = bool(t.pk) and "id" not in t.pk  # a natural key: the row keeps this server's id
    taken = [c for c in cols if c not in key and not (at_home and c in t.home_columns) and not (own_id and c == "id")]
    sets = {c: f"EXCLUDED.{c}" for c in taken}
    if t.merge == "status":
        order = "ARRAY[" + ", ".join(f"'{s}'" for s in STATUS_ORDER) + "]"
        forward = (f"coalesce(array_position({order}, EXCLUDED.status::text), 0) >= "
                   f"coalesce(array_position({order}, {table}.status::text), 0)")
        sets["status"] = f"CASE WHEN {forward} THEN EXCLUDED.status ELSE {table}.status END"
        sets["status_changed_at"] = (f"CASE WHEN {forward} THEN EXCLUDED.status_changed_at "
                                     f"ELSE {table}.status_changed_at END")
    elif t.merge == "resolution":  # the earlier resolution stands, whichever side hears of the other first
        theirs = (f"{table}.resolved_at IS NULL OR (EXCLUDED.resolved_at IS NOT NULL AND "
                  f"(EXCLUDED.resolved_at, EXCLUDED.resolved_by) < ({table}.resolved_at, {table}.resolved_by))")
        for c in ("resolved_at", "resolved_by", "resolution", "resolution_note"):
            sets[c] = f"CASE WHEN {theirs} THEN EXCLUDED.{c} ELSE {table}.{c} END"
    names = ", ".join([*cols, *local])
    values = ", ".join([*cols, *local.values()])  # a new row's own bookkeeping starts afresh
    action = ("DO UPDATE SET " + ", ".join(f"{c} = {v}" for c, v in sets.items())) if sets else "DO NOTHING"
    # A row changed twice in one run (a zone's counts, a ticket sold and refunded): its last image only, as
    # ON CONFLICT cannot change one row twice in a statement.
    keys = ", ".join(key)
    last = (f"(SELECT DISTINCT ON ({keys}) * FROM jsonb_populate_recordset(NULL::{table}, CAST(:rows AS jsonb)) "
            f"WITH ORDINALITY AS x ORDER BY {keys}, ordinality DESC) AS r")
    return f"INSERT INTO {table} ({names}) SELECT {values} FROM {last} ON CONFLICT ({keys}) {action}"


@functools.cache
def _delete_sql(table: str) -> str:
    key = ", ".join(BY_NAME[table].key)
    return (f"DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM "
            f"jsonb_populate_recordset(NULL::{table}, CAST(:rows AS jsonb)))")


@dataclass
class Applied:
    applied: int  # what this server now holds of the origin's changes (the acknowledgement)
    rows: int = 0
    parked: int = 0
    gap: bool = False
    conflicts: int = 0
    rechecked: int = 0  # passages of tickets this server had not heard of yet, now counted


def apply(session: Session, origin: str, after: int, upto: int, changes: Sequence[tuple[int, str, str, str]],
          is_home: Callable[[str], bool], allowed_sites: set[str] | None = None) -> Applied:
    """Apply one batch of `origin`'s changes in the caller's transaction (see the module doc).

    `allowed_sites`: the parks `origin` is the home of (a park server's changes at the head office): a
    change for another park, or for every park (a signing key), is parked, not applied."""
    state = session.get(ReplicationApplied, origin, with_for_update=True)
    if state is None:
        state = ReplicationApplied(origin=origin, seq=0)
        session.add(state)
        session.flush()
    if after > state.seq:
        return Applied(state.seq, gap=True)  # something between is missing: the sender goes back
    state.applied_at = utcnow()  # heard from: a keep-alive batch says the link is up
    if upto <= state.seq:
        return Applied(state.seq)  # all here already
    result = Applied(upto)
    fresh = []
    for change in changes:
        pos, table, op, row = change
        if pos <= state.seq:
            continue
        if table in BY_NAME and op in ("U", "D"):
            fresh.append(change)
            continue
        # not a table this server replicates (staff users, a newer version's table): kept, never applied
        error = f"{origin} sent a change of {table!r} ({op!r}), which is not replicated here"
        log.error("replication: change %s refused: %s", pos, error)
        session.add(ReplicationParked(origin=origin, seq=pos, tbl=str(table)[:64], row=_as_json(row), error=error))
        result.parked += 1
    if allowed_sites is not None:
        fresh = _only_allowed(session, origin, fresh, allowed_sites, result)
    session.execute(text("SELECT set_config(:k, 'on', true)"), {"k": APPLYING})
    try:
        for table, op, run in _runs(fresh):
            _apply_run(session, origin, table, op, run, is_home, result)
    finally:
        session.execute(text("SELECT set_config(:k, '', true)"), {"k": APPLYING})
    _after_apply(session, fresh, is_home, result)
    state.seq = upto
    return result


def _as_json(row: str):
    try:
        return json.loads(row)
    except ValueError:
        return {"text": row[:2000]}


def _only_allowed(session: Session, origin: str, changes, allowed: set[str], result: Applied) -> list:
    kept = []
    parents = {(table, data.get("id")): data.get("site_id") for _p, table, _o, row in changes
               if table in ("persons", "bookings") for data in [json.loads(row)]}  # this batch's parents
    for change in changes:
        pos, table, _op, row = change
        site = _site_of(session, BY_NAME[table], json.loads(row), parents)
        if site in allowed:
            kept.append(change)
            continue
        error = (f"{origin} is not the home server of park {site!r}" if site is not None
                 else f"{origin} is a park server: a change for every park ({table}) is the head office's")
        log.error("replication: change %s of %s (%s) refused: %s", pos, origin, table, error)
        session.add(ReplicationParked(origin=origin, seq=pos, tbl=table, row=json.loads(row), error=error))
        result.parked += 1
    return kept


def _site_of(session: Session, t: Table, data: dict, parents: dict) -> str | None:
    if t.site is None:
        return None
    if t.site in ("person", "booking"):
        parent = "persons" if t.site == "person" else "bookings"
        if (parent, data.get(f"{t.site}_id")) in parents:
            return parents[parent, data.get(f"{t.site}_id")]
        return session.execute(text(f"SELECT site_id FROM {parent} WHERE id = :id"),
                               {"id": data.get(f"{t.site}_id")}).scalar()
    value = data.get(t.site)
    return None if value is None else str(value)


def _runs(changes: Sequence[tuple[int, str, str, str]]):
    """Consecutive changes of one table and operation, in order (foreign keys hold as they were made)."""
    run: list[tuple[int, str, str, str]] = []
    for change in changes:
        if run and (run[-1][1], run[-1][2]) != (change[1], change[2]):
            yield run[0][1], run[0][2], run
            run = []
        run.append(change)
    if run:
        yield run[0][1], run[0][2], run


def _at_home(table: str, rows: Sequence[str], is_home: Callable[[str], bool]) -> bool:
    t = BY_NAME[table]
    if not t.home_columns or t.site is None:
        return False
    # a run of one table's rows is for one park nearly always; mixed, each row goes on its own
    sites = {json.loads(r).get(t.site) for r in rows}
    return len(sites) == 1 and is_home(str(next(iter(sites))))


def _apply_run(session: Session, origin: str, table: str, op: str, run, is_home, result: Applied) -> None:
    rows = [c[3] for c in run]
    if BY_NAME[table].home_columns and len(rows) > 1 and len({json.loads(r).get(BY_NAME[table].site)
                                                              for r in rows}) > 1:
        for change in run:  # rows of several parks, some at home: each with its own merge
            _apply_run(session, origin, table, op, [change], is_home, result)
        return
    sql = _delete_sql(table) if op == "D" else _upsert_sql(table, _at_home(table, rows, is_home))
    try:
        with session.begin_nested():
            session.execute(text(sql), {"rows": "[" + ",".join(rows) + "]"})
        result.rows += len(rows)
        return
    except DBAPIError as exc:
        if len(run) > 1:
            for change in run:  # find the row that will not apply; the others do
                _apply_run(session, origin, table, op, [change], is_home, result)
            return
        error = str(getattr(exc, "orig", exc)).strip()[:2000]
    pos, _table, _op, row = run[0]
    log.error("replication: change %s of %s (%s) parked: %s", pos, origin, table, error.splitlines()[0])
    session.add(ReplicationParked(origin=origin, seq=pos, tbl=table, row=json.loads(row), error=error))
    result.parked += 1


def _after_apply(session: Session, changes, is_home: Callable[[str], bool], result: Applied) -> None:
    """What applied changes mean for this server's own gates: deltas, configs, conflicts."""
    from central.services.gates import bump_site_configs
    from central.services.sync import pass_change, record_deltas, template_change, ticket_change
    from protocol.messages import Change

    ids: dict[str, set] = {}
    configs: set[str | None] = set()
    for _pos, table, op, row in changes:
        if op != "U":
            continue
        if table in ("tickets", "annual_passes", "biometric_templates"):
            ids.setdefault(table, set()).add(json.loads(row)["id"])
        elif table in ("signing_keys", "ticket_types", "zones", "sites", "booking_settings"):
            data = json.loads(row)
            site = data.get("site_id", data.get("id")) if table != "signing_keys" else None
            if site is None or is_home(site):
                configs.add(site)
    deltas: dict[str, list[Change]] = {}
    if ids.get("tickets"):
        tickets = session.scalars(select(Ticket).where(Ticket.id.in_(ids["tickets"]))).all()
        home = [t for t in tickets if is_home(t.site_id)]
        for t in home:  # what gates must hear of, as the desk's sales: real names and ends (codes pass alone)
            if t.id_digest or t.status != "valid":
                deltas.setdefault(t.site_id, []).append(ticket_change(t))
        result.conflicts += _refunds_after_use(session, [t for t in home if t.status == "refunded"])
        result.rechecked += _recheck_unknown(session, home)
    if ids.get("annual_passes"):
        for p in session.scalars(select(AnnualPass).where(AnnualPass.id.in_(ids["annual_passes"]))):
            if is_home(p.site_id):
                deltas.setdefault(p.site_id, []).append(pass_change(p))
    if ids.get("biometric_templates"):
        from central.models import Person

        templates = select(BiometricTemplate, Person.site_id).join(Person, Person.id == BiometricTemplate.person_id)
        for tpl, site in session.execute(templates.where(BiometricTemplate.id.in_(ids["biometric_templates"]))):
            if is_home(site):
                deltas.setdefault(site, []).append(template_change(tpl))
    if deltas:
        record_deltas(session, deltas)
    _recount_places(session, changes)
    if None in configs:
        bump_site_configs(session)
    else:
        for site in configs:
            bump_site_configs(session, site)


def _recount_places(session: Session, changes) -> None:
    """Slot and day counts from the tickets that hold the places. Each server counts its own sales into
    the rows as it makes them; with the other server's sales applied the counts are recounted, so both
    reach the same figure (while the link was down both may have sold the last places: the count then
    shows it above the capacity, as it is)."""
    quotas: set[int] = set()
    days: set[tuple[str, str]] = set()
    for _pos, table, op, row in changes:
        if op == "U" and table in ("tickets", "bookings"):
            data = json.loads(row)
            if data.get("quota_id") is not None:
                quotas.add(int(data["quota_id"]))
            if table == "bookings":
                days.add((data["site_id"], data["day"]))
    if quotas:
        session.execute(text(
            "UPDATE slot_quotas q SET booked = n.booked FROM ("
            "  SELECT q2.id, coalesce(sum(t.headcount), 0) AS booked FROM slot_quotas q2 LEFT JOIN tickets t "
            "  ON t.quota_id = q2.id AND t.status NOT IN ('refunded', 'revoked') "
            "  WHERE q2.id = ANY(:ids) GROUP BY q2.id) n WHERE q.id = n.id AND q.booked <> n.booked"),
            {"ids": sorted(quotas)})
    for site, day in sorted(days):
        session.execute(text(
            "UPDATE booking_days d SET booked = n.booked FROM (SELECT count(t.id) AS booked FROM bookings b "
            "  JOIN booking_persons p ON p.booking_id = b.id JOIN tickets t ON t.id = p.ticket_id "
            "  WHERE b.site_id = :site AND b.day = CAST(:day AS date) AND t.status NOT IN ('refunded', 'revoked')) n "
            "WHERE d.site_id = :site AND d.day = CAST(:day AS date) AND d.booked <> n.booked"),
            {"site": site, "day": day})


def _recheck_unknown(session: Session, tickets: Sequence[Ticket]) -> int:
    """Passages of tickets sold elsewhere while the link was down: the gates admitted them on their signed
    codes, but the ingest, not knowing the ticket, stored them as `unknown_credential` and counted nothing.
    Now the ticket is here they go through the ingest again (same event ids), and count once."""
    from central.models import PassageEventRecord as E
    from central.services.ingest import ingest_batch
    from protocol.messages import PassageEvent

    refs = {(t.site_id, t.ref) for t in tickets}
    if not refs:
        return 0
    rows = session.scalars(select(E).where(E.flag == "unknown_credential",
                                           E.credential_ref.in_({ref for _site, ref in refs}))).all()
    events = [r for r in rows if (r.site_id, r.credential_ref) in refs]
    if not events:
        return 0
    # the stored values were checked when they first came in; convert checks them again
    again = [msgspec.convert({
        "id": r.event_id, "site": r.site_id, "gate": r.gate, "zone": r.zone, "at": r.at, "direction": r.direction,
        "credential_kind": r.credential_kind, "credential_ref": r.credential_ref, "decision": r.decision,
        "reason": r.reason, "passed": r.passed, "headcount": r.headcount, "offline": r.offline, "mode": r.mode,
        "ticket_type": r.ticket_type, "claim_id": r.claim_id}, PassageEvent) for r in events]
    received = min(r.received_at for r in events)
    for r in events:
        session.delete(r)
    session.flush()
    ingest_batch(session, again, received_at=received, shard="repl")
    return len(again)


def _refunds_after_use(session: Session, refunded: Sequence[Ticket]) -> int:
    """A ticket refunded elsewhere that this park's gates admitted (the link was down): a conflict."""
    from sqlalchemy.dialects.postgresql import insert

    made = 0
    for t in refunded:
        usage = session.get(CredentialUsage, (t.site_id, t.ref))
        if usage is None or usage.entries <= 0:
            continue
        at: datetime = usage.last_entry_at or t.status_changed_at or utcnow()
        result = session.execute(insert(Conflict).values(
            event_id=f"refund:{t.ref}", site_id=t.site_id, credential_ref=t.ref, reason=REFUNDED_AFTER_USE,
            gate=usage.last_gate or "", other_gate=None, at=at, offline=False, created_at=utcnow(),
        ).on_conflict_do_nothing(index_elements=["event_id"]).returning(Conflict.id))
        made += len(result.all())
    return made


__all__ = ["TABLES", "Applied", "Link", "Pending", "acknowledged", "apply", "links", "pending", "prune",
           "seed", "sequence", "setup"]
