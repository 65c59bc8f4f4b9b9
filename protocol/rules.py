"""The entry rules: one pure function from the facts of one attempt to a decision with a reason.

`decide()` takes no clock and does no I/O: `now` is an argument and every fact it needs comes in as a
value, so the gate (fast, offline) and the central (authoritative replay) run exactly the same rules.

    facts at a gate                            decide()                         Verdict
    Credential  (what the code / store says)  --------------------------->  granted? reason,
    TicketTypeRules (entries, re-entry, ...)                                  passages allowed now,
    Usage       (confirmed passages so far)                                  retry_at, bind?
    ZoneState   (inside vs capacity)
    SitePolicy  (time zone, opening hours, biometric policy)
    Biometric   (result of the 1:1 or 1:N step, if any)

Refusals name the reason the visitor can act on before one they cannot; see `protocol.reasons`.
Exits are never refused: a locked or full park still lets people out.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

import msgspec

from protocol.messages import CredentialKind, Direction, Mode, TicketTypeRules
from protocol.reasons import GRANTING, Reason, rank

Status = Literal["valid", "used", "refunded", "revoked", "expired", "held", "active", "suspended", "lost"]
BiometricKind = Literal["face", "fingerprint", "either"]

_STATUS_REASON = {
    "revoked": Reason.REVOKED,
    "refunded": Reason.REFUNDED,
    "lost": Reason.PASS_LOST,
    "suspended": Reason.PASS_SUSPENDED,
    "held": Reason.CUSTOMER_SUSPENDED,  # a ticket of a suspended group customer
    "expired": Reason.EXPIRED,
    "used": Reason.USED_UP,
}


class Credential(msgspec.Struct, frozen=True, kw_only=True):
    """What the gate knows of the presented credential, from its code or its store."""

    kind: CredentialKind
    ref: str
    ticket_type: int | None = None
    status: Status = "valid"
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    slot_start: datetime | None = None
    slot_end: datetime | None = None
    headcount: int = 1
    zones: frozenset[int] = frozenset()  # empty: every zone
    holder_bound: bool = False  # an annual pass: person and card bound


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Confirmed passages of one credential so far (a refused or walked-away attempt is not usage)."""

    entries: int = 0
    exits: int = 0
    last_entry_at: datetime | None = None
    bound: bool = False  # a biometric template was bound at first entry

    @property
    def inside(self) -> int:
        return max(0, self.entries - self.exits)


class ZoneState(msgspec.Struct, frozen=True, kw_only=True):
    zone: int
    inside: int = 0
    capacity: int | None = None


class SitePolicy(msgspec.Struct, frozen=True, kw_only=True):
    timezone: str = "Asia/Shanghai"
    opens: str = "00:00"
    closes: str = "24:00"
    pass_biometric: Literal["none", "face", "fingerprint", "either"] = "face"
    id_face: bool = False  # 人证核验: every ID-card entry needs the camera's face to match the card's photo


def id_face_check(credential: Credential, rules: TicketTypeRules | None, site: SitePolicy) -> bool:
    """True when an ID-card entry must match the card's photo against the camera (人证核验)."""
    return credential.kind == "id_card" and (site.id_face or (rules is not None and rules.id_face))


class Biometric(msgspec.Struct, frozen=True, kw_only=True):
    """The biometric step's outcome: `matched` None means nothing usable was captured."""

    kind: Literal["face", "fingerprint"]
    matched: bool | None
    distance: float | None = None


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    granted: bool
    reason: Reason
    passages: int = 0  # how many turns of the arm this decision allows
    retry_at: datetime | None = None  # for "come back at ..."
    bind: bool = False  # capture and bind the visitor's template with this entry
    reasons: tuple[Reason, ...] = ()  # every reason that applied, first the one named


_WAITS = frozenset({Reason.TOO_EARLY, Reason.CLOSED, Reason.TOO_SOON})
UNLIMITED_TICKET = TicketTypeRules(id=0, name="unlimited", entries=None)


def biometric_step(credential: Credential, rules: TicketTypeRules | None, usage: Usage,
                   site: SitePolicy) -> BiometricKind | None:
    """Which biometric the gate must capture before `decide()` can grant, if any."""
    if credential.kind in ("face", "fingerprint"):
        return None  # identification already was the biometric step
    if credential.holder_bound and site.pass_biometric != "none":
        return site.pass_biometric
    if id_face_check(credential, rules, site):
        return "face"  # against the card's photo, at every entry
    if rules is not None and rules.bind_finger:
        return "fingerprint"  # taken at the first entry, matched at a re-entry
    if rules is not None and rules.same_person:
        return "face"
    return None


def decide(*, credential: Credential | None, rules: TicketTypeRules | None, usage: Usage, zone: ZoneState,
           direction: Direction, now: datetime, site: SitePolicy, mode: Mode = "normal",
           biometric: Biometric | None = None) -> Verdict:
    """Decide one attempt at a gate. Pure: same facts, same verdict, at the gate and the central."""
    if now.tzinfo is None or now.utcoffset() is None:
        # A naive `now` would be read in the host's time zone: gate and central could disagree.
        raise ValueError("decide() needs a timezone-aware `now`")
    headcount = credential.headcount if credential else 1
    if mode == "emergency":
        return Verdict(granted=True, reason=Reason.EMERGENCY, passages=headcount)
    if direction == "out":
        inside = usage.inside if credential else 0
        return Verdict(granted=True, reason=Reason.OK, passages=max(1, min(headcount, inside)))
    if mode == "free":
        return Verdict(granted=True, reason=Reason.FREE_PASSAGE, passages=headcount)
    if credential is None:
        return refused(Reason.UNKNOWN_CREDENTIAL)
    if mode == "locked":
        return refused(Reason.GATE_LOCKED)

    rules = rules or UNLIMITED_TICKET
    found: list[tuple[Reason, datetime | None]] = []
    status_reason = _STATUS_REASON.get(credential.status)
    if status_reason:
        found.append((status_reason, None))

    if credential.valid_from and now < credential.valid_from:
        found.append((Reason.TOO_EARLY, credential.valid_from))
    if credential.valid_to and now > credential.valid_to:
        found.append((Reason.EXPIRED, None))

    local = now.astimezone(_tz(site.timezone))
    if rules.weekdays and local.weekday() not in rules.weekdays:
        found.append((Reason.WRONG_DAY, None))
    opens, closes = _clock(site.opens), _clock(site.closes)
    if not opens <= local.time().replace(tzinfo=None) < closes:
        found.append((Reason.CLOSED, _next_opening(local, opens, closes)))

    # The slot governs arrival: a visitor already admitted once may re-enter after it (re-entry
    # rules still apply), as parks with time-slot booking do.
    first_entry = usage.entries < headcount
    if credential.slot_start and credential.slot_end and first_entry:
        grace = timedelta(minutes=rules.slot_grace_min)
        if now < credential.slot_start - grace:
            found.append((Reason.TOO_EARLY, credential.slot_start - grace))
        elif now > credential.slot_end + grace:
            found.append((Reason.SLOT_MISSED, None))

    if (credential.zones and zone.zone not in credential.zones) or (rules.zones and zone.zone not in rules.zones):
        found.append((Reason.WRONG_ZONE, None))

    allowed = headcount
    if rules.entries is not None:
        remaining = rules.entries * headcount - usage.entries
        if remaining <= 0:
            found.append((Reason.USED_UP, None))
        allowed = min(allowed, remaining)
    if rules.anti_passback:
        outside = headcount - usage.inside
        if outside <= 0:
            found.append((Reason.EXIT_FIRST, None))
        allowed = min(allowed, outside)
    if rules.min_gap_s and usage.last_entry_at and usage.entries >= headcount:
        ready = usage.last_entry_at + timedelta(seconds=rules.min_gap_s)
        if now < ready:
            found.append((Reason.TOO_SOON, ready))
    if zone.capacity is not None:
        room = zone.capacity - zone.inside
        if room <= 0:
            found.append((Reason.ZONE_FULL, None))
        allowed = min(allowed, room)

    bind = False
    step = biometric_step(credential, rules, usage, site)
    if step is not None:
        # Against the card's photo (人证核验) there is always something to match: nothing is bound.
        binding_first_entry = not credential.holder_bound and not usage.bound and not id_face_check(
            credential, rules, site)
        # A face match does not satisfy a fingerprint policy, nor the reverse.
        captured = biometric is not None and biometric.matched is not None and step in ("either", biometric.kind)
        if biometric is None or not captured:
            found.append((Reason.FINGER_NEEDED if step == "fingerprint" else Reason.LOOK_AT_CAMERA, None))
        elif binding_first_entry:
            bind = True  # the first entry binds whoever is at the camera now
        elif not biometric.matched:
            found.append((Reason.NOT_SAME_PERSON, None))

    if found:
        found.sort(key=lambda item: rank(item[0]))
        reason, retry_at = found[0]
        if retry_at is not None:
            # "Come back at" must clear every wait at once: a slot at 14:00 in a park that opens at
            # 08:00 means 14:00, and a ticket valid from midnight in a park closed until 08:00 means 08:00.
            retry_at = max(at for r, at in found if at is not None and r in _WAITS)
        reasons = tuple(dict.fromkeys(r for r, _ in found))
        return Verdict(granted=False, reason=reason, retry_at=retry_at, reasons=reasons)
    return Verdict(granted=True, reason=Reason.OK, passages=max(1, allowed), bind=bind, reasons=(Reason.OK,))


def refused(reason: Reason, retry_at: datetime | None = None) -> Verdict:
    """A refusal decided before the rules could run (a code that is not a code, an unknown card)."""
    if reason in GRANTING:
        raise ValueError(f"{reason} is not a refusal")
    return Verdict(granted=False, reason=reason, retry_at=retry_at, reasons=(reason,))


@lru_cache(maxsize=64)
def _tz(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=64)
def _clock(text: str) -> time:
    if text == "24:00":
        return time.max
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _next_opening(local: datetime, opens: time, closes: time) -> datetime:
    day = local.date() if local.time().replace(tzinfo=None) < opens else local.date() + timedelta(days=1)
    return datetime.combine(day, opens, tzinfo=local.tzinfo)
