"""Many gate agents in one process, each with its own store and MQTT link (GateAgent's own Link and
delta handling), for the revocation-reach benchmark; prints one JSON line per delta applied.

    python -m tests.bench.gate_fleet PORT FIRST COUNT WORKDIR SEQ

Each store starts as if its snapshot was applied at SEQ, so the next Delta applies directly.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    port, first, count, work, seq = int(argv[0]), int(argv[1]), int(argv[2]), Path(argv[3]), int(argv[4])
    from gate_agent.agent import GateAgent
    from gate_agent.config import from_dict
    from gate_agent.store import Store
    from tests.bench.gatekit import SITE, SilentDisplay

    lock = threading.Lock()
    agents = []
    for i in range(first, first + count):
        name = f"fleet{i:03d}"
        path = work / name / "gate.db"
        store = Store(path)
        store.set_meta("snapshot_id", "bench")
        store.set_meta("delta_seq", str(seq))
        cfg = from_dict({"gate": {"id": name, "site": SITE, "heartbeat_s": 3600}, "broker": {"port": port},
                         "store": {"path": str(path)}})
        agent = GateAgent(cfg, display=SilentDisplay(), store=store)
        original = store.apply_delta

        def applied(delta, original=original, name=name):
            original(delta)
            t = time.monotonic()
            with lock:
                print(json.dumps({"gate": name, "seq": delta.seq, "t": t}), flush=True)

        store.apply_delta = applied  # the agent calls its store's apply_delta: note when it returns
        agent.link.start()
        agents.append(agent)
    for agent in agents:
        agent.link.wait_connected(30)
    time.sleep(1.0)  # subscriptions acknowledged
    print(json.dumps({"ready": True, "gates": sum(a.link.connected for a in agents)}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    for agent in agents:
        agent.link.stop()
        agent.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
