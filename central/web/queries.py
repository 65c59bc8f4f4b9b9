"""Read-only look-ups the pages list and search with; the changes go through `central.services`."""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from central.models import (
    AnnualPass,
    AuditEntry,
    BiometricTemplate,
    CommandRecord,
    Gate,
    GateStatusRecord,
    Person,
    Site,
    StaffUser,
    Ticket,
    TicketType,
    Zone,
)
from protocol.ids import id_number_digest, normalise_id_number


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def ticket_types(session: Session, site_id: str, active_only: bool = True) -> list[TicketType]:
    stmt = select(TicketType).where(TicketType.site_id == site_id).order_by(TicketType.id)
    if active_only:
        stmt = stmt.where(TicketType.active.is_(True))
    return list(session.scalars(stmt))


def zones(session: Session, site_id: str) -> list[Zone]:
    return list(session.scalars(select(Zone).where(Zone.site_id == site_id).order_by(Zone.number)))


def tickets_for_id_number(session: Session, site_id: str, id_number: str, limit: int = 50) -> list[Ticket]:
    """Real-name tickets of the holder of `id_number`: the number is digested, never stored or compared."""
    site = session.get(Site, site_id)
    number = normalise_id_number(id_number)
    if site is None or not number:
        return []
    digest = id_number_digest(site.id_salt, number)
    return list(session.scalars(select(Ticket).where(Ticket.site_id == site_id, Ticket.id_digest == digest)
                                .order_by(Ticket.valid_from.desc()).limit(limit)))


def recent_tickets(session: Session, site_id: str, limit: int = 20) -> list[Ticket]:
    return list(session.scalars(select(Ticket).where(Ticket.site_id == site_id)
                                .order_by(Ticket.id.desc()).limit(limit)))


def search_persons(session: Session, site_id: str, text: str, limit: int = 50) -> list[Person]:
    stmt = select(Person).where(Person.site_id == site_id, Person.forgotten_at.is_(None))
    text = (text or "").strip()
    if text:
        conditions: list[ColumnElement[bool]] = [Person.name.ilike(_like(text), escape="\\"),
                                                 Person.phone.ilike(_like(text), escape="\\")]
        if text.isdigit() and len(text) <= 4:
            conditions.append(Person.id_last4 == text)
        if text[:1] in "Hh" and text[1:].isdigit():
            conditions.append(Person.id == int(text[1:]))
        stmt = stmt.where(or_(*conditions))
    return list(session.scalars(stmt.order_by(Person.id.desc()).limit(limit)))


def passes_by_card(session: Session, site_id: str, uid: str) -> list[AnnualPass]:
    return list(session.scalars(select(AnnualPass).where(AnnualPass.site_id == site_id, AnnualPass.card_uid == uid)
                                .order_by(AnnualPass.id.desc())))


def passes_of(session: Session, person_id: int) -> list[AnnualPass]:
    return list(session.scalars(select(AnnualPass).where(AnnualPass.person_id == person_id)
                                .order_by(AnnualPass.id.desc())))


def templates_of(session: Session, person_id: int) -> list[BiometricTemplate]:
    """The person's template rows (to show which kinds are enrolled; never decrypted here)."""
    return list(session.scalars(select(BiometricTemplate).where(BiometricTemplate.person_id == person_id)
                                .order_by(BiometricTemplate.kind, BiometricTemplate.finger)))


def gates(session: Session, site_id: str) -> list[Gate]:
    return list(session.scalars(select(Gate).where(Gate.site_id == site_id).order_by(Gate.name)))


def gate_history(session: Session, site_id: str, gate: str, limit: int = 50) -> list[GateStatusRecord]:
    return list(session.scalars(select(GateStatusRecord).where(
        GateStatusRecord.site_id == site_id, GateStatusRecord.gate == gate)
        .order_by(GateStatusRecord.at.desc(), GateStatusRecord.id.desc()).limit(limit)))


def is_fault(record: GateStatusRecord) -> bool:
    detail = record.detail or {}
    return (not record.online or bool(detail.get("alarms")) or detail.get("controller_ok") is False
            or any(not r.get("ok", True) for r in detail.get("readers", [])))


def gate_commands(session: Session, site_id: str, gate: str | None, limit: int = 10) -> list[CommandRecord]:
    stmt = select(CommandRecord).where(CommandRecord.site_id == site_id)
    stmt = stmt.where(or_(CommandRecord.gate == gate, CommandRecord.gate.is_(None))) if gate else stmt
    return list(session.scalars(stmt.order_by(CommandRecord.created_at.desc()).limit(limit)))


def audit_entries(session: Session, *, actor: str = "", action: str = "", target: str = "",
                  before_id: int | None = None, limit: int = 100) -> list[AuditEntry]:
    stmt = select(AuditEntry)
    if actor:
        stmt = stmt.where(AuditEntry.actor == actor)
    if action:
        stmt = stmt.where(AuditEntry.action.like(action.replace("%", "") + "%"))
    if target:
        stmt = stmt.where(AuditEntry.target == target)
    if before_id:
        stmt = stmt.where(AuditEntry.id < before_id)
    return list(session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit)))


def staff_users(session: Session) -> list[StaffUser]:
    return list(session.scalars(select(StaffUser).order_by(StaffUser.username)))


def user_count(session: Session) -> int:
    return session.scalar(select(func.count(StaffUser.id))) or 0


def sites(session: Session) -> list[Site]:
    """The parks this request may see (the session is scoped to them), in id order."""
    return list(session.scalars(select(Site).order_by(Site.id)))
