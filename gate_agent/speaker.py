"""The gate's voice module (SYN6288 family) in a thread of its own: a decision never waits for it.

`say(text)` hands the newest text over and returns at once; a text not yet spoken when a newer one
comes is dropped (the visitor hears the decision that concerns them). A module that fails is a fault
on the gate's status (`health()`: name "voice", ok False, the driver's message), cleared when it
speaks again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from protocol.messages import ReaderHealth

from .config import VoiceDevice

log = logging.getLogger(__name__)

ENCODINGS = {"gb2312": 0, "gbk": 1, "big5": 2, "unicode": 3}


class Speaker:
    """One voice module; `changed()` is called when its health changes (the status is published)."""

    def __init__(self, device: VoiceDevice, changed: Callable[[], None] = lambda: None) -> None:
        from drivers.voice import VoiceModule
        from drivers.voice_frames import Encoding

        encoding = None if device.encoding == "auto" else Encoding(ENCODINGS[device.encoding])
        self.module = VoiceModule(device.port, device.baudrate, encoding=encoding,
                                  response_timeout=device.timeout_s)
        self._changed = changed
        self._cond = threading.Condition()
        self._pending: str | None = None
        self.fault: str | None = None
        self.spoken = 0

    def say(self, text: str) -> None:
        """Speak `text` soon; never blocks."""
        with self._cond:
            self._pending = text
            self._cond.notify_all()

    def health(self) -> ReaderHealth:
        if self.fault:
            return ReaderHealth(name="voice", ok=False, detail=self.fault[:200])
        return ReaderHealth(name="voice", ok=True, detail=self.module.port)

    def _set_fault(self, fault: str | None) -> None:
        if fault != self.fault:
            self.fault = fault
            if fault:
                log.warning("voice module: %s", fault)
            self._changed()

    def run(self, stop: threading.Event) -> None:
        from drivers.errors import DriverError

        try:  # at start: a module that is missing or silent shows on the status before anything is said
            self.module.status()
        except DriverError as exc:
            self._set_fault(exc.message)
        while not stop.is_set():
            with self._cond:
                if self._pending is None:
                    self._cond.wait(0.25)
                text, self._pending = self._pending, None
            if text is None:
                continue
            try:
                self.module.say(text)
            except DriverError as exc:
                self._set_fault(exc.message)
            except ValueError as exc:  # a text the module cannot encode: the gate's bug, not the device's
                log.error("voice module: %s", exc)
            else:
                self.spoken += 1
                self._set_fault(None)
        self.module.close()


__all__ = ["Speaker"]
