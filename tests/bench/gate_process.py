"""A gate agent process as it runs at the turnstile: its store (a million tickets) and the face index
loaded from the store's templates; prints its peak resident memory as JSON.

    python -m tests.bench.gate_process STORE_PATH [DECISIONS]

Run by bench_gate in a fresh interpreter, so the peak is the agent's and not the benchmark's.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    store_path = Path(argv[0])
    decisions = int(argv[1]) if len(argv) > 1 else 200
    from biometrics.face import FaceTemplate
    from gate_agent.agent import GateAgent
    from gate_agent.config import from_dict
    from gate_agent.decider import Attempt
    from tests.bench.common import percentile, process_rss_mb
    from tests.bench.gatekit import SITE, OpenPoint, SilentDisplay, card_uid, decide_until_open

    t0 = time.perf_counter()
    cfg = from_dict({"gate": {"id": "g1", "site": SITE}, "broker": {"port": 1}, "store": {"path": str(store_path)},
                     "devices": {"turnstile": {"tcp": "127.0.0.1:1"}}})
    agent = GateAgent(cfg, display=SilentDisplay())  # loads the saved config
    index = agent.load_faces(force=True)  # the agent's own loader: every face template in the store
    agent.arm.control = OpenPoint()
    load_s = time.perf_counter() - t0
    counts = agent.store.counts()
    passes = counts["passes"]
    rng = random.Random(5)
    face_ms = []
    for _ in range(decisions):
        i = rng.randint(1, passes)
        decide_until_open(agent, Attempt("annual_pass", card_uid(i)))
        row = index._matrix[index._rows[f"H{i}"][0]]
        probe = FaceTemplate(row + 0.005)
        face_ms.append(decide_until_open(agent, Attempt("face", probe)) * 1000)
    print(json.dumps({"rss_mb": process_rss_mb(__import__("os").getpid()), "load_s": load_s,
                      "tickets": counts["tickets"], "templates": len(index),
                      "face_decide_p99_ms": percentile(face_ms, 99)}))
    agent.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
