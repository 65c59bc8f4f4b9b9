"""Staff help at the gate: a pass refused for its biometric asks staff, who admit once or refuse.

    refusal not_same_person / finger not read (an annual pass) ──► HelpRequest on the gate's `help` topic,
                                                                    with the camera's view now (small JPEG)
    the central's staff page (holder's photo beside that view) ──► Command staff_admit / staff_refuse

Parks rely on staff where biometrics fail (fingers are read about nine times in ten). An admission is
one passage of that pass, recorded and counted as any other; the staff member's name is in the
central's audit log. A request is answered within `KEEP_S` or forgotten; the camera's view is sent
once and kept nowhere at the gate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from protocol import messages as m
from protocol import topics
from protocol.ids import new_event_id
from protocol.reasons import Reason

from .decider import Attempt, Outcome

log = logging.getLogger(__name__)
HELP_REASONS = frozenset({Reason.NOT_SAME_PERSON, Reason.FINGER_NEEDED})
KEEP_S = 300.0  # a request nobody answered in five minutes: the visitor has gone
FRAME_SIDE = 320  # the camera's view, scaled down: enough for a face beside the holder's photo


@dataclass
class Pending:
    attempt: Attempt
    outcome: Outcome
    asked_at: float


def jpeg(frame, side: int = FRAME_SIDE, quality: int = 70) -> bytes:
    """An RGB frame as a small JPEG."""
    import io

    from PIL import Image

    img = Image.fromarray(frame)
    img.thumbnail((side, side))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


class StaffHelp:
    """The gate's open requests for staff; `frame()` is the camera's view now as a JPEG (or None)."""

    def __init__(self, site: str, gate: str, publish: Callable[..., object],
                 frame: Callable[[], bytes | None] = lambda: None,
                 first_photo: Callable[[str], bytes | None] = lambda ref: None) -> None:
        self.site, self.gate = site, gate
        self._publish = publish
        self._frame = frame
        self._first_photo = first_photo  # a finger-bound ticket's first-entry view (人票绑定)
        self._pending: dict[str, Pending] = {}
        self._lock = threading.Lock()

    @staticmethod
    def needed(outcome: Outcome) -> bool:
        """A pass holder, or a ticket bound by fingerprint, refused for the biometric step: staff compare faces."""
        resolved = outcome.resolved
        finger_bound = resolved.rules is not None and resolved.rules.bind_finger and resolved.usage.bound
        return (not outcome.verdict.granted and outcome.verdict.reason in HELP_REASONS
                and resolved.credential is not None and (resolved.holder_id is not None or finger_bound))

    def ask(self, attempt: Attempt, outcome: Outcome) -> str:
        """Publish a HelpRequest; its id is what staff answer."""
        try:
            frame = self._frame()
        except Exception:  # no view to send: staff still see the holder's photo and talk to the visitor
            log.warning("staff help: no camera view", exc_info=True)
            frame = None
        help_id = new_event_id()
        resolved = outcome.resolved
        request = m.HelpRequest(id=help_id, site=self.site, gate=self.gate, at=datetime.now(UTC),
                                direction=attempt.direction, credential_kind=resolved.kind,
                                credential_ref=resolved.ref, holder_id=resolved.holder_id,
                                reason=str(outcome.verdict.reason), frame=frame,
                                photo=None if resolved.holder_id else self._first_photo(resolved.ref))
        now = time.monotonic()
        with self._lock:
            self._pending = {k: p for k, p in self._pending.items() if now - p.asked_at < KEEP_S}
            self._pending[help_id] = Pending(attempt, outcome, now)
        self._publish(topics.help_request(self.site, self.gate), m.encode(request))
        log.info("staff help asked for %s (%s)", resolved.ref, outcome.verdict.reason)
        return help_id

    def take(self, help_id: str | None) -> Pending | None:
        """The open request `help_id`, answered now (None if unknown, answered or too old)."""
        with self._lock:
            pending = self._pending.pop(help_id or "", None)
        if pending is None or time.monotonic() - pending.asked_at >= KEEP_S:
            return None
        return pending

    @property
    def open(self) -> int:
        with self._lock:
            return len(self._pending)


__all__ = ["HELP_REASONS", "StaffHelp", "jpeg"]
