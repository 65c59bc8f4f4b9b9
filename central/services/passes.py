"""Persons and annual passes: create, bind a card and biometric templates, suspend, report lost, renew.

A pass is bound to one person (`H{person_id}`); its card UID is what the reader yields. Reporting a
card lost ends that pass for good (`status lost`: every gate refuses the old card with `pass_lost`);
`replace_card` then issues a new pass for the same person and validity with the new card.
Templates are stored encrypted with `biometrics.protect.TemplateCipher` and reach gates as
TemplateChange deltas; `purge_templates` deletes them when the retention period after a pass ends.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from biometrics.templates import TemplateFormatError, check_template
from central.i18n import _l, status_label
from central.models import CHANNELS, AnnualPass, BiometricTemplate, HolderPhoto, Person
from central.services import Invalid, NotFound, Refused, limits
from central.services.audit import audit
from central.services.gates import get_site
from central.services.sync import forget_change, pass_change, record_delta, template_change
from central.services.tickets import _money
from protocol.clock import park_now

# ISO 14443 cards have 4-, 7- or 10-byte UIDs; "" is a pass whose card is not bound yet.
_UID = re.compile(r"(?:[0-9A-F]{8}|[0-9A-F]{14}|[0-9A-F]{20})?")
MAX_TEMPLATE = limits.TEMPLATE


def normalise_uid(uid: str) -> str:
    if not isinstance(uid, str) or len(uid) > limits.CARD_UID_INPUT:
        raise Invalid("bad_card_uid", _l(
            "A card number (UID) is 8, 14 or 20 hex digits: 4, 7 or 10 bytes, as the desk reader types it."))
    value = uid.replace(":", "").replace(" ", "").upper()
    if not _UID.fullmatch(value):
        raise Invalid("bad_card_uid", _l(
            "A card number (UID) is 8, 14 or 20 hex digits: 4, 7 or 10 bytes, as the desk reader types it."))
    return value


def _record_id(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and 0 < value <= limits.MAX_ID


def get_pass(session: Session, pass_id: int, lock: bool = False) -> AnnualPass:
    if not _record_id(pass_id):
        raise NotFound("no_pass", _l("There is no such annual pass."))
    annual_pass = session.get(AnnualPass, pass_id, with_for_update=lock)
    if annual_pass is None:
        raise NotFound("no_pass", _l('There is no annual pass P%(pass_id)s.', pass_id=pass_id))
    return annual_pass


def get_person(session: Session, person_id: int) -> Person:
    if not _record_id(person_id):
        raise NotFound("no_person", _l("There is no such holder."))
    person = session.get(Person, person_id)
    if person is None or person.forgotten_at is not None:
        raise NotFound("no_person", _l('There is no such holder (H%(person_id)s).', person_id=person_id))
    return person


def create_person(session: Session, site_id: str, name: str, *, phone: str | None = None,
                  id_last4: str | None = None, actor: str | None = None) -> Person:
    get_site(session, site_id)
    limits.text("bad_name", "name", name, limits.NAME, required=True)
    person = Person(site_id=site_id, name=name, phone=limits.phone(phone), id_last4=limits.id_last4(id_last4))
    session.add(person)
    session.flush()
    audit(session, actor, "person.create", person.holder_ref)
    return person


def _check_card_free(session: Session, site_id: str, uid: str, except_pass: int | None = None) -> None:
    if not uid:
        return
    clash = session.scalar(select(AnnualPass.id).where(
        AnnualPass.site_id == site_id, AnnualPass.card_uid == uid,
        AnnualPass.status.in_(("active", "suspended")), AnnualPass.id != (except_pass or -1)))
    if clash:
        raise Refused("card_in_use", _l("This card already belongs to annual pass P%(clash)s: report that one "
                                        "lost first, or use another card.", clash=clash))


def create_pass(session: Session, site_id: str, *, person_id: int, valid_from: datetime, valid_to: datetime,
                card_uid: str = "", zones: list[int] | None = None, channel: str = "box_office", price=0,
                actor: str | None = None) -> AnnualPass:
    person = get_person(session, person_id)
    if person.site_id != site_id:
        raise Invalid("bad_person", _l("This holder belongs to another park."))
    if not isinstance(valid_from, datetime) or not isinstance(valid_to, datetime) or valid_from.tzinfo is None \
            or valid_to.tzinfo is None or valid_to <= valid_from:
        raise Invalid("bad_validity", _l("The pass must end after it starts."))
    if not isinstance(channel, str) or channel not in CHANNELS:
        raise Invalid("bad_channel", _l('Choose a sales channel from the list.'))
    zones = limits.zones(zones or [])
    price = _money(price)
    uid = normalise_uid(card_uid)
    _check_card_free(session, site_id, uid)
    annual_pass = AnnualPass(site_id=site_id, person_id=person.id, card_uid=uid, status="active",
                             valid_from=valid_from, valid_to=valid_to, zones=zones, channel=channel, price=price)
    annual_pass.person = person
    session.add(annual_pass)
    session.flush()
    record_delta(session, site_id, [pass_change(annual_pass)])
    audit(session, actor, "pass.create", annual_pass.ref, holder=person.holder_ref)
    return annual_pass


def bind_card(session: Session, pass_id: int, card_uid: str, actor: str | None = None) -> AnnualPass:
    annual_pass = get_pass(session, pass_id, lock=True)
    if annual_pass.status not in ("active", "suspended"):
        label = status_label("pass_status", annual_pass.status)
        raise Refused(f"pass_{annual_pass.status}", _l("Annual pass P%(pass_id)s is %(status)s.", pass_id=pass_id,
                                                       status=label))
    uid = normalise_uid(card_uid)
    _check_card_free(session, annual_pass.site_id, uid, except_pass=pass_id)
    annual_pass.card_uid = uid
    record_delta(session, annual_pass.site_id, [pass_change(annual_pass)])
    audit(session, actor, "pass.bind_card", annual_pass.ref)
    return annual_pass


def _set_status(session: Session, pass_id: int, status: str, allowed: tuple[str, ...], actor: str | None) -> AnnualPass:
    annual_pass = get_pass(session, pass_id, lock=True)
    if annual_pass.status not in allowed:
        label = status_label("pass_status", annual_pass.status)
        raise Refused(f"pass_{annual_pass.status}", _l("Annual pass P%(pass_id)s is %(status)s.", pass_id=pass_id,
                                                       status=label))
    annual_pass.status = status
    annual_pass.status_changed_at = park_now()
    record_delta(session, annual_pass.site_id, [pass_change(annual_pass)])
    audit(session, actor, f"pass.{status}", annual_pass.ref)
    return annual_pass


def suspend_pass(session: Session, pass_id: int, actor: str | None = None) -> AnnualPass:
    return _set_status(session, pass_id, "suspended", ("active",), actor)


def resume_pass(session: Session, pass_id: int, actor: str | None = None) -> AnnualPass:
    return _set_status(session, pass_id, "active", ("suspended",), actor)


def report_lost(session: Session, pass_id: int, actor: str | None = None) -> AnnualPass:
    """The card is lost: the pass ends for good and every gate refuses the old card (`pass_lost`)."""
    return _set_status(session, pass_id, "lost", ("active", "suspended"), actor)


def replace_card(session: Session, pass_id: int, new_card_uid: str, actor: str | None = None) -> AnnualPass:
    """A new pass with a new card for the holder of a lost pass, same validity and zones."""
    old = get_pass(session, pass_id)
    if old.status != "lost":
        raise Refused(f"pass_{old.status}", _l("Report the old card lost first."))
    return create_pass(session, old.site_id, person_id=old.person_id, valid_from=old.valid_from,
                       valid_to=old.valid_to, card_uid=new_card_uid, zones=list(old.zones or []),
                       channel=old.channel, price=0, actor=actor)


def renew_pass(session: Session, pass_id: int, valid_to: datetime, *, price=None,
               actor: str | None = None) -> AnnualPass:
    annual_pass = get_pass(session, pass_id, lock=True)
    if annual_pass.status == "lost":
        raise Refused("pass_lost", _l("A lost pass cannot be renewed: give the holder a new card."))
    if annual_pass.person.forgotten_at is not None:
        raise Refused("person_forgotten", _l("The holder's data was deleted on their request."))
    if not isinstance(valid_to, datetime) or valid_to.tzinfo is None or valid_to <= annual_pass.valid_from:
        raise Invalid("bad_validity", _l("The new end must be after the pass starts."))
    annual_pass.valid_to = valid_to
    if annual_pass.status == "expired":
        annual_pass.status = "active"
    if price is not None:
        annual_pass.price = _money(price)
    annual_pass.status_changed_at = park_now()
    record_delta(session, annual_pass.site_id, [pass_change(annual_pass)])
    audit(session, actor, "pass.renew", annual_pass.ref, valid_to=valid_to.isoformat())
    return annual_pass


def bind_template(session: Session, cipher, person_id: int, kind: str, template: bytes, *, finger: int = 0,
                  actor: str | None = None) -> BiometricTemplate:
    """Store (encrypted) a face or fingerprint template for a person and send it to the site's gates."""
    if cipher is None:
        raise Refused("no_template_key", _l(
            "Face and fingerprint enrolment needs the template key: the administrator sets [keys] template_key."))
    if not isinstance(kind, str) or kind not in ("face", "fingerprint"):
        raise Invalid("bad_kind", _l("A template is a face or a fingerprint."))
    if not template or len(template) > MAX_TEMPLATE:
        raise Invalid("bad_template", _l('The template file is empty or too large (at most %(n)s bytes).',
                                         n=MAX_TEMPLATE))
    try:  # what the gates' devices can use: an AS608 module template, a face descriptor
        template = check_template(kind, template)
    except TemplateFormatError as exc:
        raise Invalid("bad_template", str(exc)) from None
    limits.integer("bad_finger", "finger", finger, 0, limits.FINGER)
    person = get_person(session, person_id)
    holder = person.holder_ref
    row = session.scalar(select(BiometricTemplate).where(
        BiometricTemplate.person_id == person_id, BiometricTemplate.kind == kind, BiometricTemplate.finger == finger))
    record = cipher.encrypt(bytes(template), holder, kind)
    if row is None:
        row = BiometricTemplate(person_id=person_id, kind=kind, finger=finger, version=1, record=record)
        session.add(row)
    else:
        row.record = record
        row.version += 1
    session.flush()
    record_delta(session, person.site_id, [template_change(row)])
    audit(session, actor, "template.bind", holder, kind=kind, finger=finger)
    return row


def forget_person(session: Session, person_id: int, actor: str | None = None) -> None:
    """Delete a person's data on request: templates, name and contact, the card UIDs of their passes.

    Their passes end (`expired`, card unbound) and every gate learns it with the `HolderForget` in the
    same delta: templates go, and the card no longer admits anyone. The pass rows stay, without a
    card, for the revenue reports.
    """
    person = get_person(session, person_id)
    now = park_now()
    session.execute(delete(BiometricTemplate).where(BiometricTemplate.person_id == person_id))
    session.execute(delete(HolderPhoto).where(HolderPhoto.person_id == person_id))  # staff's photo: with them
    changes = []
    for annual_pass in session.scalars(select(AnnualPass).where(AnnualPass.person_id == person_id)
                                       .with_for_update()):
        if annual_pass.status in ("active", "suspended"):
            annual_pass.status = "expired"
            annual_pass.status_changed_at = now
        annual_pass.card_uid = ""
        changes.append(pass_change(annual_pass))
    person.forgotten_at = now
    person.name = ""
    person.phone = None
    person.id_last4 = None
    record_delta(session, person.site_id, [*changes, forget_change(person_id)])
    audit(session, actor, "person.forget", person.holder_ref, passes=len(changes))


def expire_passes(session: Session, now: datetime | None = None) -> list[AnnualPass]:
    """Passes past their end become expired; gates learn it (they refuse by date anyway)."""
    now = now or park_now()
    ended = list(session.scalars(select(AnnualPass).where(
        AnnualPass.status.in_(("active", "suspended")), AnnualPass.valid_to < now)))
    by_site: dict[str, list] = {}
    for annual_pass in ended:
        annual_pass.status = "expired"
        annual_pass.status_changed_at = now
        by_site.setdefault(annual_pass.site_id, []).append(pass_change(annual_pass))
    for site_id, changes in by_site.items():
        record_delta(session, site_id, changes)
    return ended


def purge_templates(session: Session, retention_days: int, now: datetime | None = None) -> list[int]:
    """Delete the templates of persons whose every pass ended more than `retention_days` ago."""
    now = now or park_now()
    cutoff = now - timedelta(days=retention_days)
    with_templates = set(session.scalars(select(BiometricTemplate.person_id).distinct()))
    with_templates |= set(session.scalars(select(HolderPhoto.person_id)))  # a photo for staff alone, too
    if not with_templates:
        return []
    still_needed = set(session.scalars(select(AnnualPass.person_id).where(
        AnnualPass.person_id.in_(with_templates),
        AnnualPass.valid_to >= cutoff,
        AnnualPass.status.in_(("active", "suspended", "expired")),
    )))
    # A lost pass ends when it was reported lost.
    still_needed |= set(session.scalars(select(AnnualPass.person_id).where(
        AnnualPass.person_id.in_(with_templates), AnnualPass.status == "lost",
        AnnualPass.status_changed_at >= cutoff)))
    purge = sorted(with_templates - still_needed)
    if not purge:
        return []
    session.execute(delete(BiometricTemplate).where(BiometricTemplate.person_id.in_(purge)))
    session.execute(delete(HolderPhoto).where(HolderPhoto.person_id.in_(purge)))
    persons = session.scalars(select(Person).where(Person.id.in_(purge)))
    by_site: dict[str, list] = {}
    for person in persons:
        by_site.setdefault(person.site_id, []).append(forget_change(person.id))
    for site_id, changes in by_site.items():
        record_delta(session, site_id, changes)
    audit(session, None, "template.purge", "", persons=len(purge), retention_days=retention_days)
    return purge

