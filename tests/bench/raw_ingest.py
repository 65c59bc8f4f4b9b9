"""The raw limit of ingest: one plain paho subscriber and psycopg COPY of the same rows into a plain
table, on the same broker and database, with none of the central's logic.

    python -m tests.bench.raw_ingest PORT DB_URL SECONDS_IDLE

Prints {"rows", "first", "last"} (monotonic times of the first message and the last commit) once no
message came for SECONDS_IDLE seconds after the first.
"""

from __future__ import annotations

import json
import queue
import sys
import time
import uuid

import msgspec
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

COLS = ("event_id", "site_id", "gate", "zone", "at", "direction", "credential_kind", "credential_ref", "decision",
        "reason", "passed", "headcount", "offline", "mode", "ticket_type", "received_at")
TABLE = ("CREATE TABLE IF NOT EXISTS raw_events (event_id text, site_id text, gate text, zone int, "
         "at timestamptz, direction text, credential_kind text, credential_ref text, decision text, reason text, "
         "passed boolean, headcount int, offline boolean, mode text, ticket_type int, received_at timestamptz)")


def main(argv: list[str]) -> int:
    port, db_url, idle = int(argv[0]), argv[1], float(argv[2])
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    conn = psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://"))
    conn.execute(TABLE)
    conn.commit()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"raw-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    client.on_message = lambda _c, _u, msg: inbox.put(msg.payload)
    client.on_connect = lambda c, *_a: c.subscribe("gates/v1/+/gate/+/event", 1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    print(json.dumps({"ready": True}), flush=True)
    rows = 0
    first = last = None
    last_msg = time.monotonic()
    decoder = msgspec.json.Decoder()
    while True:
        batch = []
        deadline = time.monotonic() + 0.05
        while len(batch) < 500:
            try:
                batch.append(inbox.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        now = time.monotonic()
        if not batch:
            if first is not None and now - last_msg > idle:
                break
            continue
        last_msg = now
        first = first or now
        received = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with conn.cursor().copy(f"COPY raw_events ({', '.join(COLS)}) FROM STDIN") as copy:
            for payload in batch:
                e = decoder.decode(payload)
                copy.write_row((e["id"], e["site"], e["gate"], e["zone"], e["at"], e["direction"],
                                e["credential_kind"], e.get("credential_ref", ""), e.get("decision", "granted"),
                                e.get("reason", "ok"), e.get("passed", False), e.get("headcount", 1),
                                e.get("offline", False), e.get("mode", "normal"), e.get("ticket_type"), received))
        conn.commit()
        rows += len(batch)
        last = time.monotonic()
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"rows": rows, "first": first, "last": last}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
