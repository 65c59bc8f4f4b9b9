"""The gate agent's collaborators on their own, each against real parts (a SQLite store, the Modbus
turnstile simulator over TCP) and no broker: what the agent composes."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest

from gate_agent.announcer import Announcer
from gate_agent.arm import Arm
from gate_agent.cache_sync import CacheSync
from gate_agent.config import TurnstileDevice
from gate_agent.decider import Attempt, Outcome, Resolved, ZoneTracker
from gate_agent.display import ConsoleDisplay
from gate_agent.passages import PENDING_PASSAGE, Passages
from gate_agent.store import Store
from gate_agent.turnstile import TurnstileUnavailable
from protocol import messages as m
from protocol import topics
from protocol.ids import new_event_id
from protocol.reasons import Reason
from protocol.rules import Credential, Verdict, refused

SITE, GATE = "s1", "g1"


def _device(sim) -> TurnstileDevice:
    host, port = sim.tcp_address
    return TurnstileDevice(tcp=f"{host}:{port}", timeout_s=0.3, retries=0)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "gate.db")
    yield s
    s.close()


# --- arm -----------------------------------------------------------------------------------------


def test_the_arm_drives_the_controller_in_the_gates_mode_and_counts_free_passages(turnstile_factory):
    sim = turnstile_factory()
    mode = ["normal"]
    arm = Arm(_device(sim), lambda: mode[0])
    arm.rebuild(m.HardwareParams(controller_profile="tripod-coil"))
    try:
        assert arm.pass_once("in", 2.0, "normal") and sim.counters == (1, 0)
        mode[0] = "free"
        arm.poll()  # the mode reaches the controller; counting starts from its counters now
        assert sim.mode == "free" and arm.counting_free
        for _ in range(3):
            sim.walk_through("in")
        assert arm.poll().passed == {"in": 3}
        assert arm.poll().passed == {}  # counted once
    finally:
        arm.close()


def test_an_exit_through_a_locked_arm_unlocks_it_for_that_turn_only(turnstile_factory):
    sim = turnstile_factory()
    arm = Arm(_device(sim), lambda: "locked")
    arm.rebuild(m.HardwareParams(controller_profile="tripod-coil"))
    try:
        arm.apply_mode()
        assert sim.mode == "locked"
        assert arm.pass_once("out", 2.0, "locked")
        assert sim.counters == (0, 1) and sim.mode == "locked"
    finally:
        arm.close()


def test_an_arm_without_a_usable_profile_is_a_fault_and_cannot_pass(turnstile_factory):
    sim = turnstile_factory()
    arm = Arm(_device(sim), lambda: "normal")
    arm.rebuild(m.HardwareParams())
    assert arm.poll().alarms_changed and arm.alarms == {"controller_profile_missing"}
    with pytest.raises(TurnstileUnavailable):
        arm.pass_once("in", 1.0, "normal")
    arm.rebuild(m.HardwareParams(controller_profile="no-such-model"))
    arm.poll()
    assert arm.alarms == {"controller_profile_unknown"}
    arm.rebuild(m.HardwareParams(controller_profile="tripod-coil"))
    assert arm.poll().alarms_changed and arm.alarms == frozenset()  # driven now: the fault clears
    sim.silent = True
    arm.poll()
    assert arm.alarms == {"controller_unreachable"}
    arm.close()


# --- passages ------------------------------------------------------------------------------------


def _outcome(ref: str = "T7") -> Outcome:
    credential = Credential(kind="qr", ref=ref, ticket_type=1, valid_from=datetime.now(UTC) - timedelta(hours=1),
                            valid_to=datetime.now(UTC) + timedelta(hours=1))
    return Outcome(Resolved("qr", ref, credential), Verdict(granted=True, reason=Reason.OK, reasons=(Reason.OK,)))


def test_every_event_the_gate_records_is_built_once_with_its_zone_and_goes_to_the_outbox(store):
    woken = []
    zones = ZoneTracker()
    passages = Passages(store, zones, SITE, GATE, zone=lambda: 2, connected=lambda: False,
                        wake=lambda: woken.append(1))
    event = passages.attempt(Attempt("qr", "code", "in", "test"), _outcome(), now=datetime.now(UTC), passed=True,
                             offline=False, mode="normal")
    assert (event.site, event.gate, event.zone, event.credential_ref, event.ticket_type) == (SITE, GATE, 2, "T7", 1)
    assert store.outbox_depth() == 1 and store.usage("T7")[0].entries == 1 and zones.state(2).inside == 1
    passages.free("out", 3, "emergency")  # the fire alarm: three people out through the open arm
    assert store.outbox_depth() == 4 and zones.state(2).inside == 0  # never below nobody
    refused_one = passages.attempt(Attempt("qr", "code", "in", "test"),
                                   Outcome(_outcome().resolved, refused(Reason.USED_UP)), now=datetime.now(UTC),
                                   passed=False, offline=True, mode="normal")
    assert (refused_one.decision, refused_one.reason, refused_one.offline) == ("refused", "used_up", True)
    assert len(woken) == 3  # once per recording call: the sender wakes


def test_a_passage_noted_as_the_arm_opened_is_recorded_once_from_the_controllers_counter(store, turnstile_factory):
    sim = turnstile_factory()
    arm = Arm(_device(sim), lambda: "normal")
    arm.rebuild(m.HardwareParams(controller_profile="tripod-coil"))
    passages = Passages(store, ZoneTracker(), SITE, GATE, zone=lambda: 1, connected=lambda: True, wake=lambda: None)
    try:
        passages.mark(_outcome("T9"), "in", "normal", None, before=arm.counters().get("in"))
        sim.walk_through("in")  # the visitor went through; the process "died" before recording it
        assert passages.recover(arm)
        assert store.meta(PENDING_PASSAGE) is None and store.usage("T9")[0].entries == 1
        assert passages.recover(arm) and store.outbox_depth() == 1  # once
        passages.mark(_outcome("T10"), "in", "normal", None, before=arm.counters().get("in"))
        assert passages.recover(arm) and store.usage("T10")[0].entries == 0  # walked away: nothing recorded
        passages.mark(_outcome("T11"), "in", "normal", None, before=arm.counters().get("in"))
        sim.silent = True
        assert not passages.recover(arm) and store.meta(PENDING_PASSAGE)  # the controller away: the note stays
    finally:
        arm.close()


# --- cache sync ----------------------------------------------------------------------------------


def _change(ticket_id: int, status: str = "valid") -> m.TicketChange:
    now = datetime.now(UTC)
    return m.TicketChange(ticket_id=ticket_id, ticket_type=1, status=status, valid_from=now - timedelta(hours=1),
                          valid_to=now + timedelta(hours=1))


def test_deltas_apply_in_sequence_and_a_gap_asks_for_a_snapshot_that_the_buffer_follows(store):
    sent: list[tuple[str, bytes]] = []
    applied: list = []
    snapshots: list = []
    sync = CacheSync(store, ZoneTracker(), SITE, GATE, publish=lambda t, p: sent.append((t, p)) or True,
                     after_changes=applied.extend, after_snapshot=lambda: snapshots.append(1))
    now = datetime.now(UTC)
    sync.on_delta(m.encode(m.Delta(site=SITE, seq=1, at=now, changes=[_change(1)])))
    assert store.seq == 1 and len(applied) == 1 and not sent
    sync.on_delta(m.encode(m.Delta(site=SITE, seq=3, at=now, changes=[_change(3)])))  # 2 is missing
    assert store.seq == 1 and sync.resyncing
    assert [topic for topic, _ in sent] == [topics.sync_request(SITE, GATE)]
    chunk = m.SnapshotChunk(site=SITE, gate=GATE, snapshot_id="x", index=0, last=True, seq=2,
                            changes=[_change(1), _change(2)])
    sync.on_sync(m.encode(chunk))
    assert not sync.resyncing and snapshots == [1]
    assert store.seq == 3  # the buffered delta 3 followed the snapshot at 2
    sync.on_delta(b"garbage")  # refused, nothing else happens
    assert store.seq == 3


def test_other_gates_passages_count_here_but_not_ones_dated_ahead_or_a_crowd_on_a_pass(store):
    zones = ZoneTracker()
    sync = CacheSync(store, zones, SITE, GATE, publish=lambda t, p: True, after_changes=lambda c: None,
                     after_snapshot=lambda: None)

    def event(**kw) -> bytes:
        values = dict(id=new_event_id(), site=SITE, gate="g2", zone=1, at=datetime.now(UTC), direction="in",
                      credential_kind="qr", credential_ref="T5", passed=True, mode="normal")
        values.update(kw)
        return m.encode(m.PassageEvent(**values))

    sync.on_site_event(topics.event(SITE, "g2"), event())
    assert store.usage("T5")[0].entries == 1 and zones.state(1).inside == 1
    sync.on_site_event(topics.event(SITE, "g2"), event(at=datetime.now(UTC) + timedelta(hours=3)))
    sync.on_site_event(topics.event(SITE, "g2"), event(credential_ref="P1", credential_kind="annual_pass",
                                                       headcount=40))
    sync.on_site_event(topics.event(SITE, GATE), event(gate=GATE))  # its own event: already counted
    assert store.usage("T5")[0].entries == 1 and zones.state(1).inside == 1


# --- announcer -----------------------------------------------------------------------------------


def test_the_visitor_is_told_in_the_sites_language_and_time():
    display = ConsoleDisplay(GATE, stream=io.StringIO())
    language = ["zh"]
    announcer = Announcer(display, lambda: language[0], lambda: "Asia/Shanghai")
    announcer.tell(Reason.TOO_EARLY, datetime(2026, 12, 1, 6, 0, tzinfo=UTC))  # 14:00 in Shanghai
    assert display.history[-1].text == "请于14:00后再来" and display.history[-1].colour == "amber"
    language[0] = "en"
    announcer.tell(Reason.OK, passages=3)
    assert display.history[-1].text == "Welcome ×3"
    announcer.tell_staff()
    assert (display.history[-1].reason, display.history[-1].colour) == ("controller_fault", "red")
