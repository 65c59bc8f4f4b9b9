"""The booking rush: 2,000 visitors on the public booking site at once for the last 500 places of a slot,
through the real HTTP app (waitress + Flask in its own process, `tests/bench/booking_server.py`) on
PostgreSQL, beside the bare limit of the same conditional UPDATE alone.

    before the rush   every visitor opens the form (GET: session cookie, CSRF token, challenge) and
                      solves its proof of work, as a phone does while the visitor types
    the rush          every visitor sends the form (POST) through RUSH_CONNECTIONS keep-alive connections
                      at once, spread over SERVER_PROCESSES web processes (one per core, as a park runs
                      them behind its proxy); latency is from sending a visitor's POST to its answer
    afterwards        booked (302) must be exactly what the database holds, every other visitor must
                      have been told the slot is full (409 with that text)

    booking_rush_oversold   places booked beyond the capacity (must be 0)
    booking_rush_lost       visitors neither stored nor told "full", or stored without being told (must be 0)
    booking_rush_per_s      POSTs answered per second over the rush (bookings and refusals)
    booking_rush_p99_ms     99th percentile of a POST's answer time
    booking_bare_*          the same rush of conditional UPDATEs alone (psycopg, one transaction each)

BENCH_PROFILE=1 samples the web process's threads every 5 ms into var/bench/tmp/booking-*/booking-profile.txt
(where they wait: a lock, the database, Python). It found every request thread queued behind the
publisher's lock after each commit (the after-commit publish now runs in the publisher's own thread);
a CPU profile of the POSTs then found the park filter's options rebuilt for every SELECT (now cached),
py-spy the ORM's unit of work (a booking is now prebuilt Core statements) and the rows every booking
waits for locked over four round trips (now one statement: see visitor_bookings._take_places).
"""

from __future__ import annotations

import http.client
import queue
import re
import threading
import time
import urllib.parse
from datetime import UTC, date, datetime, timedelta

from tests.bench.centralkit import SITE, Central, Lines, free_port, libpq, workdir
from tests.bench.common import Bar, Section, percentile

VISITORS, PLACES, BOOKED_BEFORE = 2000, 500, 10_000
QUICK_VISITORS, QUICK_PLACES = 400, 100
RUSH_CONNECTIONS = 32  # the phones whose POSTs are in flight at once
SERVER_THREADS = 4  # waitress's threads per process (2, 4, 8 measured: with 8 more bookings queue on the slot's row)
SERVER_PROCESSES = 2  # web processes, one per core (4x2 and 3x3 processes x threads measured no better)
POW_BITS = 8
TYPE_ID = 9
_TOKEN = re.compile(r'name="csrf-token" content="([^"]+)"')
_CHALLENGE = re.compile(r'name="challenge" value="([^"]+)"')


def id_number(i: int) -> str:
    from central.services.visitor_bookings import gb11643_check

    first17 = f"110105{date(1950, 1, 1) + timedelta(days=i % 20000):%Y%m%d}{i % 1000:03d}"
    return first17 + gb11643_check(first17)


class Visitor:
    def __init__(self, i: int, port: int = 0) -> None:
        self.i = i
        self.port = port
        self.cookie = ""
        self.body = b""
        self.status = 0
        self.location = ""
        self.text = ""
        self.latency_ms = 0.0


def _request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
             headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn.request(method, path, body=body, headers=headers or {})
    res = conn.getresponse()
    return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()


def _prepare(port: int, quota_id: int, visitors: list[Visitor]) -> None:  # one process's visitors
    """Each visitor opens the form and solves the challenge (before the rush, untimed)."""
    from central.services.proof_of_work import solve

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for v in visitors:
        status, headers, page = _request(conn, "GET", f"/book/slot/{quota_id}", headers={
            "Accept-Language": "en"})
        if status != 200:
            raise RuntimeError(f"the form answered {status}")
        v.cookie = headers["set-cookie"].split(";", 1)[0]
        html = page.decode()
        challenge = _CHALLENGE.search(html).group(1)
        form = {"csrf_token": _TOKEN.search(html).group(1), "challenge": challenge, "pow": solve(challenge),
                "party": "1", "person-1-name": f"Visitor {v.i}", "person-1-doc_type": "id_card",
                "person-1-doc_number": id_number(v.i), "phone": f"139{v.i:08d}", "consent": "yes"}
        v.body = urllib.parse.urlencode(form).encode()
    conn.close()


def _rush(ports: list[int], quota_id: int, visitors: list[Visitor], connections: int) -> float:
    """Each connection sends the POSTs of its web process's visitors (a phone talks to one process)."""
    queues: dict[int, queue.Queue[Visitor]] = {p: queue.Queue() for p in ports}
    for v in visitors:
        queues[v.port].put(v)
    start = threading.Barrier(connections + 1)

    def worker(port: int) -> None:
        todo = queues[port]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.connect()
        start.wait()
        while True:
            try:
                v = todo.get_nowait()
            except queue.Empty:
                break
            t0 = time.perf_counter()
            try:
                v.status, headers, body = _request(conn, "POST", f"/book/slot/{quota_id}", v.body, {
                    "Cookie": v.cookie, "Content-Type": "application/x-www-form-urlencoded",
                    "Accept-Language": "en"})
            except (OSError, http.client.HTTPException) as exc:
                v.status, headers, body = -1, {}, str(exc).encode()
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            v.latency_ms = (time.perf_counter() - t0) * 1000
            v.location, v.text = headers.get("location", ""), body.decode(errors="replace")
        conn.close()

    threads = [threading.Thread(target=worker, args=(ports[k % len(ports)],), daemon=True)
               for k in range(connections)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def _bare(db_url: str, quota_id: int, attempts: int, connections: int) -> tuple[float, list[float], int]:
    """The limit: the same conditional UPDATE alone, one transaction per attempt, `connections` at once."""
    import psycopg

    todo: queue.Queue[int] = queue.Queue()
    for i in range(attempts):
        todo.put(i)
    latencies: list[float] = []
    taken = [0]
    lock = threading.Lock()
    start = threading.Barrier(connections + 1)

    def worker() -> None:
        with psycopg.connect(libpq(db_url)) as conn:
            start.wait()
            while True:
                try:
                    todo.get_nowait()
                except queue.Empty:
                    break
                t0 = time.perf_counter()
                row = conn.execute("UPDATE slot_quotas SET booked = booked + 1 WHERE id = %s AND booked + 1 <= "
                                   "capacity RETURNING id", (quota_id,)).fetchone()
                conn.commit()
                with lock:
                    latencies.append((time.perf_counter() - t0) * 1000)
                    taken[0] += row is not None

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latencies, taken[0]


def run(quick: bool = False) -> Section:
    from sqlalchemy import func, select

    from central.models import Booking, SlotQuota
    from central.services import visitor_bookings as vb
    from central.services.gates import ensure_site, ensure_zone
    from central.services.tickets import TicketTypeSpec, define_ticket_type

    visitors_n, places = (QUICK_VISITORS, QUICK_PLACES) if quick else (VISITORS, PLACES)
    section = Section("booking")
    work = workdir("booking")
    central = Central(work)
    servers: list = []
    try:
        ctx = central.ctx
        day = (datetime.now(UTC) + timedelta(days=1)).date()
        with ctx.sessions.begin() as db:
            ensure_site(db, SITE, name="Bench Park", timezone="UTC", pass_biometric="none")
            ensure_zone(db, SITE, 1, name="Main", capacity=None)
            define_ticket_type(db, SITE, TicketTypeSpec(name="booked visit", id=TYPE_ID, real_name=True))
            vb.update_settings(db, SITE, "bench", ticket_type_id=TYPE_ID, days_ahead=7, party_max=5,
                               cancel_before_min=60, close_before_min=0, retention_days=30, face_entry=False)
            from datetime import time as clock

            rush = vb.set_slot(db, SITE, "bench", day=day, start=clock(9), end=clock(11),
                               capacity=BOOKED_BEFORE + places)
            bare = vb.set_slot(db, SITE, "bench", day=day, start=clock(13), end=clock(15),
                               capacity=BOOKED_BEFORE + places)
            rush.booked = bare.booked = BOOKED_BEFORE  # the rush is for the last places
            rush_id, bare_id = rush.id, bare.id

        ports = [free_port() for _ in range(SERVER_PROCESSES)]
        for port in ports:
            servers.append(central.spawn("tests.bench.booking_server", str(central.config_path), str(port),
                                         str(SERVER_THREADS), str(POW_BITS), log_name=f"web-{port}.log"))
            if not Lines(servers[-1]).ready.wait(60):
                raise RuntimeError("the booking server did not start (see web-*.log)")

        visitors = [Visitor(i, ports[i % len(ports)]) for i in range(visitors_n)]
        t0 = time.perf_counter()
        mine = {port: [v for v in visitors if v.port == port] for port in ports}
        preparers = [threading.Thread(target=_prepare, args=(port, rush_id, mine[port][k::2]))
                     for port in ports for k in range(2)]
        for t in preparers:
            t.start()
        for t in preparers:
            t.join()
        section.notes.append(f"{visitors_n} visitors opened the form and solved the check in "
                             f"{time.perf_counter() - t0:.1f} s (before the rush)")
        elapsed = _rush(ports, rush_id, visitors, RUSH_CONNECTIONS)

        booked = [v for v in visitors if v.status == 302 and "/book/b/" in v.location]
        told_full = [v for v in visitors if v.status == 409 and "This time slot is fully booked." in v.text]
        numbers = {v.location.rsplit("/", 1)[1] for v in booked}
        with ctx.sessions() as db:
            quota = db.get(SlotQuota, rush_id)
            stored = set(db.scalars(select(Booking.number).where(Booking.quota_id == rush_id)))
            persons = db.scalar(select(func.sum(Booking.party)).where(Booking.quota_id == rush_id)) or 0
        oversold = max(0, quota.booked - quota.capacity, BOOKED_BEFORE + persons - quota.capacity)
        lost = (visitors_n - len(booked) - len(told_full)) + len(stored ^ numbers)
        latencies = [v.latency_ms for v in visitors]
        others = sorted({v.status for v in visitors} - {302, 409})
        if others:
            section.notes.append(f"other answers: {others}")

        bare_s, bare_lat, bare_taken = _bare(central.db_url, bare_id, visitors_n, RUSH_CONNECTIONS)

        section.figures.update({
            "booking_rush_visitors": visitors_n, "booking_rush_places": places,
            "booking_rush_booked": len(booked), "booking_rush_told_full": len(told_full),
            "booking_rush_oversold": oversold, "booking_rush_lost": lost,
            "booking_rush_per_s": round(visitors_n / elapsed, 1),
            "booking_rush_p50_ms": round(percentile(latencies, 50), 1),
            "booking_rush_p99_ms": round(percentile(latencies, 99), 1),
            "booking_rush_booked_p99_ms": round(percentile([v.latency_ms for v in booked] or [0.0], 99), 1),
            "booking_rush_told_full_p99_ms": round(percentile([v.latency_ms for v in told_full] or [0.0], 99), 1),
            "booking_rush_connections": RUSH_CONNECTIONS,
            "booking_bare_per_s": round(visitors_n / bare_s, 1),
            "booking_bare_p99_ms": round(percentile(bare_lat, 99), 2),
            "booking_bare_taken": bare_taken,
        })
        section.bars += [
            Bar("booking_rush_oversold", 0), Bar("booking_rush_lost", 0),
            Bar("booking_rush_per_s", 500, at_least=True, note="2-core machine"),
            Bar("booking_rush_p99_ms", 200),
        ]
        section.notes.append(f"{RUSH_CONNECTIONS} POSTs in flight at once; {SERVER_PROCESSES} waitress processes "
                             f"of {SERVER_THREADS} threads; PostgreSQL with synchronous commit")
    finally:
        for server in servers:
            central.stop_process(server)
        central.close()
    return section
