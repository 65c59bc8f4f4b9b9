"""Simulated gates: N MQTT connections in one process publishing PassageEvents at QoS 1 at a steady
rate; prints {"sent", "acked", "seconds", "rate"} as JSON when done.

    python -m tests.bench.publisher_process PORT FIRST_GATE GATES RATE SECONDS TICKET_BASE [flat]
    python -m tests.bench.publisher_process PORT 0 0 RATE SECONDS 0 parks=JSON

Each event is a passage like a gate's: 80 % confirmed entries on a fresh single-entry ticket
(`T<n>`, n from TICKET_BASE up), 10 % exits, 10 % refusals. `flat` publishes as fast as it can.
`parks=[{"site", "type", "ticket", "gates", "refused"}, ...]`: the gates g00.. of several parks (a head
office's load), each park's entries on its own tickets from `ticket` up, of its ticket type; its refusals
name the ticket `refused`.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol import topics
from protocol.ids import new_event_id
from protocol.messages import PassageEvent, encode

SITE = "benchpark"


def main(argv: list[str]) -> int:
    port, first, gates, rate, seconds, ticket = (int(argv[0]), int(argv[1]), int(argv[2]), float(argv[3]),
                                                 float(argv[4]), int(argv[5]))
    flat = len(argv) > 6 and argv[6] == "flat"
    parks = json.loads(argv[6].split("=", 1)[1]) if len(argv) > 6 and argv[6].startswith("parks=") else \
        [{"site": SITE, "type": 1, "ticket": ticket, "gates": gates, "first": first}]
    acked = 0
    lock = threading.Lock()

    def on_publish(_c, _u, _mid, _rc, _p):
        nonlocal acked
        with lock:
            acked += 1

    clients = []
    for park in parks:
        prefix = "bg" if park["site"] == SITE and "first" in park else "g"
        for i in range(park["gates"]):
            name = f"bg{park['first'] + i:03d}" if prefix == "bg" else f"g{park.get('offset', 0) + i:02d}"
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{park['site']}-{name}-{uuid.uuid4().hex[:6]}",
                            protocol=mqtt.MQTTv5)
            c.max_inflight_messages_set(1000)
            c.max_queued_messages_set(0)
            c.on_publish = on_publish
            c.connect("127.0.0.1", port)
            c.loop_start()
            clients.append((c, topics.event(park["site"], name), name, park))
    gates = len(clients)
    next_ticket = {p["site"]: p["ticket"] for p in parks}
    time.sleep(0.5)
    sent = 0
    n = 0
    start = time.monotonic()
    print(json.dumps({"start": start}), flush=True)
    while True:
        now = time.monotonic() - start
        if now >= seconds:
            break
        due = int(rate * now) - sent if not flat else 200
        if due <= 0:
            time.sleep(0.002)
            continue
        at = datetime.now(UTC)
        for _ in range(min(due, 2000)):
            client, topic, name, park = clients[n % gates]
            site, kind = park["site"], n % 10
            if kind < 8:
                event = PassageEvent(id=new_event_id(), site=site, gate=name, zone=1, at=at, direction="in",
                                     credential_kind="qr", credential_ref=f"T{next_ticket[site]}", passed=True,
                                     ticket_type=park["type"])
                next_ticket[site] += 1
            elif kind == 8:
                event = PassageEvent(id=new_event_id(), site=site, gate=name, zone=1, at=at, direction="out",
                                     credential_kind="qr", passed=True)
            else:
                event = PassageEvent(id=new_event_id(), site=site, gate=name, zone=1, at=at, direction="in",
                                     credential_kind="qr", credential_ref=park.get("refused", "T1"),
                                     decision="refused", reason="used_up", ticket_type=park["type"])
            client.publish(topic, encode(event), qos=1)
            sent += 1
            n += 1
    publish_s = time.monotonic() - start
    deadline = time.monotonic() + 120
    while acked < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    for c, *_ in clients:
        c.disconnect()
        c.loop_stop()
    print(json.dumps({"sent": sent, "acked": acked, "seconds": publish_s, "rate": sent / publish_s}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
