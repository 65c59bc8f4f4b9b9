"""Staff help at the gate: holders' photos kept with consent, the gates' requests, staff's answers.

    enrolment (consent)  keep_holder_photo: a small JPEG, sealed like the templates (kind "photo"),
                         deleted with them (`passes.forget_person`, `passes.purge_templates`)
    a gate asks          record_help_request (ingest): the camera's view sealed (kind "frame"), kept while open
    staff answer         answer_help: admitted once or refused, in the audit log with their name; the gate
                         gets a staff_admit / staff_refuse command and records the passage as any other

Requests older than `OPEN_S` expire: the visitor has gone, and the camera's view is deleted.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from central.i18n import _l
from central.models import HelpRequestRecord, HolderPhoto, PassageEventRecord, utcnow
from central.services import Invalid, NotFound, Refused
from central.services.audit import audit
from central.services.gates import create_command, get_gate
from central.services.passes import get_person
from protocol.ids import HOLDER, ref_number
from protocol.messages import HelpRequest

OPEN_S = 300  # as the gate keeps them (gate_agent.staff_help.KEEP_S)
PHOTO_SIDE = 240
MAX_PHOTO_INPUT = 8 * 1024 * 1024


def _no_key() -> Refused:
    return Refused("no_template_key", _l(
        "Face and fingerprint enrolment needs the template key: the administrator sets [keys] template_key."))


def small_photo(image: bytes) -> bytes:
    """The enrolment photo as a small JPEG (at most 240 px a side): enough for staff to recognise a face."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not image or len(image) > MAX_PHOTO_INPUT:
        raise Invalid("bad_photo", _l("The photo is empty or too large."))
    try:
        with Image.open(io.BytesIO(image)) as src:
            img = ImageOps.exif_transpose(src).convert("RGB")
            img.thumbnail((PHOTO_SIDE, PHOTO_SIDE))
            out = io.BytesIO()
            img.save(out, "JPEG", quality=75)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError):
        raise Invalid("bad_photo", _l("The file could not be read as a photo.")) from None
    return out.getvalue()


def keep_holder_photo(session: Session, cipher, person_id: int, image: bytes, actor: str) -> HolderPhoto:
    """With the holder's consent (the caller asked it): their photo for staff at the gate, sealed."""
    if cipher is None:
        raise _no_key()
    person = get_person(session, person_id)
    record = cipher.encrypt(small_photo(image), person.holder_ref, "photo")
    row = session.get(HolderPhoto, person_id)
    if row is None:
        row = HolderPhoto(person_id=person_id, record=record, consent_by=actor)
        session.add(row)
    else:
        row.record, row.consent_by, row.created_at = record, actor, utcnow()
    audit(session, actor, "person.photo", person.holder_ref, consent=True)
    return row


def holder_photo(session: Session, cipher, holder_ref: str | None) -> bytes | None:
    """The holder's photo (decrypted, for the staff page only), or None."""
    if cipher is None or not holder_ref or not holder_ref.startswith(HOLDER):
        return None
    person_id = ref_number(holder_ref)
    row = session.get(HolderPhoto, person_id) if person_id is not None else None
    return cipher.decrypt(row.record, holder_ref, "photo") if row is not None else None


def forget_photo(session: Session, person_ids: list[int]) -> None:
    """With the templates: the photos of these persons go too."""
    if person_ids:
        session.execute(delete(HolderPhoto).where(HolderPhoto.person_id.in_(person_ids)))


def record_help_request(session: Session, cipher, request: HelpRequest) -> None:
    """A gate asks for staff (from the ingest); a repeat of the same request is ignored."""
    if session.get(HelpRequestRecord, request.id) is not None:
        return
    frame = photo = None
    if request.frame and cipher is not None:
        frame = cipher.encrypt(request.frame, request.holder_id or request.gate, "frame")
    if request.photo and cipher is not None:
        photo = cipher.encrypt(request.photo, request.credential_ref, "photo")
    session.add(HelpRequestRecord(
        id=request.id, site_id=request.site, gate=request.gate, at=request.at, direction=request.direction,
        credential_ref=request.credential_ref, holder_ref=request.holder_id, reason=request.reason, frame=frame,
        photo=photo))


def expire_requests(session: Session, now: datetime | None = None) -> int:
    """Open requests past OPEN_S: expired, their camera views deleted."""
    cutoff = (now or utcnow()) - timedelta(seconds=OPEN_S)
    old = list(session.scalars(select(HelpRequestRecord).where(HelpRequestRecord.status == "open",
                                                               HelpRequestRecord.at < cutoff)))
    for row in old:
        row.status, row.frame, row.photo = "expired", None, None
    return len(old)


def open_requests(session: Session, site_id: str, gate: str) -> list[HelpRequestRecord]:
    get_gate(session, site_id, gate)
    expire_requests(session)
    return list(session.scalars(select(HelpRequestRecord).where(
        HelpRequestRecord.site_id == site_id, HelpRequestRecord.gate == gate, HelpRequestRecord.status == "open")
        .order_by(HelpRequestRecord.at.desc())))


def get_request(session: Session, site_id: str, gate: str, help_id: str) -> HelpRequestRecord:
    row = session.get(HelpRequestRecord, help_id)
    if row is None or row.site_id != site_id or row.gate != gate:
        raise NotFound("no_help_request", _l("There is no such request for staff at this gate."))
    return row


def request_photo(session: Session, cipher, row: HelpRequestRecord) -> bytes | None:
    """The photo to show beside the camera: the pass holder's (enrolment), else a finger-bound ticket's
    first-entry view that came with the request."""
    if row.holder_ref:
        return holder_photo(session, cipher, row.holder_ref)
    if cipher is None or row.photo is None:
        return None
    return cipher.decrypt(row.photo, row.credential_ref, "photo")


def request_frame(session: Session, cipher, row: HelpRequestRecord) -> bytes | None:
    if cipher is None or row.frame is None:
        return None
    return cipher.decrypt(row.frame, row.holder_ref or row.gate, "frame")


def answer_help(session: Session, site_id: str, gate: str, help_id: str, admit: bool, actor: str):
    """Staff admit once or refuse; returns the command record to send to the gate."""
    row = get_request(session, site_id, gate, help_id)
    expire_requests(session)
    if row.status != "open":
        raise Refused("help_answered", _l("This request was already answered or has expired."))
    row.status = "admitted" if admit else "refused"
    row.decided_by, row.decided_at = actor, utcnow()
    row.frame = row.photo = None  # the camera's views are kept only while the request is open
    record, _message, _topic = create_command(session, site_id, gate, "staff_admit" if admit else "staff_refuse",
                                              actor=actor, help_id=help_id)
    audit(session, actor, "gate.help", f"{site_id}/{gate}", decision=row.status, credential=row.credential_ref,
          reason=row.reason, help_id=help_id)
    return record


@dataclass(frozen=True)
class Refusal:
    at: datetime
    reason: str
    credential_kind: str
    credential_ref: str
    direction: str


def recent_refusals(session: Session, site_id: str, gate: str, limit: int = 20) -> list[Refusal]:
    """The gate's latest refusals, newest first: what staff need to answer the visitor."""
    rows = session.execute(select(PassageEventRecord).where(
        PassageEventRecord.site_id == site_id, PassageEventRecord.gate == gate,
        PassageEventRecord.decision == "refused").order_by(PassageEventRecord.at.desc()).limit(limit)).scalars()
    return [Refusal(r.at, r.reason, r.credential_kind, r.credential_ref, r.direction) for r in rows]


__all__ = ["answer_help", "forget_photo", "holder_photo", "keep_holder_photo", "open_requests", "recent_refusals",
           "record_help_request", "request_frame"]
