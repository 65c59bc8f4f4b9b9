"""What a manager sets is what a gate does: ticket types defined at the central (unlimited, single,
several entries, a group's headcount) reach a real gate agent in its config, and the gate admits a
ticket of each exactly as often as the type says."""

from __future__ import annotations

import pytest

from central.services.gates import build_gate_config, get_gate, register_gate
from central.services.tickets import IssueRequest, TicketTypeSpec, define_ticket_type, issue_ticket, ticket_code
from tests.gate_agent.conftest import gate_factory, probe, turnstile_factory  # noqa: F401  (fixtures)

pytestmark = pytest.mark.mosquitto


@pytest.fixture
def site(web_ctx):  # the gate fixtures' site is the central's
    return web_ctx.config.site


@pytest.fixture
def signer(web_ctx):  # tickets are the central's
    return web_ctx.signer


def test_unlimited_single_and_counted_entry_types_admit_as_defined(web_ctx, gate_factory):  # noqa: F811
    ctx = web_ctx
    site = ctx.config.site
    with ctx.sessions.begin() as db:
        define_ticket_type(db, site, TicketTypeSpec(name="Unlimited day pass", id=31, entries=None))
        define_ticket_type(db, site, TicketTypeSpec(name="Single entry", id=32, entries=1))
        define_ticket_type(db, site, TicketTypeSpec(name="Three entries", id=33, entries=3))
        register_gate(db, site, "g1", 1, hardware={"controller_profile": "tripod-coil", "passage_timeout_s": 1.0,
                                                   "repeat_scan_s": 0})
        db.flush()
        codes = {t: ticket_code(issue_ticket(db, site, IssueRequest(ticket_type=t)), ctx.signer) for t in (31, 32, 33)}
        config = build_gate_config(db, get_gate(db, site, "g1"))
    assert {r.id: r.entries for r in config.ticket_types if r.id in codes} == {31: None, 32: 1, 33: 3}
    agent, sim = gate_factory("g1", config=config)

    def admitted(code: str, times: int) -> list[bool]:
        out = []
        for _ in range(times):
            agent._recent.clear()  # the next visitor, not a repeated scan
            out.append(agent.present("qr", code).passed == 1)
        return out

    assert admitted(codes[31], 5) == [True] * 5
    assert admitted(codes[32], 2) == [True, False]
    assert admitted(codes[33], 4) == [True, True, True, False]
