"""A head office over many parks: 50 parks of 20 gates each (1,000 MQTT connections) publish passages
into one central (its broker, its ingest workers, its PostgreSQL), beside the same load from one park's
1,000 gates in a fresh central of its own.

    publishers (processes; each gate its own MQTT connection, QoS 1, paced; each park's entries on its
    own tickets) -> Mosquitto -> `park-central ingest` x 2 -> PostgreSQL
    probe gate of the first park (zone 2, 4 passages/s, with its own counts: the light path)
        -> ... -> the first park's dashboard stream (/live/stream) -> observer process

    headoffice_events_per_s      events stored a second over the window (first publish .. all stored)
    headoffice_count_lag_p99_ms  the probe park's count on its dashboard, behind its gate
    headoffice_lost_events       acknowledged by the broker but not stored after the drain (must be 0)
    headoffice_one_park_*        the same for one park with the same 1,000 gates

What it does not measure: the park servers' own brokers and bridges in front of the head office (a park
server bridges its gates' messages as they come; the head office's broker sees the same topics).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from tests.bench.centralkit import SITE, Central, Lines, workdir
from tests.bench.common import Bar, Section, percentile

PARKS, GATES_PER_PARK, RATE, SECONDS = 50, 20, 6_000, 40
QUICK = (5, 4, 800, 6)
PUBLISHERS = 4


def _park_sites(parks: int) -> list[str]:
    return [SITE] + [f"ho{i:02d}" for i in range(1, parks)]  # the first is the probe park (the config's site)


def _load(central: Central, sites: list[str], gates_each: int, rate: float, seconds: float) -> tuple[list[dict], int]:
    """Every park's site, zones, ticket type, gates and tickets; the publishers' park lists."""
    share = int(rate * seconds * 0.9 / len(sites)) + 200
    parks, next_id = [], 10
    for k, site in enumerate(sites):
        central.prepare_site({1: None, 2: None}, site=site, ticket_type=100 + k)
        central.register_gates({f"g{i:02d}": 1 for i in range(gates_each)} | ({"probe": 2} if k == 0 else {}),
                               site=site)
        central.copy_tickets(next_id, share, real_name=False, site=site, ticket_type=100 + k)
        parks.append({"site": site, "type": 100 + k, "ticket": next_id + 1, "gates": gates_each,
                      "refused": f"T{next_id}"})
        next_id += share + 10
    return parks, next_id


def _phase(name: str, sites: list[str], gates_each: int, rate: float, seconds: float, quick: bool) -> dict:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from protocol import topics
    from protocol.ids import new_event_id
    from protocol.messages import GateCounts, PassageEvent, ZoneTally, encode

    work = workdir(f"headoffice-{name}")
    central = Central(work)
    try:
        parks, _ = _load(central, sites, gates_each, rate, seconds)
        central.ctx.link.wait_connected(10)
        observer = Lines(central.spawn("tests.bench.live_observer", str(central.config_path), "2",
                                        log_name="observer.log"))
        workers = [central.start_ingest(str(w + 1)) for w in range(1 if quick else 2)]
        probe = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:6]}",
                            protocol=mqtt.MQTTv5)
        probe.connect("127.0.0.1", central.broker.port)
        probe.loop_start()

        def probe_event() -> bytes:
            return encode(PassageEvent(id=new_event_id(), site=SITE, gate="probe", zone=2, at=datetime.now(UTC),
                                       direction="in", credential_kind="none", passed=True, mode="free"))

        deadline = time.monotonic() + 90
        while not central.sql("SELECT 1 FROM passage_events LIMIT 1"):
            if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                raise RuntimeError(f"the ingest worker did not store an event (logs in {work})")
            probe.publish(topics.event(SITE, "probe"), probe_event(), qos=1)
            time.sleep(1)
        if not observer.ready.wait(60):
            raise RuntimeError("the live observer did not start (see observer.log)")
        via = observer.last("ready")["via"]
        warm = central.sql("SELECT count(*) FROM passage_events")[0][0]

        # The parks dealt to the publisher processes in turn (each gate one MQTT connection).
        procs = min(PUBLISHERS, len(parks)) if len(parks) > 1 else 1
        dealt: list[list[dict]] = [[] for _ in range(procs)]
        if len(parks) == 1:  # one park's 1,000 gates: its gates split over the processes, its tickets too
            park, each = parks[0], parks[0]["gates"] // PUBLISHERS
            procs = PUBLISHERS
            share = int(rate * seconds * 0.9) // PUBLISHERS
            dealt = [[{**park, "gates": each, "ticket": park["ticket"] + i * share, "offset": i * each}]
                     for i in range(procs)]
        else:
            for i, park in enumerate(parks):
                dealt[i % procs].append(park)
        pubs = [Lines(central.spawn("tests.bench.publisher_process", str(central.broker.port), "0", "0",
                                    str(rate / procs), str(seconds), "0", "parks=" + json.dumps(d),
                                    log_name=f"pub{i}.log")) for i, d in enumerate(dealt)]
        for p in pubs:
            if not p.ready.wait(120):
                raise RuntimeError(f"a publisher did not connect its gates (see {work}/pub*.log)")
        tz = ZoneInfo("UTC")
        probes: list[float] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            probes.append(time.monotonic())
            probe.publish(topics.event(SITE, "probe"), probe_event(), qos=1)
            probe.publish(topics.counts(SITE, "probe"), encode(GateCounts(
                site=SITE, gate="probe", day=datetime.now(tz).date(), at=datetime.now(UTC),
                zones=[ZoneTally(zone=2, entries=len(probes) + warm)])), qos=1, retain=True)
            time.sleep(0.25)
        for p in pubs:
            p.proc.wait(seconds + 240)
        time.sleep(0.2)
        first = min(p.last("start")["start"] for p in pubs)
        reports = [p.last("sent") for p in pubs]
        if None in reports:
            raise RuntimeError(f"a publisher process did not report (see {work}/pub*.log)")
        sent, acked = sum(r["sent"] for r in reports), sum(r["acked"] for r in reports)

        def stored() -> int:
            return central.sql("SELECT count(*) FROM passage_events WHERE gate <> 'probe'")[0][0]

        count, moved_at = stored(), time.monotonic()
        drain_deadline = time.monotonic() + (60 if quick else 600)
        while count < acked and time.monotonic() < drain_deadline and time.monotonic() - moved_at < 30:
            time.sleep(0.5)
            now_count = stored()
            if now_count != count:
                count, moved_at = now_count, time.monotonic()
        time.sleep(2)
        changes = [(d["t"], d["entries"]) for d in observer.lines if "entries" in d]
        lags = []
        for k, t_pub in enumerate(probes, start=1):
            seen = next((t for t, n in changes if n >= k + warm and t >= t_pub - 0.001), None)
            lags.append((seen if seen is not None else time.monotonic()) - t_pub)
        parks_counted = central.sql("SELECT count(DISTINCT site_id) FROM passage_events")[0][0]
        for w in workers:
            central.stop_process(w)
        central.stop_process(observer.proc)
        probe.disconnect()
        probe.loop_stop()
        return {"events_per_s": round(count / (moved_at - first)), "lost": acked - count, "sent": sent,
                "unacked": sent - acked, "lag_p99_ms": round(percentile(lags, 99) * 1000, 1), "via": via,
                "gates": sum(p["gates"] for p in parks), "parks": len(parks), "parks_counted": parks_counted}
    finally:
        central.close()


def run(quick: bool) -> Section:
    parks, gates_each, rate, seconds = QUICK if quick else (PARKS, GATES_PER_PARK, RATE, SECONDS)
    if os.environ.get("BENCH_HEADOFFICE_PARKS"):  # a shorter look, e.g. for a profile
        parks = int(os.environ["BENCH_HEADOFFICE_PARKS"])
    seconds = float(os.environ.get("BENCH_HEADOFFICE_SECONDS", seconds))
    section = Section("headoffice")
    f = section.figures
    many = _phase("parks", _park_sites(parks), gates_each, rate, seconds, quick)
    one = _phase("one", [SITE], parks * gates_each, rate, seconds, quick)
    f.update({"headoffice_parks": many["parks"], "headoffice_gates": many["gates"],
              "headoffice_offered_per_s": rate, "headoffice_events_per_s": many["events_per_s"],
              "headoffice_count_lag_p99_ms": many["lag_p99_ms"], "headoffice_lost_events": many["lost"],
              "headoffice_parks_counted": many["parks_counted"],
              "headoffice_one_park_events_per_s": one["events_per_s"],
              "headoffice_one_park_count_lag_p99_ms": one["lag_p99_ms"],
              "headoffice_one_park_lost_events": one["lost"]})
    section.bars += [Bar("headoffice_lost_events", 0), Bar("headoffice_one_park_lost_events", 0),
                     Bar("headoffice_count_lag_p99_ms", 1000, note=f"(the probe park, via {many['via']})")]
    section.notes.append(f"{many['parks']} parks x {gates_each} gates = {many['gates']} MQTT connections, offered "
                         f"{rate:,}/s for {seconds} s; beside it one park with the same {one['gates']} gates")
    if many["unacked"] or one["unacked"]:
        section.notes.append(f"the broker did not acknowledge {many['unacked']} + {one['unacked']} publishes "
                             "(the publishers' side)")
    return section
