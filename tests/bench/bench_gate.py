"""Gate decisions with a million tickets in the store, from the credential to the open command, beside
the bare Ed25519 verification of the same codes; and the memory of a gate agent process.

The timed call is the agent's own `GateAgent._decide_and_act` (mode, decider, store look-ups, the
shared rules, the display) up to the turnstile's `pass_once`, which the bench turnstile answers by
noting the time. A grant writes nothing before the arm opens (usage and outbox are written after the
passage), so nothing is left out. The hand-off from a reader thread to the decision worker (one
queue put/get) is not in the figure.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.bench.common import Bar, Section, median, percentile
from tests.bench.gatekit import Site, card_uid, decide_until_open, fill_store, id_number, make_agent

ROOT = Path(__file__).resolve().parents[2]


def workdir(name: str) -> Path:
    path = ROOT / "var" / "bench" / "tmp" / f"{name}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _bare_verifier(site: Site):
    from protocol.ticket_code import _BODY, _CONTEXT

    public = Ed25519PublicKey.from_public_bytes(site.signer.public_key_bytes())

    def split(code: str) -> tuple[bytes, bytes]:
        raw = base64.b32decode(code + "=" * (-len(code) % 8))
        return _CONTEXT + raw[:_BODY.size], raw[_BODY.size:]

    return public, split


def run(quick: bool) -> Section:
    from gate_agent.decider import Attempt

    section = Section("gate")
    tickets, passes, faces = (50_000, 5_000, 5_000) if quick else (1_000_000, 100_000, 100_000)
    rounds = 500 if quick else 3_000
    work = workdir("gate")
    try:
        site = Site()
        agent = make_agent(work / "gate.db", site)
        fill_s = fill_store(agent.store, site, tickets, passes, faces)
        section.figures["gate_store_tickets"] = tickets
        section.figures["gate_store_fill_s"] = round(fill_s, 1)

        rng = random.Random(3)
        ids = rng.sample(range(1, tickets + 1), rounds)
        codes = [site.code(i) for i in ids]
        public, split = _bare_verifier(site)
        keyring = agent.active.keyring
        bare, ring, qr = [], [], []
        gc.collect()
        # Warm-up: first look-ups page the store in, as they would after the gate has run a minute.
        for code in codes[:50]:
            decide_until_open(agent, Attempt("qr", code))
        for code in codes:  # interleaved: every figure sees the same moment of machine noise
            signed, signature = split(code)
            t = time.perf_counter()
            public.verify(signature, signed)
            bare.append(time.perf_counter() - t)
            t = time.perf_counter()
            keyring.verify(code)
            ring.append(time.perf_counter() - t)
            qr.append(decide_until_open(agent, Attempt("qr", code)))
        us = 1e6
        f = section.figures
        f["gate_qr_decide_p50_us"] = round(median(qr) * us, 1)
        f["gate_qr_decide_p99_us"] = round(percentile(qr, 99) * us, 1)
        f["gate_qr_verify_bare_p50_us"] = round(median(bare) * us, 1)
        f["gate_qr_verify_bare_p99_us"] = round(percentile(bare, 99) * us, 1)
        f["gate_qr_verify_keyring_p99_us"] = round(percentile(ring, 99) * us, 1)
        f["gate_qr_decide_vs_bare_p99"] = round(percentile(qr, 99) / percentile(bare, 99), 2)
        f["gate_qr_decide_vs_bare_p50"] = round(median(qr) / median(bare), 2)
        section.bars += [Bar("gate_qr_decide_p99_us", 1000), Bar("gate_qr_decide_vs_bare_p99", 3,
                                                                   note="(x the bare Ed25519 verify, p99)")]

        id_times, rfid_times = [], []
        people = rng.sample(range(1, tickets + 1), rounds)
        cards = [rng.randint(1, passes) for _ in range(rounds)]
        for person, card in zip(people, cards, strict=True):
            id_times.append(decide_until_open(agent, Attempt("id_card", id_number(person))))
            rfid_times.append(decide_until_open(agent, Attempt("annual_pass", card_uid(card))))
        f["gate_id_decide_p50_us"] = round(median(id_times) * us, 1)
        f["gate_id_decide_p99_us"] = round(percentile(id_times, 99) * us, 1)
        f["gate_rfid_decide_p50_us"] = round(median(rfid_times) * us, 1)
        f["gate_rfid_decide_p99_us"] = round(percentile(rfid_times, 99) * us, 1)
        section.bars += [Bar("gate_id_decide_p99_us", 1000), Bar("gate_rfid_decide_p99_us", 1000)]
        section.notes.append(f"{rounds} decisions per credential, {tickets:,} tickets, {passes:,} passes in the "
                             "store; RFID with pass_biometric = none (the face step is face_*)")
        agent.store.close()

        # A fresh process holding the same store and the face index loaded from it: its peak memory.
        out = subprocess.run([sys.executable, "-m", "tests.bench.gate_process", str(work / "gate.db"),
                              "50" if quick else "300"], cwd=ROOT, capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            raise RuntimeError(f"gate process failed: {out.stderr[-2000:]}")
        proc = json.loads(out.stdout.strip().splitlines()[-1])
        f["gate_rss_mb"] = round(proc["rss_mb"], 1)
        f["gate_rss_templates"] = proc["templates"]
        f["gate_face_index_load_s"] = round(proc["load_s"], 2)
        f["gate_face_decide_p99_ms"] = round(proc["face_decide_p99_ms"], 2)
        section.bars.append(Bar("gate_rss_mb", 250, note=f"({proc['tickets']:,} tickets, {proc['templates']:,} faces)"))
        section.notes.append("gate_face_decide: face-only entry, 1:N among the store's templates to the open command")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return section
