"""Central claims: the gate's claim round trip (ClaimRequest published -> ClaimReply received) over
Mosquitto, answered by the claim server inside `park-central ingest` on PostgreSQL, while a background
load of passage events flows into that same process (the ingest benchmark's load, smaller in quick mode).

    4 gate links (gate_agent.link.Link + gate_agent.claims.ClaimClient, this process)
        --claim--> Mosquitto --> park-central claims (or the ClaimServer inside the ingest) --> PostgreSQL
    publishers (processes, QoS 1 passage events at a steady rate) --> the same broker --> park-central ingest

Each gate claims a fresh single-entry ticket every ~100 ms; every tenth round all four gates claim
the same ticket at once (contended: one grant, three refusals). gate_claim_p99_ms is over every
claim made while the load runs, with the claim server in its own process (`park-central claims`);
gate_claim_in_ingest_* is the same with the claim server inside the loaded ingest process. A claim
with no answer within 2 s counts as a timeout.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from datetime import UTC, datetime

from tests.bench.centralkit import SITE, Central, workdir
from tests.bench.common import Bar, Section, percentile

CLAIM_TICKETS = 90_000_000
GATES = 4
TIMEOUT_S = 2.0


class _Gate:
    """One gate's MQTT link and claim client, exactly as the agent builds them."""

    def __init__(self, work, port: int, name: str) -> None:
        from gate_agent import config as gate_config
        from gate_agent.claim_client import ClaimClient
        from gate_agent.link import Link
        from gate_agent.store import Store

        cfg = gate_config.from_dict({
            "gate": {"id": name, "site": SITE, "language": "en"},
            "broker": {"host": "127.0.0.1", "port": port, "keepalive_s": 5},
            "store": {"path": str(work / f"{name}.db")},
        }, source="bench")
        self.name = name
        self.store = Store(cfg.store_path)
        self.link = Link(cfg, self.store)
        self.client = ClaimClient(self.link, SITE, name)
        self.link.start()

    def claim(self, ticket: int) -> tuple[float, object]:
        from protocol.ids import new_event_id
        from protocol.messages import ClaimRequest

        request = ClaimRequest(id=new_event_id(), site=SITE, gate=self.name, zone=1, credential_kind="qr",
                               credential_ref=f"T{ticket}", ticket_type=1, at=datetime.now(UTC),
                               deadline_ms=int(TIMEOUT_S * 1000))
        started = time.perf_counter()
        reply = self.client.claim(request, TIMEOUT_S)
        return time.perf_counter() - started, reply

    def close(self) -> None:
        self.link.stop()
        self.store.close()


def _one(gate: _Gate, ticket: int, delay: float, results: list, lock: threading.Lock) -> None:
    time.sleep(delay)
    result = gate.claim(ticket)
    with lock:
        results.append(result)


def _claims(gates: list[_Gate], seconds: float, first_ticket: int) -> tuple[list[float], int, int, tuple[int, int]]:
    """(round trips, timeouts, grants, (contended rounds, those with exactly one grant)) over `seconds`."""
    samples: list[float] = []
    timeouts = grants = 0
    contended_ok = contended_rounds = 0
    lock = threading.Lock()
    ticket = first_ticket
    end = time.monotonic() + seconds
    rnd = 0
    while time.monotonic() < end:
        rnd += 1
        contended = rnd % 10 == 0
        tickets = [ticket] * len(gates) if contended else [ticket + i for i in range(len(gates))]
        ticket += 1 if contended else len(gates)
        results: list[tuple[float, object]] = []

        # Uncontended: the gates' claims spread over the round; contended: all at once.
        threads = [threading.Thread(target=_one, args=(g, t, 0 if contended else i * 0.025, results, lock))
                   for i, (g, t) in enumerate(zip(gates, tickets, strict=True))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        granted = 0
        for rtt, reply in results:
            if reply is None:
                timeouts += 1
                continue
            samples.append(rtt)
            granted += bool(reply.granted)
        grants += granted
        contended_rounds += contended
        contended_ok += contended and granted == 1
        time.sleep(max(0.0, 0.1 - 0.025 * len(gates)))
    return samples, timeouts, grants, (contended_rounds, contended_ok)


def _central_process(central: Central, *args: str, log_name: str):
    import subprocess

    from tests.bench.centralkit import ROOT, park_central

    log = open(central.work / log_name, "ab")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen([park_central(), "--config", str(central.config_path), *args], cwd=ROOT, stdout=log,
                            stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    central.procs.append(proc)
    return proc


def _prioritise(*pids: int, nice: int = -5) -> bool:
    """Renice processes (root only; elsewhere the figures are taken at equal priority)."""
    try:
        for pid in pids:
            os.setpriority(os.PRIO_PROCESS, pid, nice)
    except (PermissionError, ProcessLookupError):
        return False
    return True


def _stored(central: Central) -> int:
    return central.sql("SELECT count(*) FROM passage_events WHERE gate LIKE 'bg%%'")[0][0]


def _phase(central: Central, work, own_process: bool, quick: bool, ticket_base: int, claim_base: int) -> dict:
    """Claims idle, then under the passage load, with the claim server inside the ingest or beside it."""
    from tests.bench.bench_ingest import _finish, _publishers

    gates_bg, procs = (20, 2) if quick else (200, 4)
    rate, seconds = (2_000, 8) if quick else (12_000, 30)
    tag = "own" if own_process else "ingest"
    if own_process:
        procs_started = [_central_process(central, "ingest", "--worker-id", "1", "--no-claims", log_name="ingest.log"),
                         _central_process(central, "claims", "--worker-id", "c1", log_name="claims.log")]
    else:
        procs_started = [_central_process(central, "ingest", "--worker-id", "1", log_name="ingest.log")]
    if own_process:
        # Latency first: the claim server and the broker run at a higher CPU priority than the bulk
        # ingest (systemd `Nice=-5`), and this process stands in for gates that have CPUs of their own.
        _prioritise(procs_started[1].pid, central.broker.proc.pid, os.getpid())
    gates = [_Gate(work, central.broker.port, f"{tag}{i}") for i in range(GATES)]
    try:
        for g in gates:
            g.link.wait_connected(10)
        deadline = time.monotonic() + 90
        while gates[0].claim(claim_base + 99_999)[1] is None:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs_started):
                raise RuntimeError("the claim server did not answer (see var/bench/tmp/claim-*/*.log)")
        idle, idle_timeouts, _, _ = _claims(gates, 3 if quick else 10, claim_base)
        stored_before = _stored(central)
        tickets_each = int(rate / procs * seconds * 0.9) + 1000
        pubs = _publishers(central, procs, gates_bg, rate, seconds, ticket_base, tickets_each)
        for p in pubs:
            p.ready.wait(60)
        time.sleep(1.0)  # the load is flowing
        loaded, timeouts, grants, contended_ok = _claims(gates, seconds - 2, claim_base + 20_000)
        _first, _sent, acked, pub_rate = _finish(pubs, seconds + 180)
        # Let the ingest catch up, so the next phase's idle figures are idle.
        drain_until = time.monotonic() + (30 if quick else 120)
        while time.monotonic() < drain_until and _stored(central) < stored_before + acked:
            time.sleep(0.5)
    finally:
        for g in gates:
            g.close()
        for proc in procs_started:
            central.stop_process(proc)
        _prioritise(central.broker.proc.pid, os.getpid(), nice=0)
    return {"idle": idle, "loaded": loaded, "timeouts": timeouts + idle_timeouts, "contended_ok": contended_ok,
            "pub_rate": pub_rate, "acked": acked, "rate": rate, "gates_bg": gates_bg}


THROUGHPUT_GATES = 8
TICKETS_PER_GATE = 6_000  # per throughput run: more than a gate claims in 15 s


def _throughput(central: Central, work, servers: int, seconds: float, first_ticket: int) -> tuple[float, int]:
    """Closed loop: THROUGHPUT_GATES gates each claim a fresh ticket as soon as the last reply is in,
    against `servers` claim server processes behind the shared subscription (no passage load).
    Returns (replies per second, timeouts)."""
    procs = [_central_process(central, "claims", "--worker-id", f"t{servers}-{k}",
                              log_name=f"claims-t{servers}-{k}.log") for k in range(servers)]
    gates = [_Gate(work, central.broker.port, f"tp{servers}g{i}") for i in range(THROUGHPUT_GATES)]
    try:
        for g in gates:
            g.link.wait_connected(10)
        deadline = time.monotonic() + 90
        while gates[0].claim(first_ticket - 1)[1] is None:  # the servers subscribed and answering
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("the claim servers did not answer (see var/bench/tmp/claim-*/*.log)")
        time.sleep(1.0 if servers > 1 else 0.1)  # the other servers' shared subscriptions are in place
        replies = [0] * len(gates)
        timeouts = [0] * len(gates)
        start = threading.Barrier(len(gates) + 1)
        end_at = [0.0]

        def loop(i: int, gate: _Gate) -> None:
            ticket = first_ticket + i * TICKETS_PER_GATE  # fresh, valid tickets: each claim is a grant
            start.wait()
            while time.monotonic() < end_at[0]:
                _rtt, reply = gate.claim(ticket)
                ticket += 1
                if reply is None:
                    timeouts[i] += 1
                else:
                    replies[i] += 1

        threads = [threading.Thread(target=loop, args=(i, g), daemon=True) for i, g in enumerate(gates)]
        for t in threads:
            t.start()
        end_at[0] = time.monotonic() + seconds
        t0 = time.perf_counter()
        start.wait()
        for t in threads:
            t.join()
        return sum(replies) / (time.perf_counter() - t0), sum(timeouts)
    finally:
        for g in gates:
            g.close()
        for proc in procs:
            central.stop_process(proc)


def run(quick: bool) -> Section:
    section = Section("claim")
    f = section.figures
    work = workdir("claim")
    central = Central(work)
    try:
        # As config/mosquitto/park.conf: the broker sends small messages at once (no Nagle delay).
        central.broker.extra_config += "set_tcp_nodelay true\n"
        central.broker.restart()
        central.prepare_site({1: None, 2: None})
        load_tickets = 400_000 if not quick else 40_000  # each phase's publishers use fewer (bench_ingest)
        central.copy_tickets(2, 2 * load_tickets, real_name=False)
        central.copy_tickets(CLAIM_TICKETS, 200_000, real_name=False)
        # Claims per second, closed loop, with 1 and with 2 claim server processes (no passage load).
        tp_seconds = 4 if quick else 15
        tp_first = CLAIM_TICKETS + 200_000
        central.copy_tickets(tp_first, 2 * THROUGHPUT_GATES * TICKETS_PER_GATE + 10, real_name=False)
        for servers in (1, 2):
            first = tp_first + 1 + (servers - 1) * THROUGHPUT_GATES * TICKETS_PER_GATE
            rate, lost = _throughput(central, work, servers, tp_seconds, first)
            f[f"gate_claims_per_s_{servers}_server{'s' if servers > 1 else ''}"] = round(rate)
            f[f"gate_claims_timeouts_{servers}"] = lost
        f["gate_claims_scaling"] = round(f["gate_claims_per_s_2_servers"] / max(1, f["gate_claims_per_s_1_server"]), 2)
        section.notes.append(f"gate_claims_per_s_*: {THROUGHPUT_GATES} gates claiming closed loop for {tp_seconds} s "
                             "against 1, then 2 `park-central claims` processes (shared subscription)")
        inside = _phase(central, work, False, quick, 2, CLAIM_TICKETS)
        beside = _phase(central, work, True, quick, 2 + load_tickets, CLAIM_TICKETS + 100_000)
        for key, r in (("gate_claim", beside), ("gate_claim_in_ingest", inside)):
            f[f"{key}_idle_p99_ms"] = round(percentile(r["idle"], 99) * 1000, 2)
            f[f"{key}_p50_ms"] = round(percentile(r["loaded"], 50) * 1000, 2)
            f[f"{key}_p99_ms"] = round(percentile(r["loaded"], 99) * 1000, 2)
            f[f"{key}_max_ms"] = round(max(r["loaded"], default=float("nan")) * 1000, 2)
            f[f"{key}_timeouts"] = r["timeouts"]
            section.bars.append(Bar(f"{key}_timeouts", 0))
        f["gate_claims"] = len(inside["loaded"]) + len(beside["loaded"])
        f["gate_claim_contended_rounds"] = inside["contended_ok"][0] + beside["contended_ok"][0]
        f["gate_claim_contended_rounds_one_grant"] = inside["contended_ok"][1] + beside["contended_ok"][1]
        section.bars.append(Bar("gate_claim_p99_ms", 50, note="(park-central claims beside the loaded ingest)"))
        section.notes.append(
            f"{GATES} gates claiming beside {inside['gates_bg']} gates' passage events at {inside['rate']:,}/s offered "
            f"({beside['pub_rate']:,.0f}/s and {inside['pub_rate']:,.0f}/s published); gate_claim_*: "
            "`park-central claims` beside `park-central ingest --no-claims` (the layout for claim=central sites "
            "under load); gate_claim_in_ingest_*: the claim server inside `park-central ingest`, which shares "
            "its process (and GIL) with the batches")
    finally:
        central.close()
    shutil.rmtree(work, ignore_errors=True)
    return section
