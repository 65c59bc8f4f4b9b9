"""What the visitor sees and hears: the gate's display (text and colour) and, where fitted, a voice prompt.

`Display` is the interface a real display driver implements; `ConsoleDisplay` prints to the console
and keeps a history, for tests and the demo. The agent calls `show()` in the same breath as the
decision, before it touches the turnstile.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TextIO

from protocol.reasons import ACTIONABLE, GRANTING, Reason

Colour = Literal["green", "amber", "red", "blue"]


def colour_for(reason: Reason) -> Colour:
    """Green to pass, amber when the visitor can act on the reason, red otherwise."""
    if reason in GRANTING:
        return "green"
    if reason in ACTIONABLE:
        return "amber"
    return "red"


class Display(Protocol):
    def show(self, text: str, colour: Colour, reason: str = "") -> None: ...

    def speak(self, text: str) -> None: ...


@dataclass(frozen=True)
class Shown:
    at: float
    text: str
    colour: Colour
    reason: str
    spoken: bool = False


class ConsoleDisplay:
    """A display on the console; `history` keeps what was shown (and spoken) for tests."""

    _ANSI = {"green": "32", "amber": "33", "red": "31", "blue": "34"}

    def __init__(self, name: str = "gate", *, voice: bool = True, stream: TextIO | None = None,
                 keep: int = 1000) -> None:
        self.name = name
        self.voice = voice
        self.stream = stream
        self.keep = keep
        self.history: list[Shown] = []
        self.spoken: list[str] = []
        self.notices: list[Any] = []  # gate_agent.announcer.Notice: the whole decision as a screen shows it
        self._changed = threading.Condition()

    def _print(self, line: str) -> None:
        stream = self.stream or sys.stdout
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed console must never stop a gate

    def show(self, text: str, colour: Colour, reason: str = "") -> None:
        code = self._ANSI.get(colour, "0")
        self._print(f"[{self.name}] \x1b[{code}m{colour.upper():5}\x1b[0m {text} ({reason})")
        with self._changed:
            self.history.append(Shown(time.time(), text, colour, reason))
            del self.history[: -self.keep]
            self._changed.notify_all()

    def notice(self, notice: Any) -> None:
        if notice.lines:
            self._print(f"[{self.name}]       " + " | ".join(notice.lines))
        with self._changed:
            self.notices.append(notice)
            del self.notices[: -self.keep]
            self._changed.notify_all()

    def wait_notice(self, predicate, timeout: float = 5.0):
        """The newest notice matching `predicate`, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for notice in reversed(self.notices):
                    if predicate(notice):
                        return notice
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)

    def speak(self, text: str) -> None:
        if not self.voice:
            return
        self._print(f"[{self.name}] (voice) {text}")
        with self._changed:
            self.spoken.append(text)
            del self.spoken[: -self.keep]
            self._changed.notify_all()

    def wait_for(self, predicate, timeout: float = 5.0) -> Shown | None:
        """The newest shown entry matching `predicate`, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for shown in reversed(self.history):
                    if predicate(shown):
                        return shown
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)


def make_display(kind: str, name: str, voice: bool = True) -> Display:
    """The console display; a kiosk page is `gate_agent.kiosk.make_display`."""
    if kind == "console":
        return ConsoleDisplay(name, voice=voice)
    raise ValueError(f"unknown display kind {kind!r}")


__all__ = ["ConsoleDisplay", "Display", "Shown", "colour_for", "make_display"]
