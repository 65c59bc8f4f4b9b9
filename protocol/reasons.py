"""The fixed list of decision reasons, each with a short text for the visitor.

The texts are gettext msgids (`MESSAGES`), translated from the project's one catalogue
(`protocol.i18n`, protocol/locale) with the standard library, so the gate needs no Babel or Flask.

A reason is `actionable` when the visitor can do something about it (come back at 14:00, go to the
exit first, look at the camera). Where several reasons apply, `protocol.rules` names, in this order:
1. a *final* reason: the credential can never pass here (forged, revoked, used up, expired): telling
   such a visitor to come back later would be a lie;
2. an *actionable* reason;
3. any other reason (wrong zone, wrong day: the visitor cannot change it at this gate).
Within each group the order of `Reason` below decides.
"""

from __future__ import annotations

import gettext
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from protocol.i18n import N_, translation


class Reason(StrEnum):
    OK = "ok"
    FREE_PASSAGE = "free_passage"
    EMERGENCY = "emergency"
    # final: this credential will never pass
    NOT_A_CODE = "not_a_code"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    KEY_RETIRED = "key_retired"
    UNKNOWN_CREDENTIAL = "unknown_credential"
    NO_BOOKING = "no_booking"
    REVOKED = "revoked"
    REFUNDED = "refunded"
    PASS_LOST = "pass_lost"
    PASS_SUSPENDED = "pass_suspended"
    CUSTOMER_SUSPENDED = "customer_suspended"  # a group customer's tickets, held while it is suspended
    EXPIRED = "expired"
    SLOT_MISSED = "slot_missed"
    USED_UP = "used_up"
    # actionable: the visitor can do something now or later
    GATE_LOCKED = "gate_locked"
    TOO_EARLY = "too_early"
    CLOSED = "closed"
    EXIT_FIRST = "exit_first"
    TOO_SOON = "too_soon"
    ZONE_FULL = "zone_full"
    LOOK_AT_CAMERA = "look_at_camera"
    FINGER_NEEDED = "finger_needed"
    # neither final nor actionable at this gate
    NOT_SAME_PERSON = "not_same_person"
    WRONG_ZONE = "wrong_zone"
    WRONG_DAY = "wrong_day"
    WRONG_DIRECTION = "wrong_direction"
    CLAIMED_ELSEWHERE = "claimed_elsewhere"
    CARD_PHOTO_UNREADABLE = "card_photo_unreadable"  # 人证核验 asked, the reader gave no photo
    CONTROLLER_FAULT = "controller_fault"  # the gate cannot drive its turnstile: a fault, not the visitor's


FINAL = frozenset({
    Reason.NOT_A_CODE, Reason.BAD_SIGNATURE, Reason.UNKNOWN_KEY, Reason.KEY_RETIRED,
    Reason.UNKNOWN_CREDENTIAL, Reason.NO_BOOKING, Reason.REVOKED, Reason.REFUNDED, Reason.PASS_LOST,
    Reason.PASS_SUSPENDED, Reason.CUSTOMER_SUSPENDED, Reason.EXPIRED, Reason.SLOT_MISSED, Reason.USED_UP,
})
ACTIONABLE = frozenset({
    Reason.GATE_LOCKED, Reason.TOO_EARLY, Reason.CLOSED, Reason.EXIT_FIRST, Reason.TOO_SOON,
    Reason.ZONE_FULL, Reason.LOOK_AT_CAMERA, Reason.FINGER_NEEDED,
})
GRANTING = frozenset({Reason.OK, Reason.FREE_PASSAGE, Reason.EMERGENCY})
_ORDER = {r: i for i, r in enumerate(Reason)}


def rank(reason: Reason) -> tuple[int, int]:
    """Sort key: the reason to name first sorts lowest."""
    group = 0 if reason in FINAL else 1 if reason in ACTIONABLE else 2
    return group, _ORDER[reason]


@dataclass(frozen=True)
class Message:
    """A reason's words for the visitor as gettext msgids (English source text, see `protocol.i18n`)."""

    text: str
    no_time: str = ""  # for a text with {at}, when no time is known (a report, a log)


# TRANSLATORS: texts a gate shows and speaks to a visitor: short, polite, read at a glance. {at} is a
# time of day in the park (14:00).
MESSAGES: dict[Reason, Message] = {
    Reason.OK: Message(N_("Welcome")),
    Reason.FREE_PASSAGE: Message(N_("Free passage")),
    Reason.EMERGENCY: Message(N_("Emergency: gates open")),
    Reason.NOT_A_CODE: Message(N_("This is not a ticket code")),
    Reason.BAD_SIGNATURE: Message(N_("Ticket code not valid")),
    Reason.UNKNOWN_KEY: Message(N_("Ticket code not valid here")),
    Reason.KEY_RETIRED: Message(N_("Ticket code no longer valid, please see staff")),
    Reason.UNKNOWN_CREDENTIAL: Message(N_("Not recognised, please see staff")),
    Reason.NO_BOOKING: Message(N_("No booking for this ID card today")),
    Reason.REVOKED: Message(N_("Ticket cancelled")),
    Reason.REFUNDED: Message(N_("Ticket refunded")),
    Reason.PASS_LOST: Message(N_("Card reported lost, please see staff")),
    Reason.PASS_SUSPENDED: Message(N_("Pass suspended, please see staff")),
    Reason.CUSTOMER_SUSPENDED: Message(N_("Group ticket on hold, please see staff")),
    Reason.EXPIRED: Message(N_("Ticket expired")),
    Reason.SLOT_MISSED: Message(N_("Your time slot has passed")),
    Reason.USED_UP: Message(N_("Ticket already used")),
    Reason.GATE_LOCKED: Message(N_("Gate closed, please use another gate")),
    Reason.TOO_EARLY: Message(N_("Please come back at {at}"), N_("Too early, please come back later")),
    Reason.CLOSED: Message(N_("Closed now, opens at {at}"), N_("Closed now")),
    Reason.EXIT_FIRST: Message(N_("Please exit first")),
    Reason.TOO_SOON: Message(N_("Please wait until {at}"), N_("Too soon after the last entry")),
    Reason.ZONE_FULL: Message(N_("Area full, please wait")),
    Reason.LOOK_AT_CAMERA: Message(N_("Please look at the camera")),
    Reason.FINGER_NEEDED: Message(N_("Please place your finger")),
    Reason.NOT_SAME_PERSON: Message(N_("Ticket belongs to another person")),
    Reason.WRONG_ZONE: Message(N_("Ticket not valid for this area")),
    Reason.WRONG_DAY: Message(N_("Ticket not valid today")),
    Reason.WRONG_DIRECTION: Message(N_("Wrong direction")),
    Reason.CLAIMED_ELSEWHERE: Message(N_("Ticket just used at another gate")),
    Reason.CARD_PHOTO_UNREADABLE: Message(N_("ID card photo not readable, please see staff")),
    Reason.CONTROLLER_FAULT: Message(N_("Gate fault, please see staff")),
}


def visitor_text(reason: Reason | str, language: str = "zh", at: datetime | None = None,
                 translations: gettext.NullTranslations | None = None) -> str:
    """The words the gate shows and speaks; `at` fills in 'come back at ...' (site local time).

    `language` is a tag as configured ("zh" is Simplified Chinese); `translations` overrides it with a
    catalogue already chosen (the central's request locale).
    """
    message = MESSAGES[Reason(reason)]
    gettext_ = (translations or translation(language)).gettext
    if at is None and message.no_time:
        return gettext_(message.no_time)
    return gettext_(message.text).format(at=at.strftime("%H:%M") if at else "")


@dataclass(frozen=True)
class Text:
    """A reason's words in both languages, read from the catalogue (see `TEXTS`)."""

    en: str
    zh: str
    en_no_time: str = ""
    zh_no_time: str = ""


class _Texts(Mapping[Reason, Text]):
    """Every reason's words in English and Chinese, as the catalogue has them (read on access)."""

    def __getitem__(self, reason: Reason) -> Text:
        message, zh = MESSAGES[Reason(reason)], translation("zh").gettext
        return Text(message.text, zh(message.text), message.no_time, zh(message.no_time) if message.no_time else "")

    def __iter__(self) -> Iterator[Reason]:
        return iter(MESSAGES)

    def __len__(self) -> int:
        return len(MESSAGES)


TEXTS: Mapping[Reason, Text] = _Texts()
