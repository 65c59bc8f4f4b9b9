"""The turnstile arm: the one owner of the gate's controller, its mode and its counters.

    rebuild(hardware)   a new controller client when the profile or unit id changes (config)
    apply_mode()        the gate's mode onto the controller (tried again by `poll` until it holds)
    pass_once(...)      one turn of the arm; an exit through a locked gate unlocks it for that turn only
    poll()              alarms, the mode, and in free passage how many went through since the last poll

A configured turnstile that cannot be driven (no profile named, one this box does not have, the
controller silent) is a fault the gate reports (`alarms`): `controller_profile_missing`,
`controller_profile_unknown`, `controller_unreachable`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from protocol import messages as m

from .config import TurnstileDevice
from .turnstile import TurnstileControl, TurnstileUnavailable

log = logging.getLogger(__name__)
FREE_MODES = ("free", "emergency")
MAX_COUNTED_PER_POLL = 1000  # a counter that jumped (a controller reset) is not a crowd


@dataclass
class Poll:
    """What one look at the controller found."""

    alarms_changed: bool = False
    # Free passage: visitors the controller counted since the last poll, per direction.
    passed: dict[str, int] = field(default_factory=dict)


class Arm:
    """The turnstile of one gate; `mode()` is the gate's current mode (config or override)."""

    def __init__(self, device: TurnstileDevice | None, mode: Callable[[], m.Mode]) -> None:
        self.device = device
        self._mode = mode
        self.control: TurnstileControl | None = None
        self.alarms: frozenset[str] = frozenset()
        self._key: tuple | None = None
        self._fault: str | None = None  # why a configured turnstile cannot be driven
        self._controller_mode: str | None = None
        self._counters_seen = None
        self._mode_lock = threading.RLock()  # held while a locked gate lets one exit through

    @property
    def configured(self) -> bool:
        """A turnstile is fitted (gate.toml names one); a check point without an arm has none."""
        return self.device is not None

    @property
    def healthy(self) -> bool:
        return self.control.healthy if self.control else True

    @property
    def counting_free(self) -> bool:
        """In free passage with the controller's counters read: passages through the open arm count."""
        return self._counters_seen is not None

    @property
    def port(self) -> str:
        return self.control.port if self.control else "none"

    def rebuild(self, hw: m.HardwareParams) -> None:
        """The controller client for the profile and unit id the gate.toml or the central's config name."""
        t = self.device
        if t is None:
            return
        profile = t.profile or hw.controller_profile
        unit_id = t.unit_id if t.unit_id is not None else hw.unit_id
        key = (profile, unit_id)
        if not profile:
            self._fault = "controller_profile_missing"  # neither gate.toml nor the central names one
        if not profile or key == self._key:
            return
        from drivers.turnstile import ProfileError

        try:
            control: TurnstileControl | None = TurnstileControl(
                profile=profile, tcp=t.tcp_address(), serial=t.serial, baudrate=t.baudrate, unit_id=unit_id,
                timeout_s=t.timeout_s, retries=t.retries, profile_dirs=t.profile_dirs)
        except ProfileError as exc:
            log.error("the turnstile cannot be driven: %s", exc)
            control, self._fault = None, "controller_profile_unknown"
        else:
            self._fault = None
        old, self.control = self.control, control
        self._key = key
        self._controller_mode = None
        self._counters_seen = None
        if old is not None:
            old.close()

    def apply_mode(self) -> None:
        """Set the gate's mode on the controller; on failure `poll` tries again."""
        control = self.control
        if control is None:
            return
        if not self._mode_lock.acquire(blocking=False):
            self._controller_mode = None  # an exit is passing a locked gate: its end applies the mode
            return
        try:
            mode = self._mode()
            control.set_mode(mode)
            self._controller_mode = mode
            # Free passage: from now on the controller's counters say who passes.
            self._counters_seen = control.counters() if mode in FREE_MODES else None
        except TurnstileUnavailable:
            self._controller_mode = None
        finally:
            self._mode_lock.release()

    def pass_once(self, direction: m.Direction, timeout: float, mode: m.Mode, opened=None) -> bool:
        """One turn of the arm; True once the sensor confirmed the visitor went through. A locked
        controller ignores open commands, yet exits are never refused (nobody is trapped inside): for an
        exit the controller goes to normal mode, where the arm stays locked until this one open command,
        and back to the gate's mode once the visitor is out. Raises TurnstileUnavailable."""
        control = self.control
        if control is None:
            raise TurnstileUnavailable("no controller profile")
        if not (mode == "locked" and direction == "out"):
            return control.pass_once(direction, timeout, opened).passed
        with self._mode_lock:
            try:
                control.set_mode("normal")
                self._controller_mode = "normal"
                return control.pass_once(direction, timeout, opened).passed
            finally:
                self.apply_mode()  # locked again, or whatever mode was set meanwhile

    def counters(self):
        if self.control is None:
            raise TurnstileUnavailable("no controller profile")
        return self.control.counters()

    def open_once(self, direction: m.Direction) -> None:
        if self.control is None:
            raise TurnstileUnavailable("no turnstile configured")
        self.control.open_once(direction)

    def poll(self) -> Poll:
        """Alarms and the mode; in free passage, who went through since the last poll."""
        result = Poll()
        control = self.control
        if control is None:
            # A turnstile that cannot be driven (no profile, or one this box does not have) is a fault.
            fault = self._fault if self.device is not None else None
            result.alarms_changed = self._set_alarms(frozenset({fault}) if fault else frozenset())
            return result
        mode = self._mode()
        try:
            if self._controller_mode != mode:
                self.apply_mode()
            alarms = control.alarms()
        except TurnstileUnavailable:
            result.alarms_changed = self._set_alarms(frozenset({"controller_unreachable"}))
            return result
        if alarms != self.alarms:
            log.warning("controller alarms: %s", ", ".join(sorted(alarms)) or "cleared")
        result.alarms_changed = self._set_alarms(alarms)
        if mode in FREE_MODES:
            result.passed = self._free_passages(control)
        else:
            self._counters_seen = None
        return result

    def _set_alarms(self, alarms: frozenset[str]) -> bool:
        changed, self.alarms = alarms != self.alarms, alarms
        return changed

    def _free_passages(self, control: TurnstileControl) -> dict[str, int]:
        """In free passage the arm is open: the controller's counters say who went through."""
        try:
            counters = control.counters()
        except TurnstileUnavailable:
            return {}
        seen, self._counters_seen = self._counters_seen, counters
        if seen is None:
            return {}
        modulus = control.modulus
        moved = {d: min((counters.get(d) - seen.get(d)) % modulus, MAX_COUNTED_PER_POLL) for d in ("in", "out")}
        return {d: n for d, n in moved.items() if n}

    def close(self) -> None:
        if self.control is not None:
            self.control.close()


__all__ = ["Arm", "Poll", "TurnstileUnavailable"]
