"""A SYN6288-style voice module on a pty: takes frames, answers status bytes, "speaks" for a while.

`said` keeps every text it was given (decoded from its encoding); `wait_said(predicate)` awaits one.
It answers 0x41 to each valid frame, 0x45 to a frame with a bad check byte or an unknown command, and
0x4F once a text has been spoken (`speak_s` per character). A synthesis frame while speaking replaces
the current text, STOP ends it. `silent` (from the base class) plays a module that hung.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from drivers import voice_frames as f
from drivers.sim.serial_sim import RequestResponseSim


class VoiceModuleSim(RequestResponseSim):
    name = "voice-sim"

    def __init__(self, device_path: str | None = None, *, speak_s: float = 0.01) -> None:
        self.speak_s = speak_s
        self.said: list[str] = []
        self.frames: list[bytes] = []
        self.stops = 0
        self._speaking_until = 0.0
        self._generation = 0
        self._changed = threading.Condition()
        super().__init__(device_path)

    def split(self, buf: bytes) -> tuple[bytes | None, int]:
        return f.split_frame(buf)

    @property
    def busy(self) -> bool:
        return time.monotonic() < self._speaking_until

    def _finish_later(self, generation: int, after: float) -> None:
        def done() -> None:
            time.sleep(after)
            with self._lock:
                if generation == self._generation and self.pty.plugged and not self.silent:
                    self.pty.write(bytes([f.Status.IDLE]))

        threading.Thread(target=done, name="voice-sim-done", daemon=True).start()

    def handle(self, frame: bytes) -> bytes:
        try:
            decoded = f.decode_frame(frame)
        except Exception:
            return bytes([f.Status.ERROR])
        self.frames.append(frame)
        if decoded.cmd == f.Cmd.SPEAK:
            duration = self.speak_s * max(1, len(decoded.text))
            self._generation += 1
            self._speaking_until = time.monotonic() + duration
            self._finish_later(self._generation, duration)
            with self._changed:
                self.said.append(decoded.text)
                self._changed.notify_all()
            return bytes([f.Status.RECEIVED])
        if decoded.cmd == f.Cmd.STOP:
            self.stops += 1
            self._generation += 1
            self._speaking_until = 0.0
            return bytes([f.Status.RECEIVED])
        if decoded.cmd == f.Cmd.STATUS:
            return bytes([f.Status.BUSY if self.busy else f.Status.IDLE])
        if decoded.cmd in (f.Cmd.PAUSE, f.Cmd.RESUME, f.Cmd.POWER_DOWN):
            return bytes([f.Status.RECEIVED])
        return bytes([f.Status.ERROR])

    def wait_said(self, predicate: Callable[[str], bool], timeout: float = 5.0) -> str | None:
        """The newest text said matching `predicate`, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for text in reversed(self.said):
                    if predicate(text):
                        return text
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)


__all__ = ["VoiceModuleSim"]
