"""The holiday rush and the broker goes away for a minute: gates keep admitting, nothing is lost."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from central.models import PassageEventRecord as E
from tests.reliability.conftest import Visitors, poll, report

OUTAGE_S = 60


def check_park(park, gates, visitors, witness, name: str, **extra) -> None:
    """Every confirmed passage once at the central, live counts equal to the turnstiles', and a line of figures."""
    decisions = [d for v in visitors for d in v.decisions]
    sent = sum(g.written() for g in gates)
    poll(lambda: all(g.outbox() == 0 for g in gates), 60, what="every gate's outbox drained")
    poll(lambda: park.rows() >= sent, 60, what=f"{sent} events at the central")
    time.sleep(0.5)  # a late duplicate would be stored now, if the event id did not stop it
    received = park.rows()
    assert received == sent == len(park.event_ids())
    for g in gates:
        assert park.rows(g.gate) == g.written(), g.gate
        # Ground truth: what the turnstile counted went through, each passage exactly once at the central.
        assert park.rows(g.gate, passed=True) == g.passed_in, g.gate
    granted = sum(d.expect == "granted" for d in decisions)
    assert sum(g.passed_in for g in gates) == granted
    with park.ctx.sessions() as db:
        refused = db.scalar(select(func.count()).select_from(E).where(
            E.site_id == park.site, E.decision == "refused", E.reason == "used_up"))
    assert refused == sum(d.expect == "refused" for d in decisions)
    zone = park.zone(1)
    assert zone.inside == zone.entries_today == granted
    report(name, sent=sent, received=received, duplicates_dropped=witness.sent - witness.unique if witness else 0,
           lost=sent - received, passages=granted, refusals=refused, **extra)


@pytest.mark.slow
@pytest.mark.mosquitto
def test_broker_stopped_for_a_minute_while_gates_admit_loses_nothing(db_url, tmp_path, mosquitto_factory, park_factory,
                                                                    gate_procs, witness_factory):
    broker = mosquitto_factory(persistence=True)
    park = park_factory(db_url, broker, tickets=1600)
    park.start_ingest()
    witness = witness_factory(broker, park.site)
    gates = [gate_procs(broker, park.site, name).start() for name in park.gates]
    poll(lambda: all(g.ready() for g in gates), 40, what="gates configured and synced")
    half = len(park.codes) // 2
    visitors = [Visitors(g, park.codes[i * half:(i + 1) * half], replay_every=10, pace_s=0.15)
                for i, g in enumerate(gates)]
    for v in visitors:
        v.start()
    poll(lambda: all(len(v.decisions) >= 15 for v in visitors), 30, what="the rush under way")
    poll(lambda: park.rows() >= 20, 20, what="events reaching the central")

    broker.stop()
    stopped = time.monotonic()
    at_stop = [len(v.decisions) for v in visitors]
    # While the broker is away, each gate keeps deciding from its own store: check every 10 s.
    tick = threading.Event()
    progress = []
    while time.monotonic() - stopped < OUTAGE_S:
        tick.wait(min(10, OUTAGE_S - (time.monotonic() - stopped)))
        progress.append([len(v.decisions) for v in visitors])
    queued = [g.outbox() for g in gates]
    broker.start()
    during = [p - s for p, s in zip(progress[-1], at_stop, strict=True)]
    assert all(n >= 30 for n in during), f"decisions per gate during the outage: {during}"
    for earlier, later in zip(progress, progress[1:], strict=False):  # every 10 s, every gate decided more
        assert all(b > a for a, b in zip(earlier, later, strict=True)), progress
    assert all(q > 0 for q in queued)

    # The rush goes on after the broker is back, then the gates drain their queues.
    after = [len(v.decisions) for v in visitors]
    poll(lambda: all(len(v.decisions) >= a + 10 for v, a in zip(visitors, after, strict=True)), 30,
         what="decisions after the restart")
    for v in visitors:
        v.finish()
    check_park(park, gates, visitors, witness, "broker-stopped-60s", offline_decisions=sum(during),
               queued_at_restart=sum(queued))
    with park.ctx.sessions() as db:
        offline = db.scalar(select(func.count()).select_from(E).where(E.site_id == park.site, E.offline.is_(True)))
    assert offline >= sum(during)
