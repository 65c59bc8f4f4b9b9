"""A manager blocks a touted ID number: its booking's ticket is revoked in the gates' delta, and a real
gate agent (real Mosquitto) refuses that ID card with its reason while the rest of the party enters."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from central.models import BookingPerson, Ticket
from central.services import visitor_bookings as vb
from central.services.gates import build_gate_config, get_gate, register_gate
from central.services.sync import ticket_change
from central.services.tickets import TicketTypeSpec, define_ticket_type
from tests.gate_agent.conftest import gate_factory, probe, turnstile_factory  # noqa: F401  (fixtures)

pytestmark = pytest.mark.mosquitto
TZ = ZoneInfo("Asia/Shanghai")
ZHANG, LI = "11010519491231002X", "110105198001010032"


@pytest.fixture
def site(web_ctx):
    return web_ctx.config.site


@pytest.fixture
def signer(web_ctx):
    return web_ctx.signer


def test_a_blocked_document_is_refused_at_the_gate_and_the_rest_of_the_party_enters(web_ctx, gate_factory, probe):  # noqa: F811
    site = web_ctx.config.site
    today = datetime.now(TZ).date()
    with web_ctx.sessions.begin() as db:
        define_ticket_type(db, site, TicketTypeSpec(name="Booked visit", id=7, real_name=True))
        vb.update_settings(db, site, "manager", ticket_type_id=7, days_ahead=7, party_max=5, cancel_before_min=0,
                           close_before_min=0, retention_days=30, face_entry=False)
        quota = vb.set_slot(db, site, "manager", day=today, start=time(0), end=time(23, 59), capacity=10,
                            closes_at=datetime.combine(today, time(23, 59), tzinfo=TZ))
        register_gate(db, site, "g1", 1, hardware={"controller_profile": "tripod-coil", "passage_timeout_s": 1.0,
                                                   "repeat_scan_s": 0})
        vb.make_booking(db, site, vb.BookingRequest(
            quota_id=quota.id, persons=[vb.PartyMember("Zhang San", "id_card", ZHANG),
                                        vb.PartyMember("Li Si", "id_card", LI)], phone="13800138000", consent=True))
    with web_ctx.sessions.begin() as db:
        vb.block(db, site, "manager", kind="document", value=ZHANG, reason="resold tickets")
    with web_ctx.sessions() as db:
        tickets = list(db.scalars(select(Ticket).join(BookingPerson, BookingPerson.ticket_id == Ticket.id)))
        assert sorted(t.status for t in tickets) == ["revoked", "valid"]
        probe.snapshot += [ticket_change(t) for t in tickets]
        config = build_gate_config(db, get_gate(db, site, "g1"))
    agent, _sim = gate_factory("g1", config=config)
    probe.wait(lambda: agent.store.meta("snapshot_id"))
    refused = agent.present("id_card", ZHANG)
    assert refused.passed == 0 and refused.reason == "revoked"
    assert agent.present("id_card", LI).passed == 1
