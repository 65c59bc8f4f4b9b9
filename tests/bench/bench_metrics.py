"""What the metrics cost: the gate's decision and the central's ingest, each with and without them.

    gate     `GateAgent._decide_and_act` to the open command (as bench_gate), with the agent's decision
             histogram and counters, and with them swapped for nothing; decisions alternate
    ingest   `IngestWorker._store` on batches of 500 events (tests.bench.metrics_ingest_process), with the
             batch's metrics and without, alternating; in single-process and in multiprocess mode (several
             ingest workers: every value in a file of the process's own)

Bars: each overhead at most 5 %. The overheads are medians of paired samples, so machine noise makes
them wander by a few percent either way; the metrics' own cost per decision and per batch is given too.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time

from tests.bench.common import Bar, Section, median
from tests.bench.gatekit import Site, decide_until_open, fill_store, make_agent


class _Nothing:
    def observe(self, _value: float) -> None:
        pass

    def inc(self, _n: float = 1) -> None:
        pass


def _gate(section: Section, quick: bool) -> None:
    from gate_agent.decider import Attempt
    from tests.bench.bench_gate import workdir

    tickets, rounds = (20_000, 2_000) if quick else (200_000, 10_000)
    work = workdir("metrics-gate")
    try:
        site = Site()
        agent = make_agent(work / "gate.db", site)
        fill_store(agent.store, site, tickets, 100, 0)
        rng = random.Random(5)
        codes = [site.code(i) for i in rng.sample(range(1, tickets + 1), min(rounds, tickets))]
        real = (agent.metrics.decision, agent.metrics.granted, agent.metrics.refused)
        nothing = _Nothing()
        for code in codes[:100]:
            decide_until_open(agent, Attempt("qr", code))
        with_m, without = [], []
        for k, code in enumerate(codes):
            on = k % 2 == 0
            agent.metrics.decision, agent.metrics.granted, agent.metrics.refused = real if on else (nothing,) * 3
            (with_m if on else without).append(decide_until_open(agent, Attempt("qr", code)))
        agent.metrics.decision, agent.metrics.granted, agent.metrics.refused = real
        started = time.perf_counter()
        for _ in range(10_000):
            real[0].observe(0.0001)
            real[1].inc()
        alone_us = (time.perf_counter() - started) / 10_000 * 1e6
        agent.store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    f = section.figures
    f["metrics_gate_decide_with_p50_us"] = round(median(with_m) * 1e6, 1)
    f["metrics_gate_decide_without_p50_us"] = round(median(without) * 1e6, 1)
    f["metrics_gate_cost_per_decision_us"] = round(alone_us, 2)
    f["metrics_gate_overhead_pct"] = round(100 * (median(with_m) / median(without) - 1), 1)
    f["metrics_gate_cost_pct"] = round(100 * alone_us / (median(without) * 1e6), 2)
    section.bars += [Bar("metrics_gate_overhead_pct", 5, note="(decision p50 with / without metrics)"),
                     Bar("metrics_gate_cost_pct", 5, note="(the metrics' own calls / a decision)")]


def _ingest(section: Section, quick: bool) -> None:
    from tests.bench.centralkit import Central, workdir

    work = workdir("metrics-ingest")
    central = Central(work)
    try:
        central.prepare_site({1: None})
        central.register_gates({f"bg{i:03d}": 1 for i in range(20)})
        batches = 20 if quick else 120
        for mode, extra in (("single", []), ("multiprocess", [str(work / "metrics")])):
            out = subprocess.run([sys.executable, "-m", "tests.bench.metrics_ingest_process", str(central.config_path),
                                  str(batches), *extra], capture_output=True, text=True, timeout=900)
            if out.returncode != 0:
                raise RuntimeError(f"metrics ingest process failed: {out.stderr[-2000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            f = section.figures
            f[f"metrics_ingest_{mode}_with_per_s"] = round(result["with_per_s"])
            f[f"metrics_ingest_{mode}_without_per_s"] = round(result["without_per_s"])
            lost = 1 - result["with_per_s"] / result["without_per_s"]
            f[f"metrics_ingest_{mode}_overhead_pct"] = round(100 * lost, 1)
            f[f"metrics_ingest_{mode}_cost_pct"] = round(100 * result["metrics_per_batch_s"]
                                                         / result["store_per_batch_s"], 2)
            section.bars += [Bar(f"metrics_ingest_{mode}_overhead_pct", 5, note="(events/s lost to the metrics)"),
                             Bar(f"metrics_ingest_{mode}_cost_pct", 5, note="(a batch's metrics / its transaction)")]
        section.notes.append(f"ingest: {batches} batches of 500 events per mode, alternating with and without")
    finally:
        central.close()
        shutil.rmtree(work, ignore_errors=True)


def run(quick: bool) -> Section:
    section = Section("metrics")
    _gate(section, quick)
    _ingest(section, quick)
    return section
