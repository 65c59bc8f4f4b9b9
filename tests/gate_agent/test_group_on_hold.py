"""A suspended group customer's ticket at a gate: the store learns `held` from a delta, the gate refuses
the code with `customer_suspended` (and says so in the visitor's words), and admits it again once the
customer is resumed. Real SQLite store, the gate's own decider, no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gate_agent.decider import ActiveConfig, Attempt, Decider
from gate_agent.store import Store
from protocol import messages as m
from protocol.reasons import visitor_text
from tests.gate_agent.conftest import gate_config_for, ticket


def _change(ticket_id: int, status: str, at: datetime) -> m.TicketChange:
    return m.TicketChange(ticket_id=ticket_id, ticket_type=1, status=status, headcount=30,
                          valid_from=at - timedelta(hours=1), valid_to=at + timedelta(days=1))


def test_a_held_group_ticket_is_refused_with_the_reason_and_admitted_again_when_resumed(tmp_path, signer):
    store = Store(tmp_path / "gate.db")
    try:
        at = datetime.now(UTC)
        active = ActiveConfig(gate_config_for(signer, "s", "g"), b"")
        decider = Decider(store)
        code = ticket(signer, 42, headcount=30)
        # The delta as the central sends it (encoded and decoded: what travels over MQTT).
        held = m.decode(m.Delta, m.encode(m.Delta(site="s", seq=1, at=at, changes=[_change(42, "held", at)])))
        store.apply_delta(held)
        verdict = decider.decide(Attempt("qr", code), active, now=at, mode="normal").verdict
        assert not verdict.granted and verdict.reason == "customer_suspended"
        assert visitor_text(verdict.reason, "en") == "Group ticket on hold, please see staff"
        assert visitor_text(verdict.reason, "zh") == "团体票已暂停，请联系工作人员"
        store.apply_delta(m.Delta(site="s", seq=2, at=at, changes=[_change(42, "valid", at)]))
        verdict = decider.decide(Attempt("qr", code), active, now=at, mode="normal").verdict
        assert verdict.granted and verdict.passages == 30
    finally:
        store.close()
