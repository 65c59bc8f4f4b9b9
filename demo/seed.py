"""Seed a believable park through the central's own services (no raw SQL): site, zones, gates, ticket
types, tickets across sales channels, time-slot bookings with ID numbers, annual-pass holders (some with
an enrolled fingerprint), an admin.

What a visitor carries (a QR code, an ID card, a pass card, a face, a finger) is returned as `Carried` for the
visitor simulator; the database keeps what production keeps (no codes, only ID-number digests).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from central.models import SlotQuota
from central.services import ServiceError, visitor_bookings
from central.services import gates as gate_service
from central.services import passes as pass_service
from central.services import tickets as ticket_service
from central.services.bookings import define_quota
from central.services.tickets import IssueRequest, TicketTypeSpec
from central.services.users import create_user
from demo.people import fake_card_uid, fake_id_number, fake_name, random_face, random_finger

SITE = "demo-park"
TIMEZONE = "Asia/Shanghai"
ZONES = ((1, "Main Gate Plaza", 3000, "plaza"), (2, "Cave Trail", 400, "cave"), (3, "Summit Temple", 800, "summit"))
SINGLE, DAY_PASS, GROUP, BOOKING = 1, 2, 3, 4
CHANNELS = (("box_office", 35), ("web", 30), ("ota", 25), ("agency", 10))
FINGER_SHARE = 0.4  # annual-pass holders of the first seeding who enrol a finger
MAX_FINGERS = 120  # of them at most: every entry gate's module (300 slots) holds all of the site's fingers
Progress = Callable[[str], None]


@dataclass(frozen=True)
class GateSpec:
    name: str
    zone: int
    direction: str  # "in", "out" or "both"


@dataclass
class Carried:
    """What one visitor (or one group leader) brings to the gate."""

    kind: str  # "qr", "id_card", "annual_pass"
    value: str  # the QR text, the ID number, the card UID
    headcount: int = 1
    reentry: bool = False  # a day pass: may leave and come back
    face: bytes | None = None  # the visitor's face (a template: see people.random_face)
    finger: bytes | None = None  # an enrolled finger (a module template: see people.random_finger)
    name: str = ""
    slot: tuple[datetime, datetime] | None = None
    label: str = ""  # single, day pass, group, booking, annual pass, wrong day


@dataclass
class Park:
    site: str
    zones: dict[int, tuple[str, int]]  # number -> (name, capacity)
    gates: list[GateSpec]
    admin_password: str = ""
    pools: dict[str, list[Carried]] = field(default_factory=dict)


def gate_layout(count: int) -> list[GateSpec]:
    """An entry and an exit gate per zone in turn; an odd gate left over is another entry to the plaza."""
    specs: list[GateSpec] = []
    seen: dict[tuple[int, str], int] = {}
    for i in range(count):
        number, _name, _cap, slug = ZONES[(i // 2) % len(ZONES)]
        direction = "in" if i % 2 == 0 else "out"
        if i == count - 1 and direction == "in":
            number, slug = ZONES[0][0], ZONES[0][3]
        key = (number, direction)
        seen[key] = seen.get(key, 0) + 1
        specs.append(GateSpec(f"{slug}-{direction}-{seen[key]}", number, direction))
    return specs


def _channel(rng: random.Random) -> str:
    return rng.choices([c for c, _ in CHANNELS], weights=[w for _, w in CHANNELS])[0]


def seed_park(ctx, *, visitors: int, gates: int, faces: bool, rng: random.Random, progress: Progress,
              gate_hardware: dict) -> tuple[Park, dict[str, str]]:
    """Everything the demo park needs; returns the park and each gate's MQTT password."""
    park = Park(SITE, {n: (name, cap) for n, name, cap, _ in ZONES}, gate_layout(gates))
    passwords: dict[str, str] = {}
    with ctx.sessions.begin() as db:
        progress("site, zones, gates and ticket types")
        gate_service.ensure_site(db, SITE, name="Demo Scenic Park", timezone=TIMEZONE)
        gate_service.update_site(db, SITE, actor="demo", language="en",
                                 pass_biometric="face" if faces else "none")
        for number, name, capacity, _slug in ZONES:
            gate_service.ensure_zone(db, SITE, number, name=name, capacity=capacity)
        for spec in park.gates:
            _gate, creds = gate_service.register_gate(db, SITE, spec.name, spec.zone, direction=spec.direction,
                                                      hardware=gate_hardware, actor="demo")
            passwords[spec.name] = creds.password
        ticket_service.define_ticket_type(db, SITE, TicketTypeSpec(
            id=SINGLE, name="Single entry", entries=1, price="80"), actor="demo")
        ticket_service.define_ticket_type(db, SITE, TicketTypeSpec(
            id=DAY_PASS, name="Day pass (re-entry, face bound)" if faces else "Day pass (re-entry)", entries=None,
            same_person=faces, anti_passback=True, min_gap_s=0, price="150"), actor="demo")
        ticket_service.define_ticket_type(db, SITE, TicketTypeSpec(
            id=GROUP, name="Group ticket", entries=1, price="60"), actor="demo")
        ticket_service.define_ticket_type(db, SITE, TicketTypeSpec(
            id=BOOKING, name="Time-slot booking (real name)", entries=1, real_name=True, slot_grace_min=15,
            price="70"), actor="demo")
        password = secrets.token_urlsafe(12)
        create_user(db, "admin", "admin", password=password, actor="demo", one_time=True)
        park.admin_password = password
    park.pools = sell(ctx, visitors, faces=faces, rng=rng, progress=progress, wrong_day=True,
                      finger_share=FINGER_SHARE)
    return park, passwords


def sell(ctx, visitors: int, *, faces: bool, rng: random.Random, progress: Progress,
         wrong_day: bool = False, finger_share: float = 0.0) -> dict[str, list[Carried]]:
    """Tickets, bookings and passes for about `visitors` people of today; what they carry, by kind.
    `finger_share` of the new annual-pass holders (at most MAX_FINGERS) enrol a fingerprint."""
    tz = ZoneInfo(TIMEZONE)
    today = datetime.now(tz).date()
    pools: dict[str, list[Carried]] = {"single": [], "day": [], "group": [], "booking": [], "pass": [],
                                       "wrong_day": []}
    n_single = int(visitors * 0.55)
    n_day = int(visitors * 0.12)
    n_group_people = int(visitors * 0.10)
    n_booking = int(visitors * 0.15)
    n_pass = max(20, int(visitors * 0.03))
    n_wrong = max(10, int(visitors * 0.02)) if wrong_day else 0
    n_finger = min(MAX_FINGERS, int(n_pass * finger_share))

    requests: list[tuple[str, IssueRequest, Carried]] = []
    for _ in range(n_single):
        requests.append(("single", IssueRequest(ticket_type=SINGLE, channel=_channel(rng)), Carried(
            "qr", "", label="single")))
    for _ in range(n_day):
        requests.append(("day", IssueRequest(ticket_type=DAY_PASS, channel=rng.choice(("web", "ota"))), Carried(
            "qr", "", reentry=True, face=random_face(rng) if faces else None, label="day pass")))
    people = 0
    while people < n_group_people:
        size = rng.randint(4, 12)
        people += size
        requests.append(("group", IssueRequest(ticket_type=GROUP, headcount=size, channel=rng.choice(
            ("agency", "group")), channel_ref=f"TA-{rng.randrange(10**6):06d}"), Carried(
            "qr", "", headcount=size, label="group")))
    for i in range(n_wrong):
        day = today - timedelta(days=1) if i % 2 else today + timedelta(days=1)
        # Yesterday's ticket is a past-date sale: made on purpose here (the visitor who comes a day late).
        requests.append(("wrong_day", IssueRequest(ticket_type=SINGLE, visit_date=day, channel=_channel(rng),
                                                   allow_past=day < today),
                         Carried("qr", "", label="wrong day")))
    rng.shuffle(requests)
    done = 0
    for start in range(0, len(requests), 500):
        chunk = requests[start:start + 500]
        with ctx.sessions.begin() as db:
            tickets = ticket_service.issue_tickets(db, SITE, [r for _, r, _ in chunk], actor="demo")
            for (pool, _req, carried), ticket in zip(chunk, tickets, strict=True):
                carried.value = ticket_service.ticket_code(ticket, ctx.signer)
                pools[pool].append(carried)
        done += len(chunk)
        progress(f"tickets {done}/{len(requests)}")

    # Real-name bookings: hourly slots of today; visitors booked from this hour to the end of the day.
    now = datetime.now(tz)
    slots = [(datetime(today.year, today.month, today.day, h, tzinfo=tz),
              datetime(today.year, today.month, today.day, h, tzinfo=tz) + timedelta(hours=1))
             for h in range(now.hour, 24)]
    with ctx.sessions.begin() as db:
        for start, end in slots:
            define_quota(db, SITE, start, end, max(50, n_booking // 2 + 10))
        # The public booking site's rules: booking stays open until a slot ends (the demo books its slots
        # under way), parties of up to 5.
        visitor_bookings.update_settings(db, SITE, "demo", ticket_type_id=BOOKING, days_ahead=7, party_max=5,
                                         cancel_before_min=30, close_before_min=-60, retention_days=30,
                                         face_entry=False)
        quota_ids = {q.slot_start: q.id for q in db.scalars(select(SlotQuota).where(SlotQuota.site_id == SITE))}
    # Visitors book before they come, as on /book/: a party of 1 to 4, each person's name and ID card, a phone.
    booked = 0
    i = 0
    while booked < n_booking and i < n_booking * 2:
        # A third booked for the slots now under way, the rest spread over the day's later slots.
        start, end = slots[i % min(2, len(slots))] if booked < n_booking // 3 else rng.choice(slots)
        party = [(fake_id_number(rng), fake_name(rng)) for _ in range(min(rng.choice((1, 1, 2, 2, 3, 4)),
                                                                          n_booking - booked))]
        request = visitor_bookings.BookingRequest(
            quota_id=quota_ids[start], persons=[visitor_bookings.PartyMember(n, "id_card", num) for num, n in party],
            phone=f"13{rng.randrange(10**9):09d}", consent=True, language=rng.choice(("zh", "en")),
            client_address=f"198.51.100.{rng.randrange(1, 255)}")
        i += 1
        try:
            with ctx.sessions.begin() as db:
                visitor_bookings.make_booking(db, SITE, request)
        except ServiceError:  # the same made-up ID twice in a day, or a full slot: this party books nothing
            continue
        for number, name in party:
            pools["booking"].append(Carried("id_card", number, name=name, slot=(start, end), label="booking"))
        booked += len(party)
        if booked % 100 < len(party) or booked >= n_booking:
            progress(f"bookings {booked}/{n_booking}")

    valid_from = datetime(today.year, 1, 1, tzinfo=tz)
    valid_to = datetime(today.year + 1, 1, 1, tzinfo=tz)
    for i in range(n_pass):
        name = fake_name(rng)
        with ctx.sessions.begin() as db:
            person = pass_service.create_person(db, SITE, name, actor="demo")
            uid = fake_card_uid(rng)
            pass_service.create_pass(db, SITE, person_id=person.id, valid_from=valid_from, valid_to=valid_to,
                                     card_uid=uid, channel="box_office", price="300", actor="demo")
            face = random_face(rng) if faces else None
            if face is not None:
                pass_service.bind_template(db, ctx.cipher, person.id, "face", face, actor="demo")
            finger = random_finger(rng) if i < n_finger else None
            if finger is not None:  # the right index finger (ISO/IEC 19794 finger 2), as the enrolment desk sends it
                pass_service.bind_template(db, ctx.cipher, person.id, "fingerprint", finger, finger=2, actor="demo")
        pools["pass"].append(Carried("annual_pass", uid, reentry=True, face=face, finger=finger, name=name,
                                     label="annual pass"))
        if (i + 1) % 25 == 0 or i + 1 == n_pass:
            progress(f"annual-pass holders {i + 1}/{n_pass}")
    for pool in pools.values():
        rng.shuffle(pool)
    return pools
