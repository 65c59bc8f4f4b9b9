"""The visitor simulator: people walk through the simulated gates over a day's curve, so the dashboard moves.

The day is the park's, read from the one clock every process of the demo shares (`protocol.clock`:
a simulated clock, `speed` simulated minutes per real second, living 07:00-19:00 of each day): the
central sells for that day, the gates admit by it, and the visitors come by it. Parties arrive
as a Poisson process whose rate follows a morning peak, a midday plateau and a quiet late afternoon;
each stays a while in its zone and leaves by the zone's exit gate; day-pass and annual-pass holders
may come back. Annual-pass holders who enrolled a finger often come in by their finger alone (the
gate's fingerprint module matches it against the slots the gate agent filled from the central). About
one arrival in ten is refused, as at a real gate: a used ticket shown again, a ticket for another day,
an ID card with no booking, a stranger's face on someone's pass, a forged code, an unknown card, a
finger nobody enrolled. Some visitors are let in but walk away from the turnstile (the entry is kept).

The simulator only touches the devices (scanner, card readers, fingerprint module, camera, turnstile
behaviour): the gate agents decide; passages are counted where a real park counts them, at the
turnstile's sensor.

Days follow one another: from the opening the box office sells the next day's tickets and bookings (as
a park's online shop sells ahead), at 18:30 everybody still inside leaves, and at the next morning
yesterday's unused tickets become the "ticket for another day" that some visitors show by mistake, while
the annual-pass holders all come back.
"""

from __future__ import annotations

import heapq
import logging
import math
import queue
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from demo.gate_rig import DemoGate
from demo.people import fake_card_uid, fake_id_number, random_face, random_finger
from demo.seed import TIMEZONE, Carried, Park
from protocol.clock import park_now

log = logging.getLogger(__name__)
OPENS_MIN, CLOSES_MIN = 8 * 60, 18 * 60
ZONE_WEIGHTS = {1: 0.55, 2: 0.2, 3: 0.25}
REFUSAL_SHARE = 0.1
WALK_AWAY_SHARE = 0.02
FINGER_SHARE = 0.6  # of the arrivals of a holder with an enrolled finger: the finger instead of the card
PRESALE_MIN = OPENS_MIN  # from the opening the box office sells the next day's tickets (online, ahead)
SWEEP_MIN = CLOSES_MIN + 30  # everybody still inside leaves
TICKET_POOLS = ("single", "day", "group", "booking")


def day_curve(minute: float) -> float:
    """Relative arrival rate at `minute` after midnight: morning peak, midday plateau, quiet afternoon."""
    h = minute / 60
    if not OPENS_MIN <= minute < CLOSES_MIN:
        return 0.0
    return (math.exp(-((h - 10.0) ** 2) / (2 * 1.1 ** 2)) + 0.45 * math.exp(-((h - 13.5) ** 2) / (2 * 1.4 ** 2))
            + 0.08)


_CURVE_AREA = sum(day_curve(m) for m in range(OPENS_MIN, CLOSES_MIN))


@dataclass
class Stats:
    """What the simulator saw at the turnstiles (the central's own counts are the dashboard's)."""

    attempts: int = 0
    passages: int = 0
    refused: int = 0  # attempts after which nobody passed
    gave_up: int = 0  # arrivals that found a queue too long
    by_label: Counter = field(default_factory=Counter)
    passages_by_day: Counter = field(default_factory=Counter)  # the park's date -> turnstile passages
    refused_by_day: Counter = field(default_factory=Counter)
    fingers: Counter = field(default_factory=Counter)  # (label, passed) of the attempts made with a finger
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Visit:
    carried: Carried
    zone: int
    direction: str  # "in" / "out"
    face: bytes | None = None  # the face at the camera (a stranger's, for some refusals)
    finger: bytes | None = None  # laid on the fingerprint module instead of showing the credential
    walk_away: bool = False
    label: str = ""  # what the simulator expects: "arrival", "exit", or the refusal's name
    ok_expected: bool = True


class VisitorSimulator:
    """`start()` runs the clock and one worker per gate in threads; `stop()` ends them."""

    def __init__(self, park: Park, gates: list[DemoGate], *, speed: float, rng: random.Random,
                 refill=None) -> None:
        self.park = park
        self.gates = gates
        self.speed = speed
        self.rng = rng
        self.refill = refill  # refill(day) in a thread: the box office sells for that day (None: today)
        self.stats = Stats()
        self.tz = ZoneInfo(TIMEZONE)
        now = self._local()
        self.day = 1
        self.today = now.date()
        self.sim_minute = _minute(now)
        self.days_done: list[tuple[int, date, int, int]] = []  # (day number, date, passages, refused) of past days
        self._swept = False
        self._presale: date | None = None  # the day the box office last sold ahead for
        self._presold: tuple[date, dict[str, list[Carried]]] | None = None
        self._holders = list(park.pools.get("pass", []))  # every annual-pass holder, back each morning
        self._entries = {z: [g for g in gates if g.entry and g.spec.zone == z] for z in park.zones}
        self._exits = {z: [g for g in gates if not g.entry and g.spec.zone == z] for z in park.zones}
        self._zones = [z for z in park.zones if self._entries[z]]
        self._queues: dict[str, queue.Queue[_Visit]] = {g.name: queue.Queue() for g in gates}
        self._events: list[tuple[float, int, _Visit]] = []
        self._used: list[Carried] = []
        self._seq = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._refilling = False
        self._lock = threading.Lock()  # the event heap and the used tickets: the clock and gate workers share them
        self._parties_per_day = max(1, sum(len(p) for k, p in park.pools.items() if k != "wrong_day"))

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> VisitorSimulator:
        self._spawn("visitor-clock", self._clock)
        for gate in self.gates:
            self._spawn(f"visitors-{gate.name}", self._gate_worker, gate)
        return self

    def _spawn(self, name: str, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)

    @property
    def clock_text(self) -> str:
        minute = int(self.sim_minute)
        return f"{self.today.isoformat()} {minute // 60 % 24:02d}:{minute % 60:02d}, day {self.day}"

    def _local(self) -> datetime:
        return park_now().astimezone(self.tz)

    # -- the clock -----------------------------------------------------------------------------

    def _clock(self) -> None:
        last = self._local()
        while not self._stop.wait(0.05):
            now = self._local()
            if now.date() != self.today:
                self._new_day(now)
                last = now
            step = max(0.0, (now - last).total_seconds() / 60)  # simulated minutes since the last tick
            last = now
            start, self.sim_minute = self.sim_minute, _minute(now)
            rate = day_curve(start) / _CURVE_AREA * self._parties_per_day  # parties per simulated minute
            for _ in range(_poisson(self.rng, rate * step)):
                self._arrive()
            with self._lock:
                due = []
                while self._events and self._events[0][0] <= now.timestamp():
                    due.append(heapq.heappop(self._events)[2])
                if not self._swept and self.sim_minute >= SWEEP_MIN:
                    self._swept = True  # closing time: whoever is still inside leaves
                    due += [visit for _, _, visit in self._events if visit.direction == "out"]
                    self._events.clear()
                    self._send_queues_home()
            for visit in due:
                self._send(visit)
            self._box_office()

    def _new_day(self, now: datetime) -> None:
        """The park's date changed: yesterday's unused tickets are now for another day; today's presale opens."""
        with self._lock:
            self._events.clear()
        self._send_queues_home()
        with self.stats.lock:
            self.days_done.append((self.day, self.today, self.stats.passages_by_day[self.today],
                                   self.stats.refused_by_day[self.today]))
        self.day += 1
        self.today = now.date()
        self._swept = False
        pools = self.park.pools
        stale = [c for k in TICKET_POOLS[:3] for c in pools.get(k, []) if c.day != self.today]
        for key in TICKET_POOLS:
            pools[key] = [c for c in pools.get(key, []) if c.day == self.today]
        pools["wrong_day"] = ([c for c in pools.get("wrong_day", []) if c.day != self.today] + stale)[-200:]
        pools["pass"] = self.rng.sample(self._holders, len(self._holders))
        with self._lock:
            self._used = self._used[-200:]
        log.info("a new simulated day begins (day %d, %s)", self.day, self.today)

    def _send_queues_home(self) -> None:
        """Closing time: whoever still queues at an entry goes home (and does not show yesterday's ticket
        tomorrow morning); the exit queues go on."""
        gone = 0
        for gate in self.gates:
            if gate.entry:
                q = self._queues[gate.name]
                while True:
                    try:
                        q.get_nowait()
                    except queue.Empty:
                        break
                    gone += 1
        with self.stats.lock:
            self.stats.gave_up += gone

    def _box_office(self) -> None:
        """Sell the next day ahead from the opening; put what was sold ahead on sale when its day comes (a sale
        that finished too late for its day is dropped: its tickets are for another day now)."""
        presold = self._presold
        if presold is not None and presold[0] <= self.today:
            self._presold = None
            if presold[0] == self.today:
                for key, items in presold[1].items():
                    self.park.pools.setdefault(key, []).extend(items)
        tomorrow = self.today + timedelta(days=1)
        if self.sim_minute >= PRESALE_MIN and self._presale != tomorrow and not self._refilling:
            self._presale = tomorrow
            self._sell(tomorrow)

    def _later(self, minutes: float, visit: _Visit) -> None:
        with self._lock:
            self._seq += 1
            heapq.heappush(self._events, (park_now().timestamp() + minutes * 60, self._seq, visit))

    def _send(self, visit: _Visit) -> None:
        gates = (self._entries if visit.direction == "in" else self._exits).get(visit.zone) or []
        if not gates:
            return
        gate = min(gates, key=lambda g: self._queues[g.name].qsize())
        if visit.direction == "in" and self._queues[gate.name].qsize() > 20:
            with self.stats.lock:
                self.stats.gave_up += 1
            return
        self._queues[gate.name].put(visit)

    def _take(self, *pools: str) -> Carried | None:
        choices = [p for p in pools if self.park.pools.get(p)]
        if not choices:
            return None
        weights = [len(self.park.pools[p]) for p in choices]
        pool = self.park.pools[self.rng.choices(choices, weights=weights)[0]]
        if pool[-1].slot is None:
            return pool.pop()
        # A booked visitor comes in their slot (by the park's clock, which the gates go by).
        now = park_now()
        for i in range(len(pool) - 1, max(-1, len(pool) - 300), -1):
            slot = pool[i].slot
            if slot is not None and slot[0] <= now < slot[1]:
                return pool.pop(i)
        return None

    def _early_booking(self) -> Carried | None:
        now = park_now()
        later = [c for c in self.park.pools.get("booking", [])[-300:] if c.slot and c.slot[0] > now]
        return self.rng.choice(later) if later else None

    def _zone_for(self, carried: Carried) -> int:
        if carried.kind == "id_card" and 3 in self._zones:
            return 3  # real-name slots are for the Summit Temple
        zones = self._zones
        return self.rng.choices(zones, weights=[ZONE_WEIGHTS.get(z, 0.1) for z in zones])[0]

    def _arrive(self) -> None:
        if self.rng.random() < REFUSAL_SHARE:
            visit = self._refusal()
            if visit is not None:
                self._send(visit)
                return
        carried = self._take("single", "day", "group", "booking", "pass")
        if carried is None:
            if not any(self.park.pools.get(p) for p in ("single", "day", "group")):
                self._ask_refill()
            return
        walk_away = self.rng.random() < WALK_AWAY_SHARE
        self._send(_Visit(carried, self._zone_for(carried), "in", face=carried.face, finger=self._finger(carried),
                          walk_away=walk_away, label="arrival"))

    def _finger(self, carried: Carried) -> bytes | None:
        """The holder's finger if they come in by it this time (every entry gate has a module)."""
        return carried.finger if carried.finger is not None and self.rng.random() < FINGER_SHARE else None

    def _refusal(self) -> _Visit | None:
        zone = self.rng.choice(self._zones)
        kind = self.rng.choice(("used", "wrong_day", "no_booking", "stranger", "forged", "unknown_card", "early",
                                "unknown_finger"))
        if kind == "early" and (booked := self._early_booking()) is not None:
            return _Visit(booked, zone, "in", label="booking for a later slot", ok_expected=False)
        if kind == "used" and self._used:
            return _Visit(self.rng.choice(self._used), zone, "in", label="used ticket shown again",
                          ok_expected=False)
        if kind == "wrong_day" and self.park.pools.get("wrong_day"):
            return _Visit(self.park.pools["wrong_day"].pop(), zone, "in", label="ticket for another day",
                          ok_expected=False)
        if kind == "no_booking":
            return _Visit(Carried("id_card", fake_id_number(self.rng), name="游客"), zone, "in",
                          label="ID card without a booking", ok_expected=False)
        if kind == "stranger":
            holders = [c for c in self.park.pools.get("pass", []) if c.face is not None]
            if holders:
                return _Visit(self.rng.choice(holders), zone, "in", face=random_face(self.rng),
                              label="a stranger's face on a pass", ok_expected=False)
        if kind == "forged" and self._used:
            code = self.rng.choice(self._used).value
            i = self.rng.randrange(len(code) // 2, len(code))
            forged = code[:i] + ("A" if code[i] != "A" else "B") + code[i + 1:]
            return _Visit(Carried("qr", forged), zone, "in", label="forged code", ok_expected=False)
        if kind == "unknown_card":
            return _Visit(Carried("annual_pass", fake_card_uid(self.rng)), zone, "in", label="unknown card",
                          ok_expected=False)
        if kind == "unknown_finger":
            return _Visit(Carried("fingerprint", ""), zone, "in", finger=random_finger(self.rng),
                          label="unknown finger", ok_expected=False)
        return None

    def _ask_refill(self) -> None:
        if self.sim_minute < CLOSES_MIN - 30:  # nobody buys a ticket for a park about to close
            self._sell(None)

    def _sell(self, day: date | None) -> None:
        """The box office sells for `day` (None: today, on sale at once) in a thread of its own."""
        if self.refill is None or self._refilling:
            return
        self._refilling = True

        def run() -> None:
            try:
                pools = self.refill(day)
                if day is None or day == self.today:
                    for key, items in pools.items():
                        self.park.pools.setdefault(key, []).extend(items)
                else:
                    self._presold = (day, pools)
            except Exception:
                log.exception("selling more tickets failed")
            finally:
                self._refilling = False

        threading.Thread(target=run, name="box-office", daemon=True).start()

    # -- at the gate ---------------------------------------------------------------------------

    def _gate_worker(self, gate: DemoGate) -> None:
        q = self._queues[gate.name]
        seq = 0
        while not self._stop.is_set():
            try:
                visit = q.get(timeout=0.2)
            except queue.Empty:
                continue
            seq += 1
            try:
                passed = self._at_gate(gate, visit, seq)
            except Exception:
                log.exception("visitor at %s", gate.name)
                continue
            self._after(visit, passed)

    def _at_gate(self, gate: DemoGate, visit: _Visit, seq: int) -> int:
        carried = visit.carried
        sim = gate.turnstile
        counter = "entries" if visit.direction == "in" else "exits"
        with gate.lock:
            gate.clear_faces()
            sim.behaviour = "walk_away" if visit.walk_away else "pass"
            before = getattr(sim, counter)
            finger = visit.finger if gate.finger is not None else None
            by_finger = finger is not None
            if finger is not None:
                gate.touch_finger(finger)  # the finger alone: no card, no face
            else:
                if visit.direction == "in":
                    gate.show_face(visit.face, seq)
                gate.present(carried.kind, carried.value, carried.name)
            want = carried.headcount
            deadline = time.monotonic() + 1.2 + 0.5 * want
            passed = 0
            while not self._stop.is_set() and time.monotonic() < deadline:
                passed = getattr(sim, counter) - before
                if passed >= want:
                    break
                time.sleep(0.02)
            if not by_finger:
                gate.take_back(carried.kind)
            gate.clear_faces()
            sim.behaviour = "pass"
        with self.stats.lock:
            self.stats.attempts += 1
            self.stats.passages += max(0, passed)
            self.stats.passages_by_day[self.today] += max(0, passed)
            if passed <= 0:
                self.stats.refused += 1
                self.stats.refused_by_day[self.today] += 1
            self.stats.by_label[(visit.label, passed > 0)] += 1
            if by_finger:
                self.stats.fingers[(visit.label, passed > 0)] += 1
        return passed

    def _after(self, visit: _Visit, passed: int) -> None:
        carried = visit.carried
        if visit.direction == "in" and passed > 0 and visit.label == "arrival":
            if carried.label == "single":
                with self._lock:
                    self._used.append(carried)
            stay = self.rng.uniform(40, 200) if visit.zone == 1 else self.rng.uniform(25, 90)
            self._later(stay, _Visit(carried, visit.zone, "out", label="exit"))
        elif visit.direction == "out" and carried.reentry and self.rng.random() < 0.5 \
                and self.sim_minute < CLOSES_MIN - 60:
            zone = self._zone_for(carried)
            self._later(self.rng.uniform(15, 60), _Visit(carried, zone, "in", face=carried.face,
                                                         finger=self._finger(carried), label="arrival"))


def _minute(at: datetime) -> float:
    """Minutes after midnight of `at` (local)."""
    return at.hour * 60 + at.minute + at.second / 60


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method; the means here are small)."""
    if mean <= 0:
        return 0
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
