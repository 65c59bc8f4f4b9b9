"""Sync: a gate's first full snapshot of a million tickets (the central's ingest worker answers the
gate's SnapshotRequest with SnapshotChunks; the GateAgent applies them into its store), and a
revocation reaching 200 gates (staff revokes a ticket at the central -> Delta -> every gate's store).

snapshot_1m_s: from GateAgent.start() (which asks for the snapshot on its first connect) until its
store holds the snapshot. revocation_reach: from the revoke transaction until a gate's apply_delta
returned, p99 over all gates and rounds.
"""

from __future__ import annotations

import shutil
import time

from tests.bench.centralkit import SITE, Central, Lines, workdir
from tests.bench.common import Bar, Section, percentile, process_rss_mb


def run(quick: bool) -> Section:
    from central.models import Site
    from central.services.tickets import revoke_ticket
    from gate_agent.agent import GateAgent
    from gate_agent.config import from_dict
    from tests.bench.gatekit import SilentDisplay

    section = Section("sync")
    f = section.figures
    tickets = 50_000 if quick else 1_000_000
    fleet, per_proc = (10, 5) if quick else (200, 50)
    rounds = 3 if quick else 5
    work = workdir("sync")
    central = Central(work)
    try:
        central.prepare_site({1: None})
        central.register_gates({"snap1": 1})  # the central builds snapshots for registered gates only
        f["sync_tickets_copy_s"] = round(central.copy_tickets(1, tickets, real_name=True), 1)
        worker = central.start_ingest()
        central.ctx.link.wait_connected(10)

        cfg = from_dict({"gate": {"id": "snap1", "site": SITE}, "broker": {"port": central.broker.port},
                         "store": {"path": str(work / "snap1" / "gate.db")}})
        agent = GateAgent(cfg, display=SilentDisplay())
        time.sleep(2)  # the worker's subscriptions
        t0 = time.monotonic()
        agent.start()
        deadline = t0 + (120 if quick else 1200)
        while agent.store.meta("snapshot_id") is None:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("no snapshot applied (see var/bench/tmp/sync-*/ingest-1.log)")
            time.sleep(0.1)
        elapsed = time.monotonic() - t0
        held = agent.store.counts()["tickets"]
        agent.stop()
        f["snapshot_1m_s"] = round(elapsed, 1)  # with --quick: of snapshot_tickets, not a million
        f["snapshot_tickets"] = held
        f["snapshot_central_rss_mb"] = round(process_rss_mb(worker.pid), 1)
        if held != tickets:
            raise RuntimeError(f"the gate holds {held} tickets after the snapshot, expected {tickets}")
        section.notes.append(f"snapshot of {tickets:,} real-name tickets; snapshot_central_rss_mb is the ingest "
                             "worker that built it")

        with central.ctx.sessions() as db:
            seq = db.get(Site, SITE).sync_seq
        fleets = [Lines(central.spawn("tests.bench.gate_fleet", str(central.broker.port), str(first),
                                      str(per_proc), str(work / "fleet"), str(seq), log_name=f"fleet{first}.log"))
                  for first in range(0, fleet, per_proc)]
        for p in fleets:
            if not p.ready.wait(180):
                raise RuntimeError("a gate fleet process did not start (see var/bench/tmp/sync-*/fleet*.log)")
        connected = sum(p.last("ready")["gates"] for p in fleets)
        reach: list[float] = []
        missing = 0
        for r in range(rounds):
            t_revoke = time.monotonic()
            with central.ctx.sessions.begin() as db:
                revoke_ticket(db, tickets - r, actor="bench")
            central.ctx.publisher.flush()
            want = seq + r + 1
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                got = [d for p in fleets for d in p.lines if d.get("seq") == want]
                if len(got) >= fleet:
                    break
                time.sleep(0.05)
            got = [d for p in fleets for d in p.lines if d.get("seq") == want]
            missing += fleet - len(got)
            reach += [d["t"] - t_revoke for d in got] + [30.0] * (fleet - len(got))
            time.sleep(0.5)
        f["revocation_reach_p50_ms"] = round(percentile(reach, 50) * 1000, 1)
        f["revocation_reach_p99_ms"] = round(percentile(reach, 99) * 1000, 1)
        f["revocation_gates"] = connected
        f["revocation_missing"] = missing
        section.bars += [Bar("revocation_reach_p99_ms", 2000, note=f"({connected} gates x {rounds} revocations)"),
                         Bar("revocation_missing", 0)]
        section.notes.append(f"{fleet} GateAgents (own store and MQTT link each) in {len(fleets)} processes")
    finally:
        central.close()
    shutil.rmtree(work, ignore_errors=True)
    return section
