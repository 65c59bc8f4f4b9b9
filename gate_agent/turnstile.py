"""The turnstile as the agent sees it: open for one passage, wait for the sensor, set the mode, read alarms.

A thin adapter over `drivers.turnstile.Turnstile`: every `drivers.errors.DriverError` comes out as one
domain error, `TurnstileUnavailable`, and `healthy` / `last_error` feed the gate's status.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from drivers.errors import DriverError
from drivers.turnstile import Direction

log = logging.getLogger(__name__)


class TurnstileUnavailable(Exception):
    """The controller could not be reached or refused the command."""


@dataclass(frozen=True)
class Turn:
    """One turn of the arm asked for: `passed` once the sensor confirmed it."""

    passed: bool


class TurnstileControl:
    """The gate's controller, opened lazily and reconnected after any failure."""

    def __init__(self, *, profile: str, tcp: tuple[str, int] | None = None, serial: str | None = None,
                 baudrate: int = 9600, unit_id: int = 1, timeout_s: float = 0.3, retries: int = 2,
                 profile_dirs: tuple[str, ...] = ()) -> None:
        from drivers.turnstile import Turnstile

        self._driver = Turnstile(profile, tcp=tcp, serial=serial, baudrate=baudrate, unit_id=unit_id,
                                 timeout=timeout_s, retries=retries, profile_dirs=profile_dirs)
        self.port = self._driver.port
        self.profile = self._driver.profile.model
        self.last_error: str = ""
        self._ok = False
        self._lock = threading.RLock()

    @property
    def modulus(self) -> int:
        """Where the controller's counters wrap."""
        return self._driver.profile.counter_modulus

    @property
    def healthy(self) -> bool:
        return self._ok

    def _do(self, what: str, fn, *args):
        with self._lock:
            try:
                if not self._ok:
                    self._driver.connect()
                result = fn(*args)
            except DriverError as exc:
                self._ok = False
                self.last_error = f"{what}: {exc.message}"
                log.warning("turnstile %s: %s failed: %s", self.port, what, exc.message)
                raise TurnstileUnavailable(self.last_error) from exc
            self._ok = True
            self.last_error = ""
            return result

    def connect(self) -> bool:
        try:
            self._do("connect", self._driver.read_counters)
            return True
        except TurnstileUnavailable:
            return False

    def counters(self):
        return self._do("read counters", self._driver.read_counters)

    def open_once(self, direction: Direction) -> None:
        self._do(f"open {direction}", self._driver.open_once, direction)

    def pass_once(self, direction: Direction, timeout_s: float,
                  opened: Callable[[int | None], None] | None = None) -> Turn:
        """Release the arm for one passage and wait for the sensor; `passed` False when the visitor walked away.

        `opened(counter_before)` runs right after the open command, before the visitor can be through
        (an arm takes a good part of a second to turn): the gate notes the passage under way there,
        off the visitor's wait."""
        with self._lock:
            before = self.counters()
            self.open_once(direction)
        if opened is not None:
            opened(before.get(direction))
        # The wait holds no lock, so alarm polling goes on (the driver is thread-safe per call).
        try:
            passed = self._driver.wait_passage(direction, timeout_s, since=before)
        except DriverError as exc:
            self._ok = False
            self.last_error = f"wait passage: {exc.message}"
            raise TurnstileUnavailable(self.last_error) from exc
        return Turn(passed)

    def set_mode(self, mode: str) -> None:
        """normal, free, locked; emergency drives the controller to free passage."""
        controller_mode = "free" if mode in ("emergency", "free") else mode
        self._do(f"set mode {controller_mode}", self._driver.set_mode, controller_mode)

    def alarms(self) -> frozenset[str]:
        return self._do("read alarms", self._driver.read_alarms)

    def close(self) -> None:
        with self._lock:
            self._driver.close()
            self._ok = False


__all__ = ["Turn", "TurnstileControl", "TurnstileUnavailable"]
