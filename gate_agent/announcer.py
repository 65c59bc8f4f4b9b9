"""What the visitor sees and hears at the gate: the decision's reason, in the site's language and time.

A display that fails never holds up a decision: the failure is logged and the gate goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from protocol.reasons import Reason, visitor_text

from .display import Display, colour_for

log = logging.getLogger(__name__)


class Announcer:
    """Shows and speaks reasons; `language()` and `timezone()` follow the gate's current config."""

    def __init__(self, display: Display, language: Callable[[], str], timezone: Callable[[], str | None]) -> None:
        self.display = display
        self._language = language
        self._timezone = timezone

    def tell(self, reason: Reason, retry_at: datetime | None = None, passages: int = 1) -> None:
        """The decision: "Welcome", "Please come back at 14:00" (the site's time), "... ×3" for a group."""
        tz = self._timezone()
        if retry_at is not None and tz:
            retry_at = retry_at.astimezone(ZoneInfo(tz))
        text = visitor_text(reason, self._language(), retry_at)
        if passages > 1:
            text = f"{text} ×{passages}"
        try:
            self.display.show(text, colour_for(reason), str(reason))
            self.display.speak(text)
        except Exception:
            log.exception("display failed")

    def tell_staff(self) -> None:
        """The gate cannot let the visitor through itself (its turnstile cannot be driven)."""
        text = visitor_text(Reason.CONTROLLER_FAULT, self._language())
        try:
            self.display.show(text, "red", str(Reason.CONTROLLER_FAULT))
        except Exception:
            log.exception("display failed")


__all__ = ["Announcer"]
