"""A gate's process dies: killed in the middle of a passage, at random moments, or while writing its store."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import threading

import pytest

from tests.reliability.conftest import ROOT, Visitors, _env, poll, report
from tests.reliability.test_broker_outage import check_park

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto]


def test_gate_killed_while_the_visitor_walks_through_records_the_passage_once_after_restart(db_url,
        tmp_path, mosquitto_factory, park_factory, gate_procs, witness_factory):
    """The arm is open, the visitor is in the turnstile, the gate's process dies before it stored the passage."""
    broker = mosquitto_factory(persistence=True)
    park = park_factory(db_url, broker, gates=("g1",), tickets=2)
    park.start_ingest()
    witness = witness_factory(broker, park.site)
    gate = gate_procs(broker, park.site, "g1").start()
    poll(gate.ready, 40, what="the gate configured and synced")
    gate.sim.pass_delay_s = 1.5  # a slow visitor: time to kill the gate between opening and the passage
    code = park.codes[0]
    gate.scanner.scan(code)
    poll(lambda: gate.sim.arm_state == "open_in", 10, what="the arm opened")
    gate.kill()
    poll(lambda: gate.sim.counters == (1, 0), 10, what="the visitor through the turnstile")
    assert gate.written() == 0  # the gate died before it stored the passage
    gate.sim.pass_delay_s = 0.03
    gate.start()
    poll(lambda: park.rows("g1", passed=True) == 1, 30, what="the passage at the central")
    # The entry is used up: shown again, the code is refused, and the central counts one visitor.
    poll(gate.ready, 20, what="the gate back")
    gate.scanner.scan(code)
    poll(lambda: gate.written() == 2, 20, what="the second showing decided")
    poll(lambda: park.rows("g1") == 2, 20, what="the refusal at the central")
    assert gate.sim.counters == (1, 0)
    assert park.zone(1).inside == 1
    report("gate-killed-mid-passage", sent=gate.written(), received=park.rows(),
           duplicates_dropped=witness.sent - witness.unique, lost=gate.written() - park.rows())


def test_gate_killed_at_random_moments_while_admitting_loses_no_passage(db_url, tmp_path, mosquitto_factory,
                                                                        park_factory, gate_procs, witness_factory):
    broker = mosquitto_factory(persistence=True)
    park = park_factory(db_url, broker, tickets=800)
    park.start_ingest()
    witness = witness_factory(broker, park.site)
    gates = [gate_procs(broker, park.site, name).start() for name in park.gates]
    poll(lambda: all(g.ready() for g in gates), 40, what="gates configured and synced")
    visitors = [Visitors(g, park.codes[i * 400:(i + 1) * 400], replay_every=10, pace_s=0.02, rescan_s=3)
                for i, g in enumerate(gates)]
    for v in visitors:
        v.start()
    rng = random.Random(20240501)
    pause = threading.Event()
    by_gate = dict(zip(gates, visitors, strict=True))
    for _ in range(6):
        victim = rng.choice(gates)
        seen = len(by_gate[victim].decisions)
        poll(lambda v=by_gate[victim], n=seen: len(v.decisions) >= n + 3, 30, what="the gate deciding again")
        pause.wait(rng.uniform(0.0, 1.0))  # then at a random moment of its work
        victim.kill()
        victim.start()
    poll(lambda: all(g.ready() for g in gates), 30, what="gates back")
    done = [len(v.decisions) for v in visitors]
    poll(lambda: all(len(v.decisions) >= d + 5 for v, d in zip(visitors, done, strict=True)), 30,
         what="gates deciding after the last kill")
    for v in visitors:
        v.finish()
    check_park(park, gates, visitors, witness, "gate-sigkill-random-x6", kills=sum(g.kills for g in gates))


WRITER = r"""
import sys
from datetime import UTC, datetime
from gate_agent.store import Store
from protocol import messages as m
from protocol.ids import new_event_id

store = Store(sys.argv[1])
n = int(sys.argv[2])
while True:
    n += 1
    event = m.PassageEvent(id=new_event_id(), site="s1", gate="g1", zone=1, at=datetime.now(UTC), direction="in",
                           credential_kind="qr", credential_ref=f"T{n}", passed=True, ticket_type=1)
    store.record(event, "gates/v1/s1/gate/g1/event")
    print(event.id, flush=True)  # record() returned: the passage must survive
    if n % 7 == 0:  # the drainer deletes what the broker acknowledged, in between
        rows = store.outbox_after(0, 3)
        print("D", *[r.event_id for r in rows], flush=True)  # announced before the delete commits
        store.outbox_delete([r.seq for r in rows])
"""


def test_power_cut_while_the_gate_store_is_written_keeps_it_whole_and_every_recorded_passage(tmp_path):
    """SIGKILL at random moments of a process writing the store (Store.record, outbox deletes), ten rounds."""
    path = tmp_path / "gate.db"
    rng = random.Random(7)
    confirmed: list[str] = []
    deletable: set[str] = set()
    for round_no in range(10):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(round_no * 1_000_000)], cwd=ROOT,
                                env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda p=proc, out=lines: out.extend(line.strip() for line in p.stdout))
        reader.start()
        poll(lambda out=lines: len(out) >= 5, 20, what="the writer running")
        threading.Event().wait(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        reader.join(10)
        confirmed += [x for x in lines if not x.startswith("D")]
        for x in lines:
            if x.startswith("D"):
                deletable.update(x.split()[1:])
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            in_outbox = {r[0] for r in conn.execute("SELECT event_id FROM outbox")}
            written = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()[0]
            usage = conn.execute("SELECT count(*), sum(entries) FROM usage").fetchone()
        finally:
            conn.close()
        # Every record() that returned is in the file, unless the drainer's rule deleted it.
        missing = {e for e in confirmed if e not in in_outbox}
        assert missing <= deletable
        # Usage and outbox are one transaction: one usage row per event ever written, never half.
        assert usage[0] == usage[1] == written
        assert len(confirmed) <= written
    report("gate-power-cut-store-x10", sent=written, received=written, duplicates_dropped=0, lost=0,
           confirmed_by_writer=len(confirmed), integrity="ok")
