"""What gates must know beyond a ticket code: sequence-numbered deltas and full snapshots.

Every change is written, in the caller's transaction, as one row of `sync_changes` holding the
encoded `Delta` and the site's next sequence number; `Publisher.flush()` (central.bus.publisher) sends
rows not yet published after the commit, so a change is never announced before it is durable and
never lost when the broker is away. A gate that sees a gap in `seq` asks for a snapshot.

Template bytes in a stored delta are the encrypted record (`TemplateCipher`); the publisher decrypts
them just before sending, so templates are never at rest in clear at the central.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Insert, Update, bindparam, insert, select, update
from sqlalchemy.orm import Session

from central.db import table
from central.models import (
    AnnualPass,
    BiometricTemplate,
    Booking,
    BookingPerson,
    Person,
    Site,
    SyncChange,
    Ticket,
    TicketType,
    utcnow,
)
from protocol import messages as m
from protocol.clock import park_now
from protocol.ids import holder_ref, ticket_ref
from protocol.messages import (
    Change,
    Delta,
    HolderForget,
    PassChange,
    SnapshotChunk,
    TemplateChange,
    TicketChange,
    encode,
)

CHUNK_CHANGES = 20_000
# A chunk's encoded size is at most CHUNK_BYTES + one change + its envelope: half the protocol's limit
# (`MAX_BYTES[SnapshotChunk]`), which the broker's max_packet_size admits (config/mosquitto/park.conf).
CHUNK_BYTES = 4 * 1024 * 1024

log = logging.getLogger(__name__)


def next_seq(session: Session, site_id: str) -> int:
    """Take the site's next sequence number (row lock on PostgreSQL, the write lock on SQLite)."""
    return int(session.execute(_next_seq_sql(), {"seq_site": site_id}).scalar_one())


@functools.cache
def _next_seq_sql() -> Update:  # built once: no statement building while the row is locked
    sites = table(Site)
    return update(sites).where(sites.c.id == bindparam("seq_site")).values(sync_seq=sites.c.sync_seq + 1) \
        .returning(sites.c.sync_seq)


@functools.cache
def _insert_delta_sql() -> Insert:
    return insert(table(SyncChange))


def record_delta(session: Session, site_id: str, changes: Sequence[Change], at: datetime | None = None) -> int:
    """Write one Delta of `changes` for the site's gates; returns its seq."""
    if not changes:
        return 0
    session.flush()  # the caller's pending rows first: the sequence row stays locked until the commit
    seq = next_seq(session, site_id)
    session.execute(_insert_delta_sql(), _delta_row(site_id, seq, changes, at or park_now()) | {"created_at": utcnow()})
    return seq


SEQ_MARK = b',"seq":1,'


def delta_parts(site_id: str, changes: Sequence[Change], at: datetime | None = None) -> tuple[str, bytes, bytes]:
    """A Delta's kinds and its encoding cut around the seq: head + b"%d" % seq + tail is exactly
    `encode(Delta(seq=seq, ...))`, for a statement that takes the site's seq and writes the row at once
    (a booking's: the site's sequence row is then locked for two round trips fewer). msgspec's JSON
    writes a Struct's fields in their order (v, site, seq, ...) and a site id holds no quote, so the
    first SEQ_MARK is the seq; tests/central/test_sync.py pins this against the installed msgspec."""
    row = _delta_row(site_id, 1, changes, at or park_now())
    payload: bytes = row["payload"]
    cut = payload.index(SEQ_MARK)
    return row["kinds"], payload[:cut + len(SEQ_MARK) - 2], payload[cut + len(SEQ_MARK) - 1:]


def _delta_row(site_id: str, seq: int, changes: Sequence[Change], at: datetime) -> dict:
    """A `sync_changes` row's values: the encoded Delta and the kinds of change it holds."""
    kinds = ",".join(sorted({str(type(c).__struct_config__.tag) for c in changes}))
    delta = Delta(site=site_id, seq=seq, at=at, changes=list(changes))
    return {"site_id": site_id, "seq": seq, "kinds": kinds[:64], "payload": encode(delta)}


def record_deltas(session: Session, by_site: Mapping[str, Sequence[Change]],
                  at: datetime | None = None) -> dict[str, int]:
    """`record_delta` for several sites at once (the ingest's used-up tickets of a batch across a head
    office's parks): their sequence rows locked in id order, one UPDATE and one INSERT for all, instead
    of two statements a park (a fifth of the ingest's CPU with 50 parks). Returns each site's seq."""
    sites = sorted(site for site, changes in by_site.items() if changes)
    if len(sites) < 2:
        return {site: record_delta(session, site, by_site[site], at) for site in sites}
    at = at or park_now()
    sites_t = table(Site)
    # Row locks in one order everywhere (two ingest workers may take overlapping sets of parks).
    session.execute(select(sites_t.c.id).where(sites_t.c.id.in_(sites)).order_by(sites_t.c.id).with_for_update())
    seqs = {row.id: int(row.sync_seq) for row in session.execute(
        update(sites_t).where(sites_t.c.id.in_(sites)).values(sync_seq=sites_t.c.sync_seq + 1)
        .returning(sites_t.c.id, sites_t.c.sync_seq))}
    session.execute(_insert_delta_sql(), [_delta_row(site, seqs[site], by_site[site], at) | {
        "created_at": utcnow()} for site in sites])
    return seqs


# --- one change per record ---------------------------------------------------------------------


def ticket_change(ticket: Ticket | Any, type_zones: Sequence[int] | None = None) -> TicketChange:
    """`ticket`: a Ticket, or an object with its column attributes and `type_zones` its type's zones (a
    booking's tickets, written without the ORM)."""
    if type_zones is None:
        type_zones = ticket.ticket_type.zones or []
    zones = list(ticket.zones or []) or list(type_zones)
    return TicketChange(
        ticket_id=ticket.id, ticket_type=ticket.ticket_type_id,
        status=m.choose(ticket.status, m.TICKET_STATUSES, "ticket status"),
        valid_from=ticket.valid_from, valid_to=ticket.valid_to, slot_start=ticket.slot_start,
        slot_end=ticket.slot_end, headcount=ticket.headcount, zones=zones, id_digest=ticket.id_digest,
    )


def pass_change(annual_pass: AnnualPass) -> PassChange:
    return PassChange(
        pass_id=annual_pass.id, holder_id=holder_ref(annual_pass.person_id), card_uid=annual_pass.card_uid,
        status=m.choose(annual_pass.status, m.PASS_STATUSES, "pass status"), valid_from=annual_pass.valid_from,
        valid_to=annual_pass.valid_to,
        zones=list(annual_pass.zones or []),
    )


def template_change(template: BiometricTemplate) -> TemplateChange:
    """A TemplateChange carrying the *encrypted* record; `Publisher` decrypts it on the way out."""
    return TemplateChange(holder_id=holder_ref(template.person_id),
                          kind=m.choose(template.kind, m.TEMPLATE_KINDS, "template kind"), data=template.record,
                          version=template.version, finger=template.finger)


def booked_face_change(ticket_id: int, record: bytes) -> TemplateChange:
    """A booked person's face (face entry at booking), its holder the person's ticket: the *encrypted*
    record, as `template_change`."""
    return TemplateChange(holder_id=ticket_ref(ticket_id), kind="face", data=record)


def forget_change(person_id: int) -> HolderForget:
    return HolderForget(holder_id=holder_ref(person_id))


# --- snapshots ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    site: str
    seq: int
    changes: Iterable[Change]  # a list from `snapshot`, a one-pass stream from `stream_snapshot`


SNAPSHOT_ROWS = 5_000  # rows fetched at a time from the server-side cursor


def snapshot(session: Session, site_id: str, now: datetime | None = None) -> Snapshot:
    """The full state a gate needs, and the seq it reflects (template data still encrypted), as a list.

    Real-name tickets still valid (gates find bookings by ID digest), tickets refunded, revoked or used
    up that are still within validity (so their codes are refused), every pass not expired, and the
    templates of holders with such a pass.
    """
    snap = stream_snapshot(session, site_id, now)
    return Snapshot(site=snap.site, seq=snap.seq, changes=list(snap.changes))


def stream_snapshot(session: Session, site_id: str, now: datetime | None = None) -> Snapshot:
    """`snapshot`, its changes read as they are consumed: a server-side cursor of plain rows, a few
    thousand at a time, so a million tickets never sit in memory at once. Consume it inside `session`."""
    now = now or park_now()
    seq = session.scalar(select(Site.sync_seq).where(Site.id == site_id)) or 0
    return Snapshot(site=site_id, seq=seq, changes=_snapshot_changes(session, site_id, now))


def _snapshot_changes(session: Session, site_id: str, now: datetime) -> Iterator[Change]:
    t, tt = table(Ticket), table(TicketType)
    type_zones = {row.id: list(row.zones or []) for row in session.execute(
        select(tt.c.id, tt.c.zones).where(tt.c.site_id == site_id))}
    rows = session.execute(
        select(t.c.id, t.c.ticket_type_id, t.c.status, t.c.valid_from, t.c.valid_to, t.c.slot_start, t.c.slot_end,
               t.c.headcount, t.c.zones, t.c.id_digest)
        .where(t.c.site_id == site_id, t.c.valid_to >= now, (t.c.status != "valid") | t.c.id_digest.is_not(None))
        .order_by(t.c.id).execution_options(yield_per=SNAPSHOT_ROWS)
    )
    for r in rows:
        yield TicketChange(ticket_id=r.id, ticket_type=r.ticket_type_id, status=r.status, valid_from=r.valid_from,
                           valid_to=r.valid_to, slot_start=r.slot_start, slot_end=r.slot_end, headcount=r.headcount,
                           zones=list(r.zones or []) or type_zones.get(r.ticket_type_id, []), id_digest=r.id_digest)
    passes = list(session.scalars(
        select(AnnualPass).where(AnnualPass.site_id == site_id, AnnualPass.valid_to >= now,
                                 AnnualPass.status != "expired").order_by(AnnualPass.id)
        .execution_options(yield_per=SNAPSHOT_ROWS)
    ))
    holders = {p.person_id for p in passes if p.status in ("active", "suspended")}
    for p in passes:
        yield pass_change(p)
    del passes
    if holders:
        templates = session.scalars(
            select(BiometricTemplate).join(Person, Person.id == BiometricTemplate.person_id)
            .where(Person.site_id == site_id, Person.forgotten_at.is_(None))
            .order_by(BiometricTemplate.id).execution_options(yield_per=500)
        )
        for template in templates:
            if template.person_id in holders:
                yield template_change(template)
    # Face entry at booking: the visit day's faces (`visitor_bookings.face_round` puts them on and takes them off).
    booked = session.execute(
        select(BookingPerson.ticket_id, BookingPerson.face_record).join(Booking, Booking.id == BookingPerson.booking_id)
        .where(Booking.site_id == site_id, BookingPerson.face_on_gates.is_(True),
               BookingPerson.face_record.is_not(None)).order_by(BookingPerson.id))
    for ticket_id, record in booked:
        if ticket_id is not None and record is not None:
            yield booked_face_change(ticket_id, record)


def _size(change: Change) -> int:
    """An upper bound of the change's encoded size, so a chunk's size is bounded, not estimated: 449
    bytes is a ticket change with every field at its longest (64-character digest, 32 zones, four times),
    436 a pass change; a template is its data in base64 and up to 226 bytes more."""
    if isinstance(change, TemplateChange):
        return 4 * ((len(change.data) + 2) // 3) + 300
    return 460


def chunk(snap: Snapshot, gate: str, snapshot_id: str, max_changes: int = CHUNK_CHANGES,
          max_bytes: int = CHUNK_BYTES) -> Iterator[SnapshotChunk]:
    """Split a snapshot into SnapshotChunks of at most `max_changes` changes and about `max_bytes`,
    as its changes arrive (one chunk is held back to know which is the last)."""
    index = 0
    part: list[Change] = []
    size = 0
    for change in snap.changes:
        cost = _size(change)
        if part and (len(part) >= max_changes or size + cost > max_bytes):
            yield SnapshotChunk(site=snap.site, gate=gate, snapshot_id=snapshot_id, index=index, last=False,
                                seq=snap.seq, changes=part)
            index += 1
            part, size = [], 0
        part.append(change)
        size += cost
    yield SnapshotChunk(site=snap.site, gate=gate, snapshot_id=snapshot_id, index=index, last=True, seq=snap.seq,
                        changes=part)


def decrypt_templates(changes: Iterable[Change], cipher) -> list[Change]:
    """Replace each TemplateChange's encrypted record with the template bytes, for sending."""
    return list(iter_decrypted(changes, cipher))


def iter_decrypted(changes: Iterable[Change], cipher) -> Iterator[Change]:
    """`decrypt_templates`, one change at a time (for a streamed snapshot)."""
    from biometrics.protect import TemplateDecryptError

    for change in changes:
        if isinstance(change, TemplateChange):
            if cipher is None:
                continue  # no template key configured: templates cannot be sent
            try:
                data = cipher.decrypt(change.data, change.holder_id, change.kind)
            except TemplateDecryptError as exc:
                # Sealed under a key this central does not hold (a head office's enrolment, a rotation
                # half done): that template cannot reach the gates, but the delta's other changes must,
                # and every delta after it (raising here held them all back).
                log.error("template of %s not sent to the gates: %s (is keys.template_key the same on every "
                          "server?)", change.holder_id, exc)
                continue
            change = msgspec.structs.replace(change, data=data)
        yield change
