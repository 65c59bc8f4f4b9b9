"""Seed a believable park through the central's own services (no raw SQL): site, zones, gates, ticket
types, tickets across sales channels, time-slot bookings with ID numbers, annual-pass holders (some with
an enrolled fingerprint), travel agencies with contract prices and today's groups with their guides, an admin.

What a visitor carries (a QR code, an ID card, a pass card, a face, a finger) is returned as `Carried` for the
visitor simulator; the database keeps what production keeps (no codes, only ID-number digests).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from central.models import SlotQuota
from central.services import ServiceError, visitor_bookings
from central.services import gates as gate_service
from central.services import passes as pass_service
from central.services import tickets as ticket_service
from central.services.bookings import define_quota, quotas_for_day
from central.services.tickets import IssueRequest, TicketTypeSpec
from central.services.users import create_user
from demo.people import fake_card_uid, fake_id_number, fake_name, random_face, random_finger
from protocol.clock import park_now

SITE = "demo-park"
# `--parks N`: the head office's demo runs these parks in one central, each with its own gates and visitors.
PARKS = ((SITE, "Demo Scenic Park"), ("demo-north", "North Lake Park"), ("demo-west", "West Hills Park"))
TIMEZONE = "Asia/Shanghai"
OPENS_HOUR, CLOSES_HOUR = 8, 18  # the park's opening hours: booking slots are hourly within them
ZONES = ((1, "Main Gate Plaza", 3000, "plaza"), (2, "Cave Trail", 400, "cave"), (3, "Summit Temple", 800, "summit"))
SINGLE, DAY_PASS, GROUP, BOOKING = 1, 2, 3, 4  # the first park's ticket types; the next parks' are 11-14, 21-24


@dataclass(frozen=True)
class TicketTypes:
    single: int
    day_pass: int
    group: int
    booking: int


def ticket_types(site: str) -> TicketTypes:
    """The ticket type ids of a demo park (ids are unique across the central's parks)."""
    base = 10 * next((i for i, (s, _name) in enumerate(PARKS) if s == site), 0)
    return TicketTypes(base + SINGLE, base + DAY_PASS, base + GROUP, base + BOOKING)


def park_name(site: str) -> str:
    return dict(PARKS).get(site, site)
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
    day: date | None = None  # the visit date of a ticket or booking (None: an annual pass)


@dataclass
class Park:
    site: str
    zones: dict[int, tuple[str, int]]  # number -> (name, capacity)
    gates: list[GateSpec]
    admin_password: str = ""
    pools: dict[str, list[Carried]] = field(default_factory=dict)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The park's `day` from midnight to midnight, aware."""
    tz = ZoneInfo(TIMEZONE)
    start = datetime.combine(day, datetime.min.time(), tz)
    return start, start + timedelta(days=1)


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
              gate_hardware: dict, site: str = SITE, admin: bool = True) -> tuple[Park, dict[str, str]]:
    """Everything a demo park needs (and the head office's admin, with `admin`); returns the park and each
    gate's MQTT password."""
    park = Park(site, {n: (name, cap) for n, name, cap, _ in ZONES}, gate_layout(gates))
    types = ticket_types(site)
    passwords: dict[str, str] = {}
    with ctx.sessions.begin() as db:
        progress("site, zones, gates and ticket types")
        gate_service.ensure_site(db, site, name=park_name(site), timezone=TIMEZONE)
        gate_service.update_site(db, site, actor="demo", language="en",
                                 pass_biometric="face" if faces else "none")
        for number, name, capacity, _slug in ZONES:
            gate_service.ensure_zone(db, site, number, name=name, capacity=capacity)
        for spec in park.gates:
            _gate, creds = gate_service.register_gate(db, site, spec.name, spec.zone, direction=spec.direction,
                                                      hardware=gate_hardware, actor="demo")
            passwords[spec.name] = creds.password
        ticket_service.define_ticket_type(db, site, TicketTypeSpec(
            id=types.single, name="Single entry", entries=1, price="80"), actor="demo")
        ticket_service.define_ticket_type(db, site, TicketTypeSpec(
            id=types.day_pass, name="Day pass (re-entry, face bound)" if faces else "Day pass (re-entry)",
            entries=None, same_person=faces, anti_passback=True, min_gap_s=0, price="150"), actor="demo")
        ticket_service.define_ticket_type(db, site, TicketTypeSpec(
            id=types.group, name="Group ticket", entries=1, price="60", min_headcount=4, max_headcount=60),
            actor="demo")
        ticket_service.define_ticket_type(db, site, TicketTypeSpec(
            id=types.booking, name="Time-slot booking (real name)", entries=1, real_name=True, slot_grace_min=15,
            price="70"), actor="demo")
        if admin:
            password = secrets.token_urlsafe(12)
            create_user(db, "admin", "admin", password=password, actor="demo", one_time=True)
            park.admin_password = password
    park.pools = sell(ctx, visitors, faces=faces, rng=rng, progress=progress, wrong_day=True,
                      finger_share=FINGER_SHARE, site=site)
    progress("travel agencies, contracts and today's groups with their guides")
    park.pools["group"] += book_groups(ctx, rng, groups=max(3, visitors // 200), site=site)
    rng.shuffle(park.pools["group"])
    return park, passwords


# Group customers with their contract prices for the group ticket (the rack price is 60).
AGENCIES = (("Huangshan CITS", "agency", "45.00"), ("Anhui Spring Travel", "agency", "50.00"),
            ("Trip Cloud OTA", "ota", "52.00"), ("Hefei No. 1 Middle School", "school", "30.00"))
GUIDES = (("Wang Li", "13800000001"), ("Chen Jing", "13900000002"), ("Zhao Lei", "13700000003"),
          ("Sun Yan", "13600000004"))


def book_groups(ctx, rng: random.Random, *, groups: int, site: str = SITE) -> list[Carried]:
    """Agencies with contracts, and today's group orders: one group ticket each, brought by the guide."""
    from central.services import customers as customer_service

    today = park_now().astimezone(ZoneInfo(TIMEZONE)).date()
    carried: list[Carried] = []
    with ctx.sessions.begin() as db:
        ids = []
        for name, kind, price in AGENCIES:
            customer = customer_service.create_customer(db, site, customer_service.CustomerSpec(
                name=name, kind=kind, credit_limit="200000", payment_term_days=30), actor="demo")
            customer_service.add_contact(db, customer.id, fake_name(rng), phone="0559 5550100", duty="bookings",
                                         actor="demo")
            customer_service.set_contract_price(db, customer.id, ticket_types(site).group, price, today.replace(day=1),
                                                actor="demo")
            ids.append(customer.id)
        for i in range(groups):
            guide, phone = GUIDES[i % len(GUIDES)]
            result = customer_service.create_group_order(db, site, customer_service.GroupOrderRequest(
                customer_id=ids[i % len(ids)], ticket_type=ticket_types(site).group, visit_date=today,
                headcount=rng.randint(10, 40),
                guide_name=guide, guide_phone=phone, idempotency_key=f"demo-{site}-{today.isoformat()}-{i}"),
                actor="demo")
            for ticket in result.tickets:
                carried.append(Carried("qr", ticket_service.ticket_code(ticket, ctx.signer),
                                       headcount=ticket.headcount, name=guide, label="group", day=today))
    return carried


def sell(ctx, visitors: int, *, faces: bool, rng: random.Random, progress: Progress,
         wrong_day: bool = False, finger_share: float = 0.0, day: date | None = None,
         passes: bool = True, site: str = SITE) -> dict[str, list[Carried]]:
    """Tickets, bookings and passes for about `visitors` people of `day` (the park's today by its clock,
    `protocol.clock`); what they carry, by kind. `finger_share` of the new annual-pass holders (at most
    MAX_FINGERS) enrol a fingerprint."""
    tz = ZoneInfo(TIMEZONE)
    now = park_now().astimezone(tz)
    today = day or now.date()
    types = ticket_types(site)
    pools: dict[str, list[Carried]] = {"single": [], "day": [], "group": [], "booking": [], "pass": [],
                                       "wrong_day": []}
    n_single = int(visitors * 0.55)
    n_day = int(visitors * 0.12)
    n_group_people = int(visitors * 0.10)
    n_booking = int(visitors * 0.15)
    n_pass = max(20, int(visitors * 0.03)) if passes else 0  # annual passes are sold once, at the start
    n_wrong = max(10, int(visitors * 0.02)) if wrong_day else 0
    n_finger = min(MAX_FINGERS, int(n_pass * finger_share))

    requests: list[tuple[str, IssueRequest, Carried]] = []
    for _ in range(n_single):
        requests.append(("single", IssueRequest(ticket_type=types.single, visit_date=today, channel=_channel(rng)),
                         Carried("qr", "", label="single", day=today)))
    for _ in range(n_day):
        requests.append(("day", IssueRequest(ticket_type=types.day_pass, visit_date=today,
                                             channel=rng.choice(("web", "ota"))),
                         Carried("qr", "", reentry=True, face=random_face(rng) if faces else None, label="day pass",
                                 day=today)))
    people = 0
    while people < n_group_people:
        size = rng.randint(4, 12)
        people += size
        requests.append(("group", IssueRequest(ticket_type=types.group, headcount=size, visit_date=today,
                                               channel=rng.choice(("agency", "group")),
                                               channel_ref=f"TA-{rng.randrange(10**6):06d}"),
                         Carried("qr", "", headcount=size, label="group", day=today)))
    for i in range(n_wrong):
        other = today - timedelta(days=1) if i % 2 else today + timedelta(days=1)
        requests.append(("wrong_day", IssueRequest(ticket_type=types.single, visit_date=other, channel=_channel(rng),
                                                   allow_past=other < now.date()),
                         Carried("qr", "", label="wrong day", day=other)))
    rng.shuffle(requests)
    done = 0
    for first in range(0, len(requests), 500):
        chunk = requests[first:first + 500]
        with ctx.sessions.begin() as db:
            tickets = ticket_service.issue_tickets(db, site, [r for _, r, _ in chunk], actor="demo")
            for (kind, _req, carried), ticket in zip(chunk, tickets, strict=True):
                carried.value = ticket_service.ticket_code(ticket, ctx.signer)
                pools[kind].append(carried)
        done += len(chunk)
        progress(f"tickets {done}/{len(requests)}")

    # Real-name bookings: hourly slots of the day's opening hours still to come (all of them for a later
    # day); each sale adds its bookings to what the slots already hold, so a second sale in a day fits.
    first = now.hour if today == now.date() else 0
    slots = [(datetime(today.year, today.month, today.day, h, tzinfo=tz),
              datetime(today.year, today.month, today.day, h, tzinfo=tz) + timedelta(hours=1))
             for h in range(max(first, OPENS_HOUR), CLOSES_HOUR)]
    if not slots:
        n_booking = 0  # the park is closing: nobody books for today any more
    with ctx.sessions.begin() as db:
        held = {q.slot_start: q.booked for q in quotas_for_day(db, site, *day_bounds(today))}
        for start, end in slots:
            define_quota(db, site, start, end, held.get(start, 0) + max(50, n_booking // 2 + 10))
        # The public booking site's rules: booking stays open until a slot ends (the demo books its slots
        # under way), parties of up to 5.
        visitor_bookings.update_settings(db, site, "demo", ticket_type_id=types.booking, days_ahead=7, party_max=5,
                                         cancel_before_min=30, close_before_min=-60, retention_days=30,
                                         face_entry=False)
        quota_ids = {q.slot_start: q.id for q in db.scalars(select(SlotQuota).where(SlotQuota.site_id == site))}
    # Visitors book before they come, as on /book/: a party of 1 to 4, each person's name and ID card, a phone.
    booked = 0
    i = 0
    while booked < n_booking and i < n_booking * 2:
        # Forty parties a transaction, each in a savepoint of its own: the next day's sale must be done
        # within a simulated day even on a loaded machine.
        with ctx.sessions.begin() as db:
            for _ in range(40):
                if booked >= n_booking or i >= n_booking * 2:
                    break
                # A third booked for the slots now under way, the rest spread over the day's later slots.
                start, end = slots[i % min(2, len(slots))] if booked < n_booking // 3 else rng.choice(slots)
                party = [(fake_id_number(rng), fake_name(rng)) for _ in range(min(rng.choice((1, 1, 2, 2, 3, 4)),
                                                                                  n_booking - booked))]
                request = visitor_bookings.BookingRequest(
                    quota_id=quota_ids[start],
                    persons=[visitor_bookings.PartyMember(n, "id_card", num) for num, n in party],
                    phone=f"13{rng.randrange(10**9):09d}", consent=True, language=rng.choice(("zh", "en")),
                    client_address=f"198.51.100.{rng.randrange(1, 255)}")
                i += 1
                try:
                    with db.begin_nested():
                        visitor_bookings.make_booking(db, site, request)
                except ServiceError:  # the same made-up ID twice in a day, or a full slot: this party books nothing
                    continue
                for number, name in party:
                    pools["booking"].append(Carried("id_card", number, name=name, slot=(start, end),
                                                    label="booking", day=today))
                booked += len(party)
        progress(f"bookings {booked}/{n_booking}")

    valid_from = datetime.combine(today - timedelta(days=30), datetime.min.time(), tz)
    valid_to = datetime.combine(today + timedelta(days=366), datetime.min.time(), tz)
    for i in range(n_pass):
        name = fake_name(rng)
        with ctx.sessions.begin() as db:
            person = pass_service.create_person(db, site, name, actor="demo")
            uid = fake_card_uid(rng)
            pass_service.create_pass(db, site, person_id=person.id, valid_from=valid_from, valid_to=valid_to,
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
