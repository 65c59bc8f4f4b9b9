"""The demo's visitors book through the booking site's service before they come: parties with each
person's ID card, one booking per ID per day, places taken from the slots' quotas; what they carry to the
gate is their ID card in their slot."""

from __future__ import annotations

import random
from dataclasses import replace

from sqlalchemy import func, select

from central.context import CentralContext
from central.migrate import upgrade
from central.models import Booking, BookingPerson, SlotQuota
from demo.seed import SITE, seed_park
from tests.central.conftest import make_config


def test_the_demo_seeds_its_bookings_through_the_booking_site(tmp_path):
    # At the park's 10:00: after its closing (18:00 in Shanghai) the demo rightly books nobody for today.
    from datetime import datetime, time
    from zoneinfo import ZoneInfo

    from protocol import clock

    tz = ZoneInfo("Asia/Shanghai")
    clock.install(clock.FixedClock(datetime.combine(datetime.now(tz).date(), time(10), tz)))
    try:
        config = replace(make_config(f"sqlite:///{tmp_path / 'demo.db'}", tmp_path), site=SITE)
        upgrade(config.database_url)
        ctx = CentralContext.create(config, mqtt=False)
        try:
            park, _passwords = seed_park(ctx, visitors=200, gates=2, faces=False, rng=random.Random(7),
                                         progress=lambda text: None,
                                         gate_hardware={"controller_profile": "tripod-coil"})
            carried = park.pools["booking"]
            with ctx.sessions() as db:
                persons = db.scalar(select(func.count()).select_from(BookingPerson))
                parties = db.scalar(select(func.count()).select_from(Booking))
                booked = db.scalar(select(func.sum(SlotQuota.booked)))
                channels = set(db.scalars(select(Booking.channel)))
            assert len(carried) == persons == booked == 30  # 15 % of the day's visitors
            assert parties < persons  # families and friends book together
            assert channels == {"web"}
            assert all(c.kind == "id_card" and c.slot is not None for c in carried)
        finally:
            ctx.close()
    finally:
        clock.install(None)  # whatever failed above: the next test reads the real clock
