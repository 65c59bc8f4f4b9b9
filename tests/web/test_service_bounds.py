"""The services refuse what the API's edge refuses: the web pages and the CLI call them directly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from central.services import Invalid
from tests.web.conftest import login

WHEN = datetime(2031, 1, 1, tzinfo=UTC), datetime(2032, 1, 1, tzinfo=UTC)


def _refuses(code: str, call, *args, **kwargs) -> Invalid:
    with pytest.raises(Invalid) as refused:
        call(*args, **kwargs)
    assert refused.value.code == code, refused.value
    return refused.value


@pytest.mark.parametrize("price", ["1e400", "NaN", "Infinity", "-Infinity", "-1", "abc", "1.005", 1.5, True,
                                   "99999999999.00", "", "1" * 40])
def test_a_price_is_a_bounded_finite_decimal(price):
    from central.services.limits import money

    _refuses("bad_price", money, price)


def test_prices_in_bounds_are_kept_to_the_cent():
    from decimal import Decimal

    from central.services.limits import money

    assert money("80") == Decimal("80.00") and money(0) == Decimal("0.00")
    assert money(" 9999999999.99 ") == Decimal("9999999999.99") and money(Decimal("1E+2")) == Decimal("100.00")


def test_a_person_name_phone_and_id_digits_are_bounded(web_ctx):
    from central.services.passes import create_person

    site = web_ctx.config.site
    with web_ctx.sessions.begin() as db:
        _refuses("bad_name", create_person, db, site, "x" * 201)
        _refuses("bad_name", create_person, db, site, "Li\x00Lei")
        _refuses("bad_phone", create_person, db, site, "Li Lei", phone="1" * 33)
        _refuses("bad_phone", create_person, db, site, "Li Lei", phone="<script>")
        _refuses("bad_id_last4", create_person, db, site, "Li Lei", id_last4="12 34")
        person = create_person(db, site, "Li Lei", phone="+86 138 0000 0001", id_last4="11010519491231002x")
        assert person.id_last4 == "002X"


def test_a_sale_is_bounded(web_ctx):
    from central.services.tickets import IssueRequest, issue_ticket

    site = web_ctx.config.site
    with web_ctx.sessions.begin() as db:
        for code, request in [
            ("bad_headcount", IssueRequest(ticket_type=1, headcount=256)),
            ("bad_headcount", IssueRequest(ticket_type=1, headcount=0)),
            ("bad_name", IssueRequest(ticket_type=1, holder_name="x" * 201)),
            ("bad_channel_ref", IssueRequest(ticket_type=1, channel_ref="x" * 201)),
            ("bad_id_number", IssueRequest(ticket_type=1, id_number="1" * 33)),
            ("bad_id_number", IssueRequest(ticket_type=1, id_number="1101\x0005")),
            ("bad_price", IssueRequest(ticket_type=1, price="1e400")),
            ("bad_zone", IssueRequest(ticket_type=1, zones=[0])),
            ("bad_ticket_type", IssueRequest(ticket_type=2**40)),
        ]:
            _refuses(code, issue_ticket, db, site, request)


def test_ticket_type_rules_are_bounded(web_ctx):
    from central.services.tickets import TicketTypeSpec, define_ticket_type

    site = web_ctx.config.site
    with web_ctx.sessions.begin() as db:
        for code, spec in [
            ("bad_entries", TicketTypeSpec(name="T", entries=2**40)),
            ("bad_rules", TicketTypeSpec(name="T", min_gap_s=10**12)),
            ("bad_rules", TicketTypeSpec(name="T", validity_days=10**6)),
            ("bad_rules", TicketTypeSpec(name="T", same_person="yes")),
            ("bad_weekday", TicketTypeSpec(name="T", weekdays=[7])),
            ("bad_name", TicketTypeSpec(name="")),
            ("bad_price", TicketTypeSpec(name="T", price="NaN")),
        ]:
            _refuses(code, define_ticket_type, db, site, spec)


def test_passes_quotas_and_gates_are_bounded(web_ctx):
    from central.services.bookings import define_quota
    from central.services.gates import register_gate, update_gate
    from central.services.passes import create_pass, create_person

    site = web_ctx.config.site
    with web_ctx.sessions.begin() as db:
        person = create_person(db, site, "Li Lei")
        _refuses("bad_card_uid", create_pass, db, site, person_id=person.id, valid_from=WHEN[0], valid_to=WHEN[1],
                 card_uid="0" * 10_000)
        _refuses("bad_price", create_pass, db, site, person_id=person.id, valid_from=WHEN[0], valid_to=WHEN[1],
                 price="Infinity")
        _refuses("bad_capacity", define_quota, db, site, WHEN[0], datetime(2031, 1, 1, 1, tzinfo=UTC), 2**40)
        _refuses("bad_slot", define_quota, db, site, datetime(2020, 1, 1, tzinfo=UTC),
                 datetime(2020, 1, 1, 1, tzinfo=UTC), 5)
        # The gate's name becomes an MQTT topic level: a malformed one was a ValueError (a 500).
        _refuses("bad_gate_name", register_gate, db, site, "bad gate/+", 1)
        register_gate(db, site, "g1", 1)
        # An unknown hardware key was stored, then broke every GateConfig built for that gate.
        _refuses("bad_hardware", update_gate, db, site, "g1", hardware={"relay": 1})


def test_the_gate_config_of_a_gate_with_hardware_settings_still_builds(web_ctx):
    from central.services.gates import build_gate_config, get_gate, register_gate, update_gate

    site = web_ctx.config.site
    with web_ctx.sessions.begin() as db:
        register_gate(db, site, "g1", 1, hardware={"unit_id": 4})
        update_gate(db, site, "g1", hardware={"unit_id": 5, "passage_timeout_s": 7})
        config = build_gate_config(db, get_gate(db, site, "g1"))
    assert config.hardware.unit_id == 5 and config.hardware.passage_timeout_s == 7


def test_the_desk_refuses_a_phone_too_long_for_the_store_with_a_message(app, web_ctx):
    from sqlalchemy import func, select

    from central.models import Person

    staff = login(app, "staff")
    res = staff.post("/desk/persons", {"name": "Li Lei", "phone": "1" * 40}, follow_redirects=True)
    html = res.get_data(as_text=True)
    assert res.status_code == 422 and "“Phone” is too long: at most 32 characters" in html
    assert 'value="Li Lei"' in html  # the form keeps what was typed
    with web_ctx.sessions() as db:
        assert db.scalar(select(func.count(Person.id))) == 0
