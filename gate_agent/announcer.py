"""What the visitor sees and hears at the gate: the decision's reason, in the site's language and time.

Besides the reason, a `Notice` carries what staff beside the gate must see: the ticket type where
they must check it (a child's or senior's ticket, a concession), a group's name and how many of it
have gone in ("Group ABC Travel: 12 / 30 in"), and whether the visitor must see staff.

A display or voice module that fails never holds up a decision: the voice speaks from its own thread
(`gate_agent.speaker`), a display failure is logged and the gate goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from protocol.i18n import N_, translation
from protocol.reasons import FINAL, Reason, visitor_text

from .display import Colour, Display, colour_for

log = logging.getLogger(__name__)

# TRANSLATORS: lines a gate's screen shows under the decision, read by the visitor and by staff beside
# the gate. {type} is a ticket type's name (儿童票), {group} a group's or ticket type's name.
CHECK_TICKET = N_("{type}: staff please check")
GROUP_COUNT = N_("{group}: {entered} / {total} in")
SEE_STAFF = N_("Please see staff")
STAFF_COMING = N_("Staff have been called")

# Refusals a member of staff can resolve at the gate (the holder's photo beside the camera), and the
# gate's own faults: the visitor is sent to staff rather than left wondering.
STAFF_REASONS = frozenset({Reason.NOT_SAME_PERSON, Reason.CONTROLLER_FAULT, Reason.UNKNOWN_CREDENTIAL,
                           Reason.PASS_LOST, Reason.PASS_SUSPENDED, Reason.KEY_RETIRED, Reason.FINGER_NEEDED,
                           Reason.CARD_PHOTO_UNREADABLE})


@dataclass(frozen=True)
class TicketNote:
    """What the screen says of the ticket beyond the decision."""

    type_name: str = ""
    staff_check: bool = False  # a child's, senior's or concession ticket: staff look at the visitor
    group: str = ""  # a group ticket's name, shown with the count
    headcount: int = 1
    entered: int = 0  # passages of this ticket so far, this one included


@dataclass(frozen=True)
class Notice:
    """One decision as the gate's screen shows it."""

    text: str  # the decision, in the site's language
    colour: Colour
    reason: str
    lines: tuple[str, ...] = ()
    see_staff: bool = False
    at: float = field(default_factory=time.time)


class NoticeDisplay(Protocol):
    """A display that shows the whole notice (a kiosk page), not only the decision's text."""

    def notice(self, notice: Notice) -> None: ...


class Voice(Protocol):
    def say(self, text: str) -> None: ...


class Announcer:
    """Shows and speaks reasons; `language()` and `timezone()` follow the gate's current config."""

    def __init__(self, display: Display, language: Callable[[], str], timezone: Callable[[], str | None],
                 voice: Voice | None = None) -> None:
        self.display = display
        self.voice = voice
        self._language = language
        self._timezone = timezone

    def notice_for(self, reason: Reason, retry_at: datetime | None = None, passages: int = 1,
                   ticket: TicketNote | None = None) -> Notice:
        """The notice for a decision (pure: no display touched)."""
        tz = self._timezone()
        if retry_at is not None and tz:
            retry_at = retry_at.astimezone(ZoneInfo(tz))
        gettext = translation(self._language()).gettext
        text = visitor_text(reason, self._language(), retry_at)
        if passages > 1:
            text = f"{text} ×{passages}"
        lines: list[str] = []
        if ticket is not None:
            if ticket.staff_check and ticket.type_name and reason not in FINAL:
                lines.append(gettext(CHECK_TICKET).format(type=ticket.type_name))
            if ticket.headcount > 1 and (ticket.group or ticket.type_name):
                lines.append(gettext(GROUP_COUNT).format(group=ticket.group or ticket.type_name,
                                                         entered=ticket.entered, total=ticket.headcount))
        see_staff = Reason(reason) in STAFF_REASONS and reason != Reason.FINGER_NEEDED
        if see_staff and gettext(SEE_STAFF).lower() not in text.lower():
            lines.append(gettext(SEE_STAFF))
        return Notice(text, colour_for(reason), str(reason), tuple(lines), see_staff)

    def _show(self, notice: Notice, speak: str | None) -> None:
        try:
            self.display.show(notice.text, notice.colour, notice.reason)
            if hasattr(self.display, "notice"):
                self.display.notice(notice)  # type: ignore[attr-defined]
            if speak:
                if self.voice is not None:
                    self.voice.say(speak)  # its own thread: returns at once
                else:
                    self.display.speak(speak)
        except Exception:
            log.exception("display failed")

    def tell(self, reason: Reason, retry_at: datetime | None = None, passages: int = 1,
             ticket: TicketNote | None = None) -> Notice:
        """The decision: "Welcome", "Please come back at 14:00" (the site's time), "... ×3" for a group;
        what staff must check is said too (a child ticket), so staff hear it without looking."""
        notice = self.notice_for(reason, retry_at, passages, ticket)
        spoken = notice.text
        if ticket is not None and ticket.staff_check and ticket.type_name and reason not in FINAL:
            spoken = f"{spoken}，{ticket.type_name}" if self._language() == "zh" else f"{spoken}, {ticket.type_name}"
        self._show(notice, spoken)
        return notice

    def count(self, ticket: TicketNote, reason: Reason = Reason.OK) -> None:
        """A group's count after each passage ("12 / 30 in"), shown, not spoken."""
        self._show(self.notice_for(reason, ticket=ticket), None)

    def tell_staff(self) -> None:
        """The gate cannot let the visitor through itself (its turnstile cannot be driven)."""
        self._show(self.notice_for(Reason.CONTROLLER_FAULT), None)

    def staff_called(self, reason: Reason) -> None:
        """A refusal staff can resolve at the gate: the visitor is told staff are coming."""
        notice = self.notice_for(reason)
        gettext = translation(self._language()).gettext
        self._show(Notice(notice.text, notice.colour, notice.reason, (gettext(STAFF_COMING),), True), None)


__all__ = ["Announcer", "Notice", "NoticeDisplay", "TicketNote"]
