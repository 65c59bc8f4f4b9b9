"""Central ingest: passage events from simulated gates over Mosquitto into PostgreSQL with the counts
updated, beside the raw limit (a plain subscriber COPYing the same rows); the count lag a manager
sees on the dashboard's live stream under that load; the ingest process's peak memory.

    publishers (processes, one MQTT connection per gate, QoS 1, paced)
        -> Mosquitto (ours) -> `park-central ingest` (its own process) -> PostgreSQL (a database of our own)
    probe gate (zone 2, 4 passages/s) -> ... -> Occupancy -> LiveHub -> /live/stream -> observer process
    probe gate's own counts (GateCounts, retained) -> LiveHub (the light path) -> /live/stream -> observer

ingest_events_per_s = events stored / (first publish .. all stored). Lost = acknowledged by the broker
but not in passage_events after the drain.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.bench.centralkit import ROOT, SITE, Central, Lines, workdir
from tests.bench.common import Bar, Section, percentile, process_rss_mb


def _publishers(central: Central, procs: int, gates: int, rate: float, seconds: float, ticket_base: int,
                tickets_each: int, flat: bool = False) -> list[Lines]:
    per = gates // procs
    out = []
    for i in range(procs):
        args = [str(central.broker.port), str(i * per), str(per), str(rate / procs), str(seconds),
                str(ticket_base + i * tickets_each)]
        if flat:
            args.append("flat")
        out.append(Lines(central.spawn("tests.bench.publisher_process", *args, log_name=f"pub{i}.log")))
    return out


def _finish(pubs: list[Lines], timeout: float) -> tuple[float, int, int, float]:
    """(first start, sent, acked, publish rate) once every publisher has reported."""
    deadline = time.monotonic() + timeout
    for p in pubs:
        p.proc.wait(max(1, deadline - time.monotonic()))
    time.sleep(0.2)
    starts = [p.last("start")["start"] for p in pubs]
    ends = [p.last("sent") for p in pubs]
    if None in ends:
        raise RuntimeError("a publisher process did not report (see var/bench/tmp/ingest-*/pub*.log)")
    return (min(starts), sum(e["sent"] for e in ends), sum(e["acked"] for e in ends),
            sum(e["rate"] for e in ends))


PROFILE_OUT = ROOT / "var" / "bench" / "profile-ingest.txt"


def _profile(pid: int, seconds: float, work):
    """With BENCH_PROFILE=1: py-spy samples the GIL holder of the ingest worker through the load."""
    if os.environ.get("BENCH_PROFILE") != "1" or not shutil.which("py-spy", path=str(Path(sys.executable).parent)):
        return None
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent))
    return subprocess.Popen([exe, "record", "--nonblocking", "--gil", "-p", str(pid), "-d", str(int(seconds)),
                             "-r", "100", "-f", "raw", "-o", str(PROFILE_OUT)],
                            stdout=subprocess.DEVNULL, stderr=open(work / "pyspy.log", "ab"))  # noqa: SIM115


def _stored(central: Central) -> int:
    return central.sql("SELECT count(*) FROM passage_events WHERE gate LIKE 'bg%%'")[0][0]


def run(quick: bool) -> Section:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from protocol import topics
    from protocol.ids import new_event_id
    from protocol.messages import GateCounts, PassageEvent, ZoneTally, encode

    section = Section("ingest")
    f = section.figures
    gates, procs = (20, 2) if quick else (200, 4)
    rate, seconds, raw_seconds = (2_000, 10, 5) if quick else (12_000, 60, 20)
    work = workdir("ingest")
    central = Central(work)
    try:
        central.prepare_site({1: None, 2: None})
        central.register_gates({"probe": 2, "warmup": 1} | {f"bg{i:03d}": 1 for i in range(gates)})
        tickets_each = int(rate / procs * seconds * 0.9) + 1000
        central.copy_tickets(2, tickets_each * procs, real_name=False)
        central.ctx.link.wait_connected(10)

        observer = Lines(central.spawn("tests.bench.live_observer", str(central.config_path), "2",
                                        log_name="observer.log"))
        # Two workers on a 2-core box: the shared subscription is how the central scales its ingest.
        count = int(os.environ.get("BENCH_INGEST_WORKERS", "1" if quick else "2"))
        workers = [central.start_ingest(str(w + 1)) for w in range(count)]
        ingest = workers[0]
        probe = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:6]}",
                            protocol=mqtt.MQTTv5)
        probe.connect("127.0.0.1", central.broker.port)
        probe.loop_start()

        def probe_event(zone: int, gate: str = "probe") -> bytes:
            return encode(PassageEvent(id=new_event_id(), site=SITE, gate=gate, zone=zone, at=datetime.now(UTC),
                                       direction="in", credential_kind="none", passed=True, mode="free"))

        # The worker is ready once a passage goes all the way into the database.
        deadline = time.monotonic() + 90
        while not central.sql("SELECT 1 FROM passage_events WHERE gate = 'warmup' LIMIT 1"):
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                parked = central.sql("SELECT error FROM parked_messages ORDER BY id DESC LIMIT 1")
                why = f": it parked the first event ({parked[0][0][:300]})" if parked else ""
                raise RuntimeError(f"the ingest worker did not store an event{why} (logs in {work})")
            probe.publish(topics.event(SITE, "warmup"), probe_event(1, "warmup"), qos=1)
            time.sleep(1)
        if not observer.ready.wait(60):
            raise RuntimeError("the live observer did not start (see observer.log)")
        via = observer.last("ready")["via"]
        failed = observer.last("sse_failed")
        if failed:
            section.notes.append(f"dashboard stream unavailable ({failed['sse_failed']}): count lag measured to "
                                 "the retained Occupancy on MQTT")

        pubs = _publishers(central, procs, gates, rate, seconds, 2, tickets_each)
        for p in pubs:
            p.ready.wait(60)
        profiler = _profile(ingest.pid, seconds, work)
        probes: list[float] = []
        # The probe is a gate: after each passage it sends its own count of the day as well (`GateCounts`,
        # what `gate_agent` publishes), the light path the dashboard adds until the events are stored.
        tz = ZoneInfo(central.sql("SELECT timezone FROM sites WHERE id = %s", SITE)[0][0])
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            probes.append(time.monotonic())
            probe.publish(topics.event(SITE, "probe"), probe_event(2), qos=1)
            probe.publish(topics.counts(SITE, "probe"), encode(GateCounts(
                site=SITE, gate="probe", day=datetime.now(tz).date(), at=datetime.now(UTC),
                zones=[ZoneTally(zone=2, entries=len(probes))])), qos=1, retain=True)
            time.sleep(0.25)
        first, sent, acked, pub_rate = _finish(pubs, seconds + 180)
        if profiler is not None:
            profiler.wait(60)
            section.notes.append(f"py-spy profile of the ingest worker: {PROFILE_OUT}")

        # Drain: until every acknowledged event is stored, or the count stops moving for 30 s.
        stored, moved_at = _stored(central), time.monotonic()
        drain_deadline = time.monotonic() + (60 if quick else 600)
        while stored < acked and time.monotonic() < drain_deadline and time.monotonic() - moved_at < 30:
            time.sleep(0.5)
            now_stored = _stored(central)
            if now_stored != stored:
                stored, moved_at = now_stored, time.monotonic()
        done_at = moved_at
        f["ingest_events_per_s"] = round(stored / (done_at - first))
        f["ingest_published_per_s"] = round(pub_rate)
        f["ingest_offered_per_s"] = rate
        f["ingest_events"] = stored
        f["ingest_lost_events"] = acked - stored
        f["ingest_unacked_by_broker"] = sent - acked
        f["ingest_drain_s"] = round(max(0.0, done_at - (first + seconds)), 1)
        f["ingest_gates"] = gates
        f["ingest_window_s"] = seconds
        f["ingest_rss_mb"] = round(max(process_rss_mb(w.pid) for w in workers), 1)
        f["ingest_workers"] = len(workers)
        section.bars += [Bar("ingest_events_per_s", 10_000, at_least=True), Bar("ingest_lost_events", 0)]
        if pub_rate < 0.95 * rate:
            section.notes.append(f"publishers reached {pub_rate:,.0f}/s of the {rate:,}/s offered: on this machine "
                                 "they, not the ingest, cap the input")

        # Count lag: each probe is one more entry in zone 2; it is seen when the stream's count reaches it.
        time.sleep(2)
        changes = [(d["t"], d["entries"]) for d in observer.lines if "entries" in d]
        lags, unseen = [], 0
        for k, t_pub in enumerate(probes, start=1):
            seen = next((t for t, n in changes if n >= k and t >= t_pub - 0.001), None)
            if seen is None:
                unseen += 1
                lags.append(time.monotonic() - t_pub)
            else:
                lags.append(seen - t_pub)
        key = "count_lag_p99_ms" if via == "sse" else "count_lag_mqtt_p99_ms"
        f[key] = round(percentile(lags, 99) * 1000, 1)
        f["count_lag_p50_ms"] = round(percentile(lags, 50) * 1000, 1)
        f["count_lag_probes"] = len(probes)
        f["count_lag_unseen"] = unseen
        drops = [d for d in observer.lines if "dropped" in d]
        if drops:
            section.notes.append(f"the live hub dropped the dashboard stream {len(drops)} times under load "
                                 "(its queue of 1000 filled with passage messages); the observer reconnected")
        section.bars.append(Bar(key, 1000, note=f"(via {via}, the gates' counts: the light path)"))
        for w in workers:
            central.stop_process(w)
        central.stop_process(observer.proc)
        probe.disconnect()
        probe.loop_stop()

        # The raw limit: the same broker and database, a plain subscriber and COPY, publishers flat out.
        raw = Lines(central.spawn("tests.bench.raw_ingest", str(central.broker.port), central.db_url, "3",
                                   log_name="raw.log"))
        if not raw.ready.wait(30):
            raise RuntimeError("the raw subscriber did not start (see raw.log)")
        time.sleep(0.5)
        pubs = _publishers(central, procs, gates, rate * 3, raw_seconds, 10_000_000, 10_000_000, flat=True)
        _first, raw_sent, _raw_acked, raw_pub_rate = _finish(pubs, raw_seconds + 180)
        raw.proc.wait(300)
        time.sleep(0.2)
        result = raw.last("rows")
        f["ingest_raw_events_per_s"] = round(result["rows"] / (result["last"] - _first))
        f["ingest_raw_published_per_s"] = round(raw_pub_rate)
        f["ingest_raw_events"] = result["rows"]
        f["ingest_vs_raw"] = round(f["ingest_events_per_s"] / f["ingest_raw_events_per_s"], 2)
        section.bars.append(Bar("ingest_vs_raw", 0.5, at_least=True, note="(ours / raw subscribe + COPY)"))
        if result["rows"] != raw_sent:
            section.notes.append(f"raw subscriber stored {result['rows']:,} of {raw_sent:,} published (QoS 1 "
                                 "without a session: what it missed is the raw side's, not ours)")
        section.notes.append(f"{gates} gates in {procs} publisher processes, offered {rate:,}/s for {seconds} s; "
                             f"raw limit with the publishers flat out for {raw_seconds} s")
    finally:
        central.close()
    shutil.rmtree(work, ignore_errors=True)  # kept, with the processes' logs, when the section failed
    return section
