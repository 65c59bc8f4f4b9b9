"""The park's clock: what time it is for tickets, slots, passages, counts and reports.

Production runs on the wall clock and nothing here changes that. The demo walks visitors through
simulated days, and every process it starts (the central, the gate agents, the visitors) must agree
on the simulated time, or the central sells for one day while the gates admit for another. So the
clock is chosen once per process from the environment variable `PARK_CLOCK`, which the demo sets
for itself and its children:

    PARK_CLOCK unset or "real"      the wall clock (production)
    PARK_CLOCK="fixed 2026-12-02T08:00:00+08:00"   a clock that stands still
    PARK_CLOCK="simulated start=2026-12-02T08:00:00+08:00 at=1764633600.0 speed=900 hours=08:00-19:00"

A simulated clock reads `start` at the real Unix time `at` and runs `speed` times faster than real
time. With `hours`, only that part of each day is lived: at the end of it the clock jumps to the
start of the next day's hours (the demo's nights, which would otherwise be long minutes of nothing).
The clock is a pure function of the real time, so separate processes given the same spec agree.

Park time ("now" below) is for what a person reads as the park's date and time: the business day,
validity windows, slots, passage times, the roll-over, the dashboard's today. Machinery keeps the
wall clock: heartbeats, sessions, lock-outs, delivery retries, claim deadlines, which are durations
measured in real seconds (a 30 s heartbeat timeout must not become 30 simulated seconds).
"""

from __future__ import annotations

import os
import threading
import time as _time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as time_of_day
from typing import Protocol

ENV = "PARK_CLOCK"

__all__ = ["ENV", "Clock", "ClockError", "FixedClock", "SimulatedClock", "WallClock", "install", "park_clock",
           "park_now", "parse"]


class ClockError(ValueError):
    """`PARK_CLOCK` (or a clock spec) is not understood; the message names what is wrong."""


class Clock(Protocol):
    """Anything that says what time it is, as an aware datetime in UTC."""

    def now(self) -> datetime: ...

    def spec(self) -> str: ...


@dataclass(frozen=True)
class WallClock:
    """The real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def spec(self) -> str:
        return "real"


@dataclass(frozen=True)
class FixedClock:
    """A clock that stands still at `at` (the demo while it seeds; tests)."""

    at: datetime

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ClockError("a fixed clock's time needs a UTC offset, e.g. 2026-12-02T08:00:00+08:00")

    def now(self) -> datetime:
        return self.at.astimezone(UTC)

    def spec(self) -> str:
        return f"fixed {self.at.isoformat()}"


@dataclass(frozen=True)
class SimulatedClock:
    """`start` at the real Unix time `at`, running `speed` times as fast; only `hours` of each day, if given."""

    start: datetime
    at: float
    speed: float
    hours: tuple[time_of_day, time_of_day] | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ClockError("a simulated clock's start needs a UTC offset, e.g. 2026-12-02T08:00:00+08:00")
        if not 0 < self.speed <= 1_000_000:
            raise ClockError(f"a simulated clock's speed must be above 0 and at most 1000000, not {self.speed:g}")
        if self.hours is not None:
            opens, closes = self.hours
            if closes <= opens:
                raise ClockError("a simulated clock's hours must end after they begin, e.g. 08:00-19:00")
            if not opens <= self.start.timetz().replace(tzinfo=None) < closes:
                raise ClockError("a simulated clock must start within its hours")

    def now(self) -> datetime:
        return self.at_real(_time.time())

    def at_real(self, real: float) -> datetime:
        """The simulated time at the real Unix time `real`."""
        elapsed = (real - self.at) * self.speed
        if self.hours is None:
            return (self.start + timedelta(seconds=elapsed)).astimezone(UTC)
        opens, closes = self.hours
        tz = self.start.tzinfo
        first = datetime.combine(self.start.date(), opens, tz)
        window = (datetime.combine(self.start.date(), closes, tz) - first).total_seconds()
        days, into = divmod((self.start - first).total_seconds() + elapsed, window)
        return (first + timedelta(days=days, seconds=into)).astimezone(UTC)

    def spec(self) -> str:
        text = f"simulated start={self.start.isoformat()} at={self.at!r} speed={self.speed!r}"
        if self.hours is not None:
            text += f" hours={self.hours[0]:%H:%M}-{self.hours[1]:%H:%M}"
        return text


def parse(spec: str) -> Clock:
    """The clock a `PARK_CLOCK` value names (see the module doc)."""
    words = spec.split()
    if not words or words == ["real"]:
        return WallClock()
    if words[0] == "fixed" and len(words) == 2:
        try:
            return FixedClock(datetime.fromisoformat(words[1]))
        except ValueError:
            raise ClockError(f"{ENV}: fixed {words[1]!r} is not an ISO date and time") from None
    if words[0] != "simulated":
        raise ClockError(f'{ENV}: "real", "fixed TIME" or "simulated start=... at=... speed=..." expected, '
                         f"not {spec!r}")
    fields: dict[str, str] = {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or key not in ("start", "at", "speed", "hours") or key in fields:
            raise ClockError(f"{ENV}: unexpected {word!r} (start=, at=, speed= and hours= are known)")
        fields[key] = value
    missing = [k for k in ("start", "at", "speed") if k not in fields]
    if missing:
        raise ClockError(f"{ENV}: a simulated clock needs {', '.join(k + '=' for k in missing)}")
    try:
        start = datetime.fromisoformat(fields["start"])
    except ValueError:
        raise ClockError(f"{ENV}: start={fields['start']!r} is not an ISO date and time") from None
    try:
        at, speed = float(fields["at"]), float(fields["speed"])
    except ValueError:
        raise ClockError(f"{ENV}: at= and speed= are numbers") from None
    hours = None
    if "hours" in fields:
        opens, sep, closes = fields["hours"].partition("-")
        try:
            hours = (time_of_day.fromisoformat(opens), time_of_day.fromisoformat(closes)) if sep else None
        except ValueError:
            hours = None
        if hours is None:
            raise ClockError(f"{ENV}: hours={fields['hours']!r} is not HH:MM-HH:MM")
    return SimulatedClock(start, at, speed, hours)


_lock = threading.Lock()
_clock: Clock | None = None


def park_clock() -> Clock:
    """This process's clock: the one installed, else the one `PARK_CLOCK` names (read once)."""
    global _clock
    if _clock is None:
        with _lock:
            if _clock is None:
                _clock = parse(os.environ.get(ENV, ""))
    return _clock


def install(clock: Clock | None) -> None:
    """Use `clock` in this process from now on (None: read `PARK_CLOCK` again at the next use)."""
    global _clock
    with _lock:
        _clock = clock


def park_now() -> datetime:
    """The park's time now, aware, in UTC (the wall clock unless a simulated one is in effect)."""
    return park_clock().now()
