"""Ingest against a real Mosquitto and a real store: several gates publish at once, with duplicates,
malformed messages and two offline gates admitting the same single-entry ticket."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from central.bus.ingest_worker import IngestWorker
from central.models import (
    Conflict,
    CredentialUsage,
    DenialCount,
    ParkedMessage,
    PassageEventRecord,
    Ticket,
    Zone,
    utcnow,
)
from central.services.tickets import IssueRequest, TicketTypeSpec, define_ticket_type, issue_tickets, refund_ticket
from protocol import topics
from protocol.ids import new_event_id
from protocol.messages import Occupancy, PassageEvent, decode, encode
from tests.central.conftest import add_gates, make_config, prepare

ENTRY_GATES = ("east1", "east2", "west1", "west2")
EXIT_GATE = "exit1"


class GatePublisher:
    """One simulated gate: its own MQTT connection, QoS 1, waits for every PUBACK."""

    def __init__(self, broker, site: str, gate: str) -> None:
        self.site, self.gate = site, gate
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"gate-{gate}-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(100)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish_all(self, payloads: list[bytes]) -> None:
        infos = [self.client.publish(topics.event(self.site, self.gate), p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(30)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _event(site, gate, zone, at, direction="in", ref="", **kw) -> PassageEvent:
    return PassageEvent(id=new_event_id(), site=site, gate=gate, zone=zone, at=at, direction=direction,
                        credential_kind=kw.pop("kind", "qr"), credential_ref=ref, **kw)


def _valid_id(payload: bytes, gate: str) -> str | None:
    try:
        event = decode(PassageEvent, payload)
    except ValueError:
        return None
    return event.id if event.gate == gate else None


def _run_parallel(jobs):
    threads = [threading.Thread(target=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)


@pytest.mark.slow
@pytest.mark.mosquitto
def test_thousands_of_events_from_several_gates_give_exact_counts_events_and_conflicts(
        any_db_url, tmp_path, mosquitto, listen):
    config = make_config(any_db_url, tmp_path, mosquitto)
    ctx = prepare(config, mqtt_on=True)
    site = config.site
    add_gates(ctx, site, *ENTRY_GATES, EXIT_GATE)
    per_gate = 600
    now = utcnow()
    with ctx.sessions.begin() as db:
        single = define_ticket_type(db, site, TicketTypeSpec(name="Single", entries=1))
        # valid around now, not for the park's calendar day: the events go back minutes, past the park's midnight
        # when the run is just after it (16:00 UTC)
        around_now = IssueRequest(ticket_type=single.id, valid_from=now - timedelta(hours=2),
                                  valid_to=now + timedelta(hours=22))
        tickets = issue_tickets(db, site, [around_now] * (per_gate * len(ENTRY_GATES) + 2))
        ticket_ids = [t.id for t in tickets]
    shared_ticket, refunded_ticket = ticket_ids[-2], ticket_ids[-1]
    with ctx.sessions.begin() as db:
        refund_ticket(db, refunded_ticket, actor="test")

    worker = IngestWorker(config, ctx.sessions, worker_id=uuid.uuid4().hex[:6], cipher=ctx.cipher).start()
    occupancy_listener = listen(topics.occupancy(site))
    try:
        # Phase 1: every entry gate admits its tickets, refuses some codes, and sees walk-aways;
        # 10% of messages are sent twice (a gate retrying after a lost PUBACK); some are malformed.
        per_gate_payloads: dict[str, list[bytes]] = {}
        expected_refusals: Counter = Counter()
        malformed = 0
        for g_index, gate in enumerate(ENTRY_GATES):
            payloads: list[bytes] = []
            mine = ticket_ids[g_index * per_gate:(g_index + 1) * per_gate]
            for i, ticket_id in enumerate(mine):
                at = now - timedelta(seconds=per_gate - i)
                payloads.append(encode(_event(site, gate, 1, at, ref=f"T{ticket_id}", passed=True,
                                              ticket_type=single.id)))
                if i % 5 == 0:
                    reason = "not_a_code" if i % 2 else "used_up"
                    payloads.append(encode(_event(site, gate, 1, at, decision="refused", reason=reason)))
                    expected_refusals[reason] += 1
                if i % 7 == 0:  # granted, but the visitor never walked through: no count
                    payloads.append(encode(_event(site, gate, 1, at, ref=f"T{ticket_id}", passed=False)))
                if i % 10 == 0:
                    payloads.append(payloads[-1])  # a retry: same event id
                if i % 150 == 0:
                    payloads.append(b"{not json")
                    payloads.append(b'{"v":1,"id":"12345678","site":"' + site.encode() + b'","headcount":-1}')
                    malformed += 2
            per_gate_payloads[gate] = payloads
        # Two offline gates admit the same single-entry ticket; a refunded ticket is admitted offline.
        per_gate_payloads["east1"].append(encode(_event(site, "east1", 1, now - timedelta(seconds=5),
                                                        ref=f"T{shared_ticket}", passed=True, offline=True)))
        per_gate_payloads["west2"].append(encode(_event(site, "west2", 1, now - timedelta(seconds=3),
                                                        ref=f"T{shared_ticket}", passed=True, offline=True)))
        per_gate_payloads["west1"].append(encode(_event(site, "west1", 1, now + timedelta(seconds=60),
                                                        ref=f"T{refunded_ticket}", passed=True, offline=True)))
        # A gate publishing under another gate's name is parked.
        per_gate_payloads["east2"].append(encode(_event(site, "someone-else", 1, now, passed=True)))
        malformed += 1
        entries = per_gate * len(ENTRY_GATES) + 3
        unique_events = len({_valid_id(p, g) for g, ps in per_gate_payloads.items() for p in ps} - {None})
        total_messages = sum(len(ps) for ps in per_gate_payloads.values())

        publishers = {gate: GatePublisher(mosquitto, site, gate) for gate in (*ENTRY_GATES, EXIT_GATE)}
        started = time.perf_counter()
        _run_parallel([lambda g=g: publishers[g].publish_all(per_gate_payloads[g]) for g in ENTRY_GATES])
        # Phase 2: a third of the visitors leave through the exit gate.
        leaving = ticket_ids[: entries // 3]
        exits = [encode(_event(site, EXIT_GATE, 1, now + timedelta(seconds=120), direction="out",
                               ref=f"T{t}", passed=True)) for t in leaving]
        publishers[EXIT_GATE].publish_all(exits + exits[:50])  # 50 duplicates
        total_messages += len(exits) + 50
        unique_events += len(exits)
        assert worker.wait_idle(timeout=120)
        elapsed = time.perf_counter() - started
        for p in publishers.values():
            p.close()
        print(f"\n[{ctx.engine.dialect.name}] {total_messages} messages ({unique_events} unique events) from "
              f"{len(publishers)} gates in {elapsed:.2f}s: {total_messages / elapsed:.0f} msg/s end to end; "
              f"worker busy {worker.stats.busy_s:.2f}s in {worker.stats.batches} batches "
              f"({worker.stats.received / max(worker.stats.busy_s, 1e-9):.0f} msg/s of database time)")

        with ctx.sessions() as db:
            assert db.scalar(select(func.count()).select_from(PassageEventRecord)) == unique_events
            assert db.scalar(select(func.count()).select_from(ParkedMessage)) == malformed
            zone = db.scalar(select(Zone).where(Zone.site_id == site, Zone.number == 1))
            assert zone.entries_today == entries
            assert zone.exits_today == len(leaving)
            assert zone.inside == entries - len(leaving)
            assert zone.peak == entries
            assert zone.refused_today == sum(expected_refusals.values())
            denials = dict(db.execute(select(DenialCount.reason, DenialCount.count)
                                      .where(DenialCount.site_id == site)).all())
            assert denials == dict(expected_refusals)
            conflicts = db.scalars(select(Conflict).where(Conflict.site_id == site)).all()
            assert sorted((c.credential_ref, c.reason) for c in conflicts) == sorted(
                [(f"T{shared_ticket}", "used_up"), (f"T{refunded_ticket}", "refunded")])
            double = next(c for c in conflicts if c.credential_ref == f"T{shared_ticket}")
            assert {double.gate, double.other_gate} == {"east1", "west2"}
            usage = db.get(CredentialUsage, (site, f"T{shared_ticket}"))
            assert usage.entries == 2
            used = db.scalar(select(func.count()).select_from(Ticket).where(Ticket.status == "used"))
            assert used == per_gate * len(ENTRY_GATES) + 1
        # The retained occupancy reaches dashboards and gates.
        deadline = time.monotonic() + 10
        inside = None
        while time.monotonic() < deadline and inside != entries - len(leaving):
            msg = occupancy_listener.get(timeout=10)
            inside = next(z.inside for z in decode(Occupancy, msg.payload).zones if z.zone == 1)
        assert inside == entries - len(leaving)
    finally:
        worker.stop()
        ctx.close()


@pytest.mark.mosquitto
def test_a_malformed_message_is_parked_and_the_events_behind_it_still_arrive(live_config, live_ctx, mosquitto):
    site = live_config.site
    add_gates(live_ctx, site, "g1")
    worker = IngestWorker(live_config, live_ctx.sessions, worker_id=uuid.uuid4().hex[:6]).start()
    try:
        gate = GatePublisher(mosquitto, site, "g1")
        good = [encode(_event(site, "g1", 1, utcnow(), passed=True, kind="none", mode="free")) for _ in range(3)]
        gate.publish_all([good[0], b"\xff\xfe garbage", good[1], encode(_event(site, "g1", 1, utcnow()))[:-5],
                          good[2]])
        gate.close()
        assert worker.wait_idle(timeout=30)
        with live_ctx.sessions() as db:
            parked = db.scalars(select(ParkedMessage)).all()
            assert len(parked) == 2
            assert all(p.topic == topics.event(site, "g1") and p.error for p in parked)
            assert db.scalar(select(func.count()).select_from(PassageEventRecord)) == 3
            zone = db.scalar(select(Zone).where(Zone.site_id == site, Zone.number == 1))
            assert zone.inside == 3
    finally:
        worker.stop()
