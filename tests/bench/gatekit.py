"""Building blocks for the gate benchmarks: a gate store filled the way a snapshot fills it, the
GateConfig the central would send, and a GateAgent whose turnstile only marks the moment it is told
to open.

Everything here drives the gate agent's own code (Store.snapshot_chunk, GateAgent.apply_config,
GateAgent._decide_and_act); nothing re-implements a decision.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from protocol import messages as m
from protocol.ids import id_number_digest
from protocol.ticket_code import TicketClaims, TicketSigner, generate_signing_seed

SITE = "benchpark"
TICKET_TYPE = 1
CHUNK = 20_000


def id_number(i: int) -> str:
    """A made-up 18-character national ID number for ticket `i` (never a real person's)."""
    return f"9{i:016d}X"


def card_uid(i: int) -> str:
    return f"{0xB0000000 + i:08X}"


class Site:
    """The site's secrets as the central holds them: signing seed, ID salt."""

    def __init__(self) -> None:
        self.seed = generate_signing_seed()
        self.signer = TicketSigner.from_seed(1, self.seed)
        self.salt = os.urandom(16)
        self.now = datetime.now(UTC).replace(second=0, microsecond=0)
        self.valid_from = self.now - timedelta(hours=2)
        self.valid_to = self.now + timedelta(hours=22)

    def gate_config(self, gate: str, version: int = 1) -> m.GateConfig:
        return m.GateConfig(
            version=version, site=SITE, gate=gate, zone=1, direction="both", mode="normal", timezone="UTC",
            pass_biometric="none", id_salt=self.salt,
            keys=[m.PublicKeyInfo(key_id=1, public=self.signer.public_key_bytes())],
            ticket_types=[m.TicketTypeRules(id=TICKET_TYPE, name="day", entries=1)],
        )

    def code(self, ticket_id: int) -> str:
        return self.signer.sign(TicketClaims(ticket_id=ticket_id, ticket_type=TICKET_TYPE, valid_from=self.valid_from,
                                             valid_to=self.valid_to))

    def ticket_change(self, i: int) -> m.TicketChange:
        return m.TicketChange(ticket_id=i, ticket_type=TICKET_TYPE, valid_from=self.valid_from,
                              valid_to=self.valid_to, id_digest=id_number_digest(self.salt, id_number(i)))


def changes(site: Site, tickets: int, passes: int, faces: int):
    """Every change of a full snapshot: tickets 1..n (real-name), passes 1..p (card bound), face templates."""
    for i in range(1, tickets + 1):
        yield site.ticket_change(i)
    for i in range(1, passes + 1):
        yield m.PassChange(pass_id=i, holder_id=f"H{i}", card_uid=card_uid(i), valid_from=site.valid_from,
                           valid_to=site.valid_to)
    rng = np.random.default_rng(11)
    for start in range(0, faces, 10_000):
        block = rng.standard_normal((min(10_000, faces - start), 128)).astype("<f4")
        block /= np.linalg.norm(block, axis=1, keepdims=True) * 2  # face_recognition vectors have norm ~0.5
        for j, row in enumerate(block):
            yield m.TemplateChange(holder_id=f"H{start + j + 1}", kind="face", data=row.tobytes())


def fill_store(store, site: Site, tickets: int, passes: int, faces: int) -> float:
    """Apply a full snapshot to `store` chunk by chunk, as the agent does; returns the seconds taken."""
    started = time.perf_counter()
    part: list = []
    index = 0
    for change in changes(site, tickets, passes, faces):
        part.append(change)
        if len(part) == CHUNK:
            store.snapshot_chunk(m.SnapshotChunk(site=SITE, gate="g", snapshot_id="bench", index=index, last=False,
                                                 seq=1, changes=part))
            part, index = [], index + 1
    store.snapshot_chunk(m.SnapshotChunk(site=SITE, gate="g", snapshot_id="bench", index=index, last=True, seq=1,
                                         changes=part))
    return time.perf_counter() - started


class Opened(Exception):
    """Raised by the bench turnstile: the agent asked it to open; the decision is over."""


class OpenPoint:
    """Stands in for TurnstileControl: notes when the agent commands the open, then stops the passage."""

    port = "bench"
    healthy = True
    modulus = 65536

    def __init__(self) -> None:
        self.opened_at = 0.0
        self.opens = 0

    def set_mode(self, mode: str) -> None:
        pass

    def alarms(self) -> frozenset:
        return frozenset()

    def counters(self) -> dict[str, int]:
        # A real controller answers this over Modbus (a round trip the agent makes before opening);
        # that round trip is the controller's cost and is not in the figure.
        return {"in": 0, "out": 0}

    def pass_once(self, direction: str, timeout: float, opened=None):
        self.opened_at = time.perf_counter()
        self.opens += 1
        raise Opened

    def close(self) -> None:
        pass


class SilentDisplay:
    """The display and voice are called on the decision path; a real panel write is the driver's cost."""

    def show(self, text: str, colour: str, reason: str = "") -> None:
        pass

    def speak(self, text: str) -> None:
        pass


def make_agent(store_path: Path, site: Site, gate: str = "g1", broker_port: int = 1):
    """A GateAgent on `store_path` with the site's config applied and the bench turnstile fitted."""
    from gate_agent.agent import GateAgent
    from gate_agent.config import from_dict

    cfg = from_dict({
        "gate": {"id": gate, "site": SITE},
        "broker": {"host": "127.0.0.1", "port": broker_port},
        "store": {"path": str(store_path)},
        "devices": {"turnstile": {"tcp": "127.0.0.1:1"}},
    })
    agent = GateAgent(cfg, display=SilentDisplay())
    ack = agent.apply_config(m.encode(site.gate_config(gate)))
    if not ack.applied:
        raise RuntimeError(f"bench gate config refused: {ack.error}")
    agent.arm.control = OpenPoint()  # the arm's controller: opening raises Opened (the timing's end)
    return agent


def decide_until_open(agent, attempt) -> float:
    """Seconds from the credential's arrival to the open command (or to a refusal, which raises)."""
    point: OpenPoint = agent.arm.control
    t0 = time.perf_counter()
    try:
        handled = agent._decide_and_act(attempt)
    except Opened:
        opened = point.opened_at - t0
        # After a passage the agent clears its "passage under way" note in the same transaction as the
        # event; the bench stops before, so clear it here, outside the timing.
        from gate_agent.passages import PENDING_PASSAGE

        agent.store.set_meta(PENDING_PASSAGE, None)
        return opened
    raise RuntimeError(f"no open: {attempt.kind} attempt refused ({handled.reason})")
