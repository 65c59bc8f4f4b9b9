"""The demo's park has travel agencies with contracts, and today's groups arrive with their guides."""

from __future__ import annotations

import random
from decimal import Decimal

from sqlalchemy import func, select

from central.models import Customer, GroupOrder, Ticket
from demo.seed import SITE, seed_park
from tests.central.conftest import make_config, prepare


def test_the_demo_seeds_agencies_with_contracts_and_groups_with_guides(db_url, tmp_path):
    ctx = prepare(make_config(db_url, tmp_path), mqtt_on=False)
    try:
        park, _passwords = seed_park(ctx, visitors=60, gates=2, faces=False, rng=random.Random(7),
                                     progress=lambda _text: None, gate_hardware={})
        with ctx.sessions() as db:
            assert db.scalar(select(func.count()).select_from(Customer).where(Customer.site_id == SITE)) == 4
            orders = db.scalars(select(GroupOrder).where(GroupOrder.site_id == SITE)).all()
            assert len(orders) >= 3 and all(o.guide_name and o.guide_phone for o in orders)
            assert all(o.unit_price < Decimal("60") for o in orders)  # contract prices below the rack price
            billed = db.scalar(select(func.count()).select_from(Ticket).where(Ticket.customer_id.is_not(None)))
            assert billed == len(orders)  # one group ticket each
        guided = [c for c in park.pools["group"] if c.name]
        assert len(guided) == len(orders) and all(c.value and c.headcount >= 10 for c in guided)
    finally:
        ctx.close()
