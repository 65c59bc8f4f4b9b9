"""A store with a million cached tickets: built in reasonable time, a decision stays fast (measured, printed)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from gate_agent.decider import ActiveConfig, Attempt, Decider
from gate_agent.store import Store
from protocol import messages as m
from protocol.ids import id_number_digest
from tests.gate_agent.conftest import SALT, gate_config_for, ticket

N = 1_000_000
CHUNK = 50_000


@pytest.mark.slow
def test_a_million_cached_tickets_build_and_a_decision_stays_fast(tmp_path, signer):
    store = Store(tmp_path / "big.db")
    at = datetime.now(UTC)
    started = time.perf_counter()
    for index in range(N // CHUNK):
        changes = [m.TicketChange(ticket_id=i, ticket_type=1, status="revoked" if i % 10 == 0 else "valid",
                                  valid_from=at - timedelta(hours=1), valid_to=at + timedelta(hours=8),
                                  id_digest=f"{i:032x}" if i % 2 else None)
                   for i in range(index * CHUNK, (index + 1) * CHUNK)]
        store.snapshot_chunk(m.SnapshotChunk(site="s", gate="g", snapshot_id="big", index=index,
                                             last=index == N // CHUNK - 1, seq=1, changes=changes))
    built = time.perf_counter() - started
    assert store.counts()["tickets"] == N

    booked = id_number_digest(SALT, "11010519491231002X")
    store.apply_delta(m.Delta(site="s", seq=2, at=at, changes=[m.TicketChange(
        ticket_id=N + 1, ticket_type=1, valid_from=at - timedelta(hours=1), valid_to=at + timedelta(hours=8),
        id_digest=booked)]))
    active = ActiveConfig(gate_config_for(signer, "s", "g"), b"")
    decider = Decider(store)
    codes = [ticket(signer, i * 7919 % N) for i in range(200)]
    rounds = 2000
    timings: dict[str, float] = {}
    for name, attempt in (("qr", lambda i: Attempt("qr", codes[i % 200])),
                          ("id_card", lambda i: Attempt("id_card", "11010519491231002X")),
                          ("annual_pass (unknown card)", lambda i: Attempt("annual_pass", f"{i:08X}"))):
        t0 = time.perf_counter()
        for i in range(rounds):
            decider.decide(attempt(i), active, now=at, mode="normal")
        timings[name] = (time.perf_counter() - t0) / rounds * 1000
    assert decider.decide(Attempt("qr", ticket(signer, 10)), active, now=at, mode="normal").verdict.reason == "revoked"
    assert decider.decide(Attempt("id_card", "11010519491231002X"), active, now=at, mode="normal").verdict.granted
    size_mb = store.path.stat().st_size / 1e6
    print(f"\n{N:,} tickets: built in {built:.1f} s, file {size_mb:.0f} MB; mean decision: "
          + ", ".join(f"{k} {v:.3f} ms" for k, v in timings.items()))
    store.close()


def test_every_credential_lookup_uses_an_index_not_a_scan_of_the_cache(tmp_path):
    """Lookups stay fast at any cache size only if SQLite can use an index for each of them."""
    store = Store(tmp_path / "plan.db")
    at = datetime.now(UTC)
    store.apply_delta(m.Delta(site="s", seq=1, at=at, changes=[
        m.PassChange(pass_id=i, holder_id=f"H{i}", card_uid=f"{i:08X}") for i in range(1, 200)]))
    store.db.execute("ANALYZE")
    traced: list[str] = []
    store.db.set_trace_callback(traced.append)
    assert store.pass_by_uid("0000000A").pass_id == 10
    store.tickets_by_digest("0" * 32)
    store.ticket(5)
    store.db.set_trace_callback(None)
    for sql in traced:
        if sql.lstrip().upper().startswith("SELECT"):
            steps = [str(row[-1]) for row in store.db.execute(f"EXPLAIN QUERY PLAN {sql}")]
            assert not [s for s in steps if s.startswith("SCAN") and "INDEX" not in s], (sql, steps)
    store.close()


def test_a_note_written_without_fsync_leaves_the_store_durable_for_everything_else(tmp_path):
    store = Store(tmp_path / "sync.db")
    store.set_meta("pending_passage", "{}", fsync=False)
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again for the outbox
    assert store.meta("pending_passage") == "{}"
    store.close()
