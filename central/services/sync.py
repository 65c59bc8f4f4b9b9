"""What gates must know beyond a ticket code: sequence-numbered deltas and full snapshots.

Every change is written, in the caller's transaction, as one row of `sync_changes` holding the
encoded `Delta` and the site's next sequence number; `Publisher.flush()` (central.publisher) sends
rows not yet published after the commit, so a change is never announced before it is durable and
never lost when the broker is away. A gate that sees a gap in `seq` asks for a snapshot.

Template bytes in a stored delta are the encrypted record (`TemplateCipher`); the publisher decrypts
them just before sending, so templates are never at rest in clear at the central.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

import msgspec
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from central.models import AnnualPass, BiometricTemplate, Person, Site, SyncChange, Ticket, utcnow
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
CHUNK_BYTES = 4 * 1024 * 1024


def next_seq(session: Session, site_id: str) -> int:
    """Take the site's next sequence number (row lock on PostgreSQL, the write lock on SQLite)."""
    seq = session.execute(
        update(Site).where(Site.id == site_id).values(sync_seq=Site.sync_seq + 1).returning(Site.sync_seq)
    ).scalar_one()
    return int(seq)


def record_delta(session: Session, site_id: str, changes: list[Change], at: datetime | None = None) -> int:
    """Write one Delta of `changes` for the site's gates; returns its seq."""
    if not changes:
        return 0
    seq = next_seq(session, site_id)
    delta = Delta(site=site_id, seq=seq, at=at or utcnow(), changes=changes)
    kinds = ",".join(sorted({type(c).__struct_config__.tag for c in changes}))
    session.add(SyncChange(site_id=site_id, seq=seq, kinds=kinds[:64], payload=encode(delta)))
    session.flush()
    return seq


# --- one change per record ---------------------------------------------------------------------


def ticket_change(ticket: Ticket) -> TicketChange:
    zones = list(ticket.zones or []) or list(ticket.ticket_type.zones or [])
    return TicketChange(
        ticket_id=ticket.id, ticket_type=ticket.ticket_type_id, status=ticket.status,
        valid_from=ticket.valid_from, valid_to=ticket.valid_to, slot_start=ticket.slot_start,
        slot_end=ticket.slot_end, headcount=ticket.headcount, zones=zones, id_digest=ticket.id_digest,
    )


def pass_change(annual_pass: AnnualPass) -> PassChange:
    return PassChange(
        pass_id=annual_pass.id, holder_id=f"H{annual_pass.person_id}", card_uid=annual_pass.card_uid,
        status=annual_pass.status, valid_from=annual_pass.valid_from, valid_to=annual_pass.valid_to,
        zones=list(annual_pass.zones or []),
    )


def template_change(template: BiometricTemplate) -> TemplateChange:
    """A TemplateChange carrying the *encrypted* record; `Publisher` decrypts it on the way out."""
    return TemplateChange(holder_id=f"H{template.person_id}", kind=template.kind, data=template.record,
                          version=template.version, finger=template.finger)


def forget_change(person_id: int) -> HolderForget:
    return HolderForget(holder_id=f"H{person_id}")


# --- snapshots ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    site: str
    seq: int
    changes: list[Change]


def snapshot(session: Session, site_id: str, now: datetime | None = None) -> Snapshot:
    """The full state a gate needs, and the seq it reflects (template data still encrypted).

    Real-name tickets still valid (gates find bookings by ID digest), tickets refunded, revoked or used
    up that are still within validity (so their codes are refused), every pass not expired, and the
    templates of holders with such a pass.
    """
    now = now or utcnow()
    seq = session.scalar(select(Site.sync_seq).where(Site.id == site_id)) or 0
    changes: list[Change] = []
    tickets = session.scalars(
        select(Ticket).where(Ticket.site_id == site_id, Ticket.valid_to >= now,
                             (Ticket.status != "valid") | Ticket.id_digest.is_not(None))
        .order_by(Ticket.id)
    )
    changes.extend(ticket_change(t) for t in tickets)
    passes = list(session.scalars(
        select(AnnualPass).where(AnnualPass.site_id == site_id, AnnualPass.valid_to >= now,
                                 AnnualPass.status != "expired").order_by(AnnualPass.id)
    ))
    changes.extend(pass_change(p) for p in passes)
    holders = {p.person_id for p in passes if p.status in ("active", "suspended")}
    if holders:
        templates = session.scalars(
            select(BiometricTemplate).join(Person, Person.id == BiometricTemplate.person_id)
            .where(Person.site_id == site_id, Person.forgotten_at.is_(None))
            .order_by(BiometricTemplate.id)
        )
        changes.extend(template_change(t) for t in templates if t.person_id in holders)
    return Snapshot(site=site_id, seq=seq, changes=changes)


def _size(change: Change) -> int:
    if isinstance(change, TemplateChange):
        return len(change.data) * 4 // 3 + 200
    return 300


def chunk(snap: Snapshot, gate: str, snapshot_id: str, max_changes: int = CHUNK_CHANGES,
          max_bytes: int = CHUNK_BYTES) -> Iterator[SnapshotChunk]:
    """Split a snapshot into SnapshotChunks of at most `max_changes` changes and about `max_bytes`."""
    parts: list[list[Change]] = [[]]
    size = 0
    for change in snap.changes:
        cost = _size(change)
        if parts[-1] and (len(parts[-1]) >= max_changes or size + cost > max_bytes):
            parts.append([])
            size = 0
        parts[-1].append(change)
        size += cost
    for index, part in enumerate(parts):
        yield SnapshotChunk(site=snap.site, gate=gate, snapshot_id=snapshot_id, index=index,
                            last=index == len(parts) - 1, seq=snap.seq, changes=part)


def decrypt_templates(changes: Iterable[Change], cipher) -> list[Change]:
    """Replace each TemplateChange's encrypted record with the template bytes, for sending."""
    out: list[Change] = []
    for change in changes:
        if isinstance(change, TemplateChange):
            if cipher is None:
                continue  # no template key configured: templates cannot be sent
            data = cipher.decrypt(change.data, change.holder_id, change.kind)
            change = msgspec.structs.replace(change, data=data)
        out.append(change)
    return out
