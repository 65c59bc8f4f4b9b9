"""The ingest's own work with and without its metrics, in a process of its own (the metrics' mode is
fixed when a process starts): prints {"with_per_s", "without_per_s", "batches", "mode"} as JSON.

    python -m tests.bench.metrics_ingest_process CONFIG BATCHES [multiprocess_dir]

The timed call is `IngestWorker._store` on a batch of 500 gate messages already decoded (the
transaction: events, usage, counts; then the metrics of the committed batch). "without" swaps the
worker's `count_batch` for nothing; batches alternate, so both see the same machine and database.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime


class _Message:
    """What the worker reads of a paho message: topic, payload, retain (the transport is not timed)."""

    __slots__ = ("payload", "retain", "topic")

    def __init__(self, topic: str, payload: bytes) -> None:
        self.topic, self.payload, self.retain = topic, payload, False


def _skip(*_args, **_kwargs) -> None:
    """count_batch, measured away."""


def main(argv: list[str]) -> int:
    config_path, batches = argv[0], int(argv[1])
    if len(argv) > 2:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = argv[2]
        os.makedirs(argv[2], exist_ok=True)
    from central import metrics
    from central.bus import ingest_worker
    from central.config import load_config
    from central.context import CentralContext
    from protocol import topics
    from protocol.ids import new_event_id
    from protocol.messages import PassageEvent, encode

    config = load_config(config_path, env={})
    ctx = CentralContext.create(config, mqtt=False)
    worker = ingest_worker.IngestWorker(config, ctx.sessions, worker_id=f"m{uuid.uuid4().hex[:6]}")
    real = metrics.count_batch

    def batch(n: int) -> list:
        items = []
        for i in range(500):
            gate = f"bg{(n * 500 + i) % 20:03d}"
            refused = i % 10 == 0
            event = PassageEvent(id=new_event_id(), site="benchpark", gate=gate, zone=1, at=datetime.now(UTC),
                                 direction="out" if i % 10 == 1 else "in", credential_kind="none",
                                 decision="refused" if refused else "granted",
                                 reason="gate_locked" if refused else "free_passage", passed=not refused, mode="free")
            items.append(worker._classify(_Message(topics.event("benchpark", gate), encode(event))))
        return items

    timed = {"with": 0.0, "without": 0.0}
    counted = {"with": 0, "without": 0}
    for n in range(batches + 2):
        items = batch(n)
        mode = "with" if n % 2 == 0 else "without"
        ingest_worker.metrics.count_batch = real if mode == "with" else _skip  # type: ignore[attr-defined]
        started = time.perf_counter()
        worker._store(items, [])
        if n >= 2:  # the first two warm the caches and the database
            timed[mode] += time.perf_counter() - started
            counted[mode] += len(items)
    ingest_worker.metrics.count_batch = real  # type: ignore[attr-defined]
    # The metrics' own cost on a batch, alone: what "with" adds, without the database's noise.
    events = [i.message for i in batch(0)]
    started = time.perf_counter()
    for _ in range(50):
        real(events, stored=500, duplicates=0, conflicts=0, flagged=0, parked=0, committed_at=time.time(), batch_s=0.01)
    alone = (time.perf_counter() - started) / 50
    ctx.close()
    print(json.dumps({"with_per_s": counted["with"] / timed["with"],
                      "without_per_s": counted["without"] / timed["without"], "metrics_per_batch_s": alone,
                      "store_per_batch_s": timed["without"] / (counted["without"] / 500), "batches": batches,
                      "mode": "multiprocess" if len(argv) > 2 else "single"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
