"""The gate's local store: one SQLite file in WAL mode.

It holds the credential cache (tickets the gate must know beyond their code, annual passes, holder
templates), usage per credential, the event ids of other gates' passages already applied, the outbox
of passage events, the gate's own passage counts of the last few park days (`day_counts`, moved in the
outbox row's transaction) and a few meta values (applied config, delta sequence, snapshot id).

Durability: every connection runs with `synchronous=FULL`. In WAL mode NORMAL may lose the last
commits on power loss (the WAL is not synced at commit), and the outbox is the one place where a lost
commit is a lost passage; a gate commits a handful of times per passage, so one fsync each is cheap
next to the arm's seconds. Bulk loads (a snapshot) commit once per chunk.

Biometric templates are personal data: with a `TemplateCipher` (the key from the gate's TOML, see
`gate_agent.template_key`) every template row and every same-person binding is stored as an AES-GCM
record bound to its holder (or credential), and outbox rows that carry a binding are sealed too; they
are decrypted only into memory. A store opened without a key keeps no templates and no bindings.
`secure_delete` is on, so a forgotten holder's records are overwritten, not left in free pages.

Each thread gets its own connection (WAL lets readers go on while one thread writes); writers take
`BEGIN IMMEDIATE` and wait up to `busy_timeout` for each other. Lookups are by primary key or an
index, so a decision stays well under a millisecond with a million cached tickets.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import msgspec

from protocol import messages as m
from protocol.ids import pass_ref
from protocol.rules import Status, Usage

log = logging.getLogger(__name__)

_CACHE_TABLES = {
    "tickets": "ticket_id INTEGER PRIMARY KEY, ticket_type INTEGER NOT NULL, status TEXT NOT NULL, "
               "valid_from REAL, valid_to REAL, slot_start REAL, slot_end REAL, "
               "headcount INTEGER NOT NULL DEFAULT 1, zones TEXT NOT NULL DEFAULT '', id_digest TEXT",
    "passes": "pass_id INTEGER PRIMARY KEY, holder_id TEXT NOT NULL, card_uid TEXT NOT NULL DEFAULT '', "
              "status TEXT NOT NULL, valid_from REAL, valid_to REAL, zones TEXT NOT NULL DEFAULT ''",
    "templates": "holder_id TEXT NOT NULL, kind TEXT NOT NULL, finger INTEGER NOT NULL DEFAULT 0, "
                 "version INTEGER NOT NULL DEFAULT 1, data BLOB NOT NULL, PRIMARY KEY (holder_id, kind, finger)",
}
SCHEMA = "".join(
    f"CREATE TABLE IF NOT EXISTS {prefix}{name} ({cols});\n"
    for name, cols in _CACHE_TABLES.items() for prefix in ("", "snap_")
) + """
CREATE INDEX IF NOT EXISTS tickets_id_digest ON tickets(id_digest) WHERE id_digest IS NOT NULL;
CREATE INDEX IF NOT EXISTS passes_card_uid ON passes(card_uid) WHERE card_uid != '';
CREATE INDEX IF NOT EXISTS passes_holder ON passes(holder_id);
CREATE TABLE IF NOT EXISTS usage (
    credential_ref TEXT PRIMARY KEY, entries INTEGER NOT NULL DEFAULT 0, exits INTEGER NOT NULL DEFAULT 0,
    last_entry_at REAL, binding BLOB);
CREATE TABLE IF NOT EXISTS applied_events (event_id TEXT PRIMARY KEY, applied_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS applied_events_at ON applied_events(applied_at);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL,
    payload BLOB NOT NULL, created_at REAL NOT NULL,
    sent_at REAL,                            -- the broker acknowledged it (PUBACK); NULL: not yet
    resends INTEGER NOT NULL DEFAULT 0);     -- sent again for want of the central's EventAck
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS day_counts (
    day TEXT NOT NULL, zone INTEGER NOT NULL,  -- the park's day (its time zone), ISO; the passage's zone
    entries INTEGER NOT NULL DEFAULT 0, exits INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (day, zone));
CREATE TABLE IF NOT EXISTS fp_slots (
    slot INTEGER PRIMARY KEY, holder_id TEXT NOT NULL, finger INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 1);
"""
# A fingerprint slot whose holder must no longer match: holder_id '' until the module's slot is deleted.
# A ticket's finger taken at a gate (人票绑定) lives in its usage binding, not in the central's templates.
_TOMBSTONE_SLOTS = (
    "UPDATE fp_slots SET holder_id = '' WHERE holder_id != '' AND NOT EXISTS (SELECT 1 FROM templates t "
    "WHERE t.holder_id = fp_slots.holder_id AND t.kind = 'fingerprint' AND t.finger = fp_slots.finger) "
    "AND NOT EXISTS (SELECT 1 FROM usage u WHERE u.credential_ref = fp_slots.holder_id AND u.binding IS NOT NULL)")
_SEALED = b"\x00"  # an outbox payload sealed with the template key (JSON never starts with NUL)
APPLIED_EVENTS_KEEP_S = 2 * 24 * 3600
MAX_COUNTED_ZONE = 32  # a GateConfig's zones (and a GateCounts tally's)
BINDING_KEEP_S = 2 * 24 * 3600  # longer than a day ticket's visit, short enough to be "when it ends"


def ts(at: datetime | None) -> float | None:
    return at.timestamp() if at is not None else None


def dt(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def _zones(text: str) -> frozenset[int]:
    return frozenset(int(z) for z in text.split(",") if z)


def _zones_text(zones: Iterable[int]) -> str:
    return ",".join(str(z) for z in sorted(set(zones)))


@dataclass(frozen=True, slots=True)
class TicketRow:
    ticket_id: int
    ticket_type: int
    status: Status
    valid_from: datetime | None
    valid_to: datetime | None
    slot_start: datetime | None
    slot_end: datetime | None
    headcount: int
    zones: frozenset[int]
    id_digest: str | None


@dataclass(frozen=True, slots=True)
class PassRow:
    pass_id: int
    holder_id: str
    card_uid: str
    status: Status
    valid_from: datetime | None
    valid_to: datetime | None
    zones: frozenset[int]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    event_id: str
    topic: str
    payload: bytes


def _ticket(row) -> TicketRow:
    return TicketRow(row[0], row[1], row[2], dt(row[3]), dt(row[4]), dt(row[5]), dt(row[6]), row[7],
                     _zones(row[8]), row[9])


def _pass(row) -> PassRow:
    return PassRow(row[0], row[1], row[2], row[3], dt(row[4]), dt(row[5]), _zones(row[6]))


class Store:
    """The gate's SQLite file; safe to use from several threads (one connection each)."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0, cipher=None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_s = busy_timeout_s
        self.cipher = cipher  # a biometrics.protect.TemplateCipher, or None: no templates kept
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self.db.executescript(SCHEMA)
        self._upgrade_outbox()
        self._upgrade_usage()
        if cipher is not None and self.meta("templates_sealed") != "1":
            self._seal_plain_rows()

    # -- connections ---------------------------------------------------------------------------

    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.execute("PRAGMA cache_size=-16000")
            conn.execute("PRAGMA secure_delete=ON")  # a forgotten template leaves no copy in free pages
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def write(self, *, fsync: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction: all or nothing.

        `fsync=False` commits without waiting for the disk (WAL with synchronous=NORMAL): the commit
        survives the process being killed, not a power cut. Only for notes whose loss in a power cut
        loses nothing else, kept off the hot path's disk wait (the pending-passage note: a power cut
        stops the turnstile too)."""
        conn = self.db
        if not fsync:
            conn.execute("PRAGMA synchronous=NORMAL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            if not fsync:
                conn.execute("PRAGMA synchronous=FULL")

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()

    # -- meta ----------------------------------------------------------------------------------

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str | None, conn: sqlite3.Connection | None = None, *,
                 fsync: bool = True) -> None:
        if conn is None:
            with self.write(fsync=fsync) as c:
                self.set_meta(key, value, c)
            return
        conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                     (key, value))

    @property
    def seq(self) -> int:
        return int(self.meta("delta_seq", "0") or 0)

    def save_config(self, payload: bytes, version: int) -> None:
        """Keep the applied GateConfig, without the site's ID-number salt (`gate_agent.id_key` keeps it
        apart: the store holds the digests it keys)."""
        with self.write() as c:
            self.set_meta("config", without_id_salt(payload).decode(), c)
            self.set_meta("config_version", str(version), c)

    def saved_config(self) -> bytes | None:
        """The last applied GateConfig; its `id_salt` is NO_SALT unless the store predates the key file."""
        text = self.meta("config")
        return text.encode() if text else None

    def checkpoint(self) -> None:
        """Copy the WAL into the main file and empty it (old page images of rewritten rows with it)."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- credential cache ----------------------------------------------------------------------

    def ticket(self, ticket_id: int) -> TicketRow | None:
        row = self.db.execute("SELECT * FROM tickets WHERE ticket_id = ?", (ticket_id,)).fetchone()
        return _ticket(row) if row else None

    def tickets_by_digest(self, digest: str) -> list[TicketRow]:
        rows = self.db.execute("SELECT * FROM tickets WHERE id_digest = ?", (digest,)).fetchall()
        return [_ticket(r) for r in rows]

    def pass_by_uid(self, card_uid: str) -> PassRow | None:
        # "card_uid != ''" lets SQLite use the partial index passes_card_uid (else: a scan of every pass).
        row = self.db.execute("SELECT * FROM passes WHERE card_uid = ? AND card_uid != '' "
                              "ORDER BY status = 'active' DESC LIMIT 1", (card_uid,)).fetchone()
        return _pass(row) if row else None

    def passes_of(self, holder_id: str) -> list[PassRow]:
        rows = self.db.execute("SELECT * FROM passes WHERE holder_id = ? ORDER BY status = 'active' DESC, pass_id",
                               (holder_id,)).fetchall()
        return [_pass(r) for r in rows]

    # -- templates at rest ----------------------------------------------------------------------

    def _seal(self, data: bytes, owner: str, kind: str) -> bytes:
        return self.cipher.encrypt(data, owner, kind)

    def _open(self, record: bytes, owner: str, kind: str, *, quiet: bool = False) -> bytes | None:
        from biometrics.protect import TemplateDecryptError

        try:
            return self.cipher.decrypt(record, owner, kind)
        except TemplateDecryptError as exc:
            if not quiet:  # a binding of the other kind is expected to fail here (its seal names its kind)
                log.warning("a stored %s template record was skipped: %s", kind, exc)
            return None

    def finger_bindings(self) -> list[tuple[str, bytes]]:
        """(ticket ref, module template) of every ticket bound by fingerprint (人票绑定), for the module's slots.
        A binding's seal names its kind, so a face binding does not open as a fingerprint one."""
        if self.cipher is None:
            return []
        rows = self.db.execute("SELECT credential_ref, binding FROM usage WHERE binding IS NOT NULL").fetchall()
        out = []
        for ref, record in rows:
            data = self._open(record, ref, "fingerprint", quiet=True)
            if data is not None:
                out.append((ref, data))
        return out

    def _seal_plain_rows(self) -> None:
        """Once, for a store written before templates were sealed: seal its template rows and bindings."""
        with self.write() as c:
            for table in ("templates", "snap_templates"):
                rows = c.execute(f"SELECT rowid, holder_id, kind, data FROM {table}").fetchall()
                c.executemany(f"UPDATE {table} SET data = ? WHERE rowid = ?",
                              [(self._seal(d, h, k), r) for r, h, k, d in rows])
            rows = c.execute("SELECT credential_ref, binding FROM usage WHERE binding IS NOT NULL").fetchall()
            c.executemany("UPDATE usage SET binding = ? WHERE credential_ref = ?",
                          [(self._seal(b, ref, "face"), ref) for ref, b in rows])
            self.set_meta("templates_sealed", "1", c)

    def templates(self, holder_id: str, kind: str) -> list[bytes]:
        """The holder's templates of `kind`, decrypted (records that fail to decrypt are skipped)."""
        if self.cipher is None:
            return []
        rows = self.db.execute("SELECT data FROM templates WHERE holder_id = ? AND kind = ? ORDER BY finger",
                               (holder_id, kind)).fetchall()
        return [t for (r,) in rows if (t := self._open(r, holder_id, kind)) is not None]

    def all_templates(self, kind: str) -> list[tuple[str, int, bytes]]:
        """(holder, finger, template) for every stored template of `kind`, decrypted."""
        return [(h, f, t) for h, f, _v, t in self.all_template_versions(kind)]

    def all_template_versions(self, kind: str) -> list[tuple[str, int, int, bytes]]:
        return list(self.iter_templates(kind))

    def iter_templates(self, kind: str) -> Iterator[tuple[str, int, int, bytes]]:
        """(holder, finger, version, template) decrypted one row at a time: loading 100,000 faces never
        holds them all twice (rows and index) in memory."""
        if self.cipher is None:
            return
        cursor = self.db.execute("SELECT holder_id, finger, version, data FROM templates WHERE kind = ?", (kind,))
        for h, f, v, r in cursor:
            t = self._open(r, h, kind)
            if t is not None:
                yield h, f, v, t

    def count_templates(self, kind: str) -> int:
        return self.db.execute("SELECT count(*) FROM templates WHERE kind = ?", (kind,)).fetchone()[0]

    # -- fingerprint module slots --------------------------------------------------------------

    def fp_slots(self) -> dict[int, tuple[str, int, int]]:
        """slot -> (holder_id, version, finger) as the module holds it; holder '' = to be emptied."""
        rows = self.db.execute("SELECT slot, holder_id, version, finger FROM fp_slots").fetchall()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def fp_slot_holder(self, slot: int) -> str | None:
        row = self.db.execute("SELECT holder_id FROM fp_slots WHERE slot = ?", (slot,)).fetchone()
        return row[0] or None if row else None

    def fp_slot_set(self, slot: int, holder_id: str, version: int = 1, finger: int = 0) -> None:
        with self.write() as c:
            c.execute("INSERT OR REPLACE INTO fp_slots(slot, holder_id, finger, version) VALUES (?, ?, ?, ?)",
                      (slot, holder_id, finger, version))

    def fp_slot_clear(self, slot: int) -> None:
        with self.write() as c:
            c.execute("DELETE FROM fp_slots WHERE slot = ?", (slot,))

    def counts(self) -> dict[str, int]:
        db = self.db
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("tickets", "passes", "templates", "usage", "outbox", "applied_events", "fp_slots")}

    # -- changes from the central --------------------------------------------------------------

    def _apply(self, conn: sqlite3.Connection, changes: Iterable[m.Change], prefix: str = "") -> None:
        tickets, passes, templates = f"{prefix}tickets", f"{prefix}passes", f"{prefix}templates"
        for ch in changes:
            if isinstance(ch, m.TicketChange):
                conn.execute(
                    f"INSERT OR REPLACE INTO {tickets} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (ch.ticket_id, ch.ticket_type, ch.status, ts(ch.valid_from), ts(ch.valid_to), ts(ch.slot_start),
                     ts(ch.slot_end), ch.headcount, _zones_text(ch.zones), ch.id_digest))
            elif isinstance(ch, m.PassChange):
                conn.execute(
                    f"INSERT OR REPLACE INTO {passes} VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (ch.pass_id, ch.holder_id, ch.card_uid, ch.status, ts(ch.valid_from), ts(ch.valid_to),
                     _zones_text(ch.zones)))
            elif isinstance(ch, m.TemplateChange):
                if self.cipher is None:
                    log.warning("no template key: a %s template was not kept", ch.kind)
                    continue
                conn.execute(f"INSERT OR REPLACE INTO {templates} VALUES (?, ?, ?, ?, ?)",
                             (ch.holder_id, ch.kind, ch.finger, ch.version, self._seal(ch.data, ch.holder_id, ch.kind)))
            elif isinstance(ch, m.HolderForget):
                conn.execute(f"DELETE FROM {templates} WHERE holder_id = ?", (ch.holder_id,))
                refs = [pass_ref(r[0]) for r in
                        conn.execute(f"SELECT pass_id FROM {passes} WHERE holder_id = ?", (ch.holder_id,))]
                conn.executemany("UPDATE usage SET binding = NULL WHERE credential_ref = ?", [(r,) for r in refs])

    def apply_delta(self, delta: m.Delta) -> None:
        """Apply one delta and move the sequence to its `seq`, in one transaction."""
        with self.write() as c:
            self._apply(c, delta.changes)
            c.execute(_TOMBSTONE_SLOTS)
            self.set_meta("delta_seq", str(delta.seq), c)

    def snapshot_chunk(self, chunk: m.SnapshotChunk) -> None:
        """Stage one chunk; the first clears the staging tables, the last swaps them in atomically."""
        with self.write() as c:
            if chunk.index == 0:
                for t in ("snap_tickets", "snap_passes", "snap_templates"):
                    c.execute(f"DELETE FROM {t}")
            self._apply(c, chunk.changes, prefix="snap_")
            self.set_meta("snapshot_staging", f"{chunk.snapshot_id}:{chunk.index}", c)
            if chunk.last:
                for t in ("tickets", "passes", "templates"):
                    c.execute(f"DELETE FROM {t}")
                    c.execute(f"INSERT INTO {t} SELECT * FROM snap_{t}")
                    c.execute(f"DELETE FROM snap_{t}")
                c.execute(_TOMBSTONE_SLOTS)
                self.set_meta("snapshot_id", chunk.snapshot_id, c)
                self.set_meta("snapshot_at", str(time.time()), c)
                self.set_meta("delta_seq", str(chunk.seq), c)
                self.set_meta("snapshot_staging", None, c)

    # -- usage ---------------------------------------------------------------------------------

    def usage(self, ref: str) -> tuple[Usage, bytes | None]:
        """The credential's usage and its same-person binding (decrypted), if any."""
        row = self.db.execute("SELECT entries, exits, last_entry_at, binding FROM usage WHERE credential_ref = ?",
                              (ref,)).fetchone()
        if row is None:
            return Usage(), None
        binding = self._open(row[3], ref, "face", quiet=True) if row[3] is not None and self.cipher is not None \
            else None
        # A binding that cannot be read still counts as bound: the re-entry is then refused, not waved through.
        return Usage(entries=row[0], exits=row[1], last_entry_at=dt(row[2]), bound=row[3] is not None), binding

    def _count(self, conn: sqlite3.Connection, event: m.PassageEvent) -> None:
        ref = event.credential_ref
        if not ref or not event.passed:
            return
        at = ts(event.at)
        n = event.headcount
        if event.direction == "in":
            conn.execute(
                "INSERT INTO usage(credential_ref, entries, exits, last_entry_at, binding, photo) "
                "VALUES (?, ?, 0, ?, ?, ?) "
                "ON CONFLICT(credential_ref) DO UPDATE SET entries = entries + excluded.entries, "
                "last_entry_at = max(coalesce(last_entry_at, 0), excluded.last_entry_at), "
                "binding = coalesce(binding, excluded.binding), photo = coalesce(photo, excluded.photo)",
                (ref, n, at, self._seal(event.binding, ref, event.binding_kind) if event.binding and self.cipher
                 else None,
                 self._seal(event.photo, ref, "photo") if event.photo and event.binding and self.cipher else None))
        else:
            # An exit never takes the count below zero inside: anti-passback stays meaningful.
            conn.execute("UPDATE usage SET exits = min(entries, exits + ?) WHERE credential_ref = ?", (n, ref))

    def record(self, event: m.PassageEvent, topic: str, day: date | None = None) -> int:
        """Usage and the gate's count of park `day` (for a confirmed passage) and the outbox row in ONE
        transaction: a count never holds a passage the outbox lacks, nor the reverse. Returns the outbox seq."""
        payload = m.encode(event)
        if event.binding and self.cipher is not None:
            payload = _SEALED + self._seal(payload, event.id, "face")  # the binding waits for the broker sealed
        with self.write() as c:
            self._count(c, event)
            if day is not None:
                _count_day(c, event, day)
            cur = c.execute("INSERT INTO outbox(event_id, topic, payload, created_at) VALUES (?, ?, ?, ?)",
                            (event.id, topic, payload, time.time()))
            if event.passed:  # the passage under way is stored: the agent's note of it goes with it
                c.execute("DELETE FROM meta WHERE key = 'pending_passage'")
            assert cur.lastrowid is not None  # an INSERT's row id
            return cur.lastrowid

    def day_counts(self, day: date) -> list[m.ZoneTally]:
        """The gate's own passages on park `day`, per zone (none: an empty list)."""
        rows = self.db.execute("SELECT zone, entries, exits FROM day_counts WHERE day = ? ORDER BY zone",
                               (day.isoformat(),)).fetchall()
        return [m.ZoneTally(zone=z, entries=e, exits=x) for z, e, x in rows]

    def prune_day_counts(self, before: date) -> int:
        """Forget the counts of park days before `before` (the central has long stored their events)."""
        with self.write() as c:
            return c.execute("DELETE FROM day_counts WHERE day < ?", (before.isoformat(),)).rowcount

    def apply_remote(self, event: m.PassageEvent) -> bool:
        """Count another gate's confirmed passage once (dedup by event id); True if it was new."""
        with self.write() as c:
            cur = c.execute("INSERT OR IGNORE INTO applied_events(event_id, applied_at) VALUES (?, ?)",
                            (event.id, time.time()))
            if cur.rowcount == 0:
                return False
            self._count(c, event)
            return True

    def purge_bindings(self, keep_s: float = BINDING_KEEP_S, now: float | None = None) -> int:
        """Delete same-person face bindings whose last entry is older than `keep_s`: a template is
        personal data and goes when the visit is over. A ticket re-entered after that binds anew."""
        now = now if now is not None else time.time()
        cutoff = now - keep_s
        with self.write() as c:
            gone = c.execute("UPDATE usage SET binding = NULL, photo = NULL WHERE binding IS NOT NULL "
                             "AND last_entry_at < ?", (cutoff,)).rowcount
            # A ticket that has expired: its binding (a face, or a finger in the module's slots) goes now.
            return gone + c.execute(
                "UPDATE usage SET binding = NULL, photo = NULL WHERE binding IS NOT NULL AND credential_ref IN "
                "(SELECT 'T' || ticket_id FROM tickets WHERE valid_to IS NOT NULL AND valid_to < ?)",
                (now,)).rowcount

    def prune_applied(self, keep_s: float = APPLIED_EVENTS_KEEP_S) -> int:
        with self.write() as c:
            return c.execute("DELETE FROM applied_events WHERE applied_at < ?", (time.time() - keep_s,)).rowcount

    # -- outbox --------------------------------------------------------------------------------

    def outbox_after(self, seq: int, limit: int = 100, *, unsent_only: bool = False) -> list[OutboxRow]:
        where = "seq > ? AND sent_at IS NULL" if unsent_only else "seq > ?"
        rows = self.db.execute(f"SELECT seq, event_id, topic, payload FROM outbox WHERE {where} ORDER BY seq LIMIT ?",
                               (seq, limit)).fetchall()
        return [OutboxRow(seq, event_id, topic, self._unseal_payload(payload, event_id))
                for seq, event_id, topic, payload in rows]

    def _unseal_payload(self, payload: bytes, event_id: str) -> bytes:
        if not payload.startswith(_SEALED) or self.cipher is None:
            return payload
        return self._open(payload[1:], event_id, "face") or payload

    def outbox_delete(self, seqs: Iterable[int]) -> None:
        with self.write() as c:
            c.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def outbox_mark_sent(self, seqs: Iterable[int], at: float | None = None) -> None:
        """The broker has these rows (PUBACK); they stay until the central confirms them."""
        at = time.time() if at is None else at
        with self.write() as c:
            c.executemany("UPDATE outbox SET sent_at = ? WHERE seq = ?", [(at, s) for s in seqs])

    def outbox_confirm(self, event_ids: Iterable[str]) -> int:
        """The central stored these events (EventAck): forget them. Returns how many rows went."""
        with self.write() as c:
            return sum(c.execute("DELETE FROM outbox WHERE event_id = ?", (e,)).rowcount for e in event_ids)

    def outbox_due(self, base_s: float, limit: int, now: float | None = None) -> list[OutboxRow]:
        """Rows the broker took but the central has not confirmed after base_s * 2^resends (capped at
        64x): to be sent again. A broker restart or a shared subscription with nobody connected can
        drop a message the broker had acknowledged; the central's event id makes a repeat harmless."""
        now = time.time() if now is None else now
        rows = self.db.execute(
            "SELECT seq, event_id, topic, payload FROM outbox WHERE sent_at IS NOT NULL "
            "AND sent_at + ? * (1 << min(resends, 6)) < ? ORDER BY seq LIMIT ?", (base_s, now, limit)).fetchall()
        if rows:
            with self.write() as c:
                c.executemany("UPDATE outbox SET resends = resends + 1, sent_at = NULL WHERE seq = ?",
                              [(r[0],) for r in rows])
        return [OutboxRow(seq, event_id, topic, self._unseal_payload(payload, event_id))
                for seq, event_id, topic, payload in rows]

    def outbox_depth(self) -> int:
        """Events the central has not yet confirmed (waiting for the broker, or for the central)."""
        return self.db.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def outbox_unsent(self) -> int:
        """Events the broker has not yet acknowledged."""
        return self.db.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]

    def _upgrade_usage(self) -> None:
        """A store written before 人票绑定 gets the usage's first-entry photo column."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(usage)")}
        if "photo" not in columns:
            with self.write() as c:
                c.execute("ALTER TABLE usage ADD COLUMN photo BLOB")

    def first_entry_photo(self, ref: str) -> bytes | None:
        """The camera's view at a finger-bound ticket's first entry (decrypted), for staff; None if none."""
        row = self.db.execute("SELECT photo FROM usage WHERE credential_ref = ?", (ref,)).fetchone()
        if row is None or row[0] is None or self.cipher is None:
            return None
        return self._open(row[0], ref, "photo")

    def _upgrade_outbox(self) -> None:
        """A store written before end-to-end acknowledgements gets the outbox's two new columns."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(outbox)")}
        with self.write() as c:
            if "sent_at" not in columns:
                c.execute("ALTER TABLE outbox ADD COLUMN sent_at REAL")
            if "resends" not in columns:
                c.execute("ALTER TABLE outbox ADD COLUMN resends INTEGER NOT NULL DEFAULT 0")

    def info(self) -> dict:
        return {
            "path": str(self.path),
            "counts": self.counts(),
            "delta_seq": self.seq,
            "snapshot_id": self.meta("snapshot_id"),
            "config_version": int(self.meta("config_version", "0") or 0),
            "mode_override": self.meta("mode_override"),
        }


def _count_day(conn: sqlite3.Connection, event: m.PassageEvent, day: date) -> None:
    """A confirmed passage of this gate into its day's count; zone 0 (a gate not yet configured) has none."""
    if not event.passed or not 1 <= event.zone <= MAX_COUNTED_ZONE:
        return
    entries, exits = (event.headcount, 0) if event.direction == "in" else (0, event.headcount)
    conn.execute("INSERT INTO day_counts(day, zone, entries, exits) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT(day, zone) DO UPDATE SET entries = entries + excluded.entries, "
                 "exits = exits + excluded.exits", (day.isoformat(), event.zone, entries, exits))


NO_SALT = b"\x00" * 16  # GateConfig's "not set": the saved config's id_salt


def without_id_salt(payload: bytes) -> bytes:
    """The GateConfig payload with its id_salt replaced by NO_SALT (re-encoded: fields this version does
    not know are dropped, which is all this version could read of them anyway)."""
    cfg = m.decode(m.GateConfig, payload)
    if cfg.id_salt == NO_SALT:
        return payload
    return m.encode(msgspec.structs.replace(cfg, id_salt=NO_SALT))


def dumps(value) -> str:
    return json.dumps(value, default=str)


__all__ = ["NO_SALT", "OutboxRow", "PassRow", "Store", "TicketRow", "without_id_salt"]
