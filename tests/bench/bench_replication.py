"""A park server and its head office: what the replication's capture costs the park's ingest, and how fast
the park's changes apply at head office.

    three PostgreSQL databases: a plain central, a park server (capture on), its head office
    capture:  the ingest's own service (500-event batches from 20 gates) into the plain central and into
              the park server, in alternating rounds; replication_capture_ratio = park / plain events/s
    ship:     the park's outbox read and applied at head office as the replicator does it (sequence,
              pending, apply; in this process, no broker: the transport is measured by the ingest and
              head-office sections) until head office holds every passage
              replication_apply_changes_per_s, replication_lost_passages (0)
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from tests.bench.common import Bar, Section, median

SITE = "benchpark"
GATES = 20
ROUNDS = 4


def _events(count: int):
    from central.models import utcnow
    from protocol.ids import new_event_id
    from protocol.messages import PassageEvent

    now = utcnow()
    return [PassageEvent(id=new_event_id(), site=SITE, gate=f"g{i % GATES}", zone=1,
                         at=now - timedelta(milliseconds=i), direction="in" if i % 3 else "out",
                         credential_kind="none", passed=True, mode="free") for i in range(count)]


def _server(url: str, tmp, name: str, number: int | None, **repl):
    from central.config import CentralConfig, KeysConfig, MqttConfig, ReplicationConfig
    from central.context import CentralContext
    from central.migrate import upgrade
    from central.services import replication

    replicating = ReplicationConfig(server=name, number=number, **repl) if number else ReplicationConfig()
    config = CentralConfig(database_url=url, site=SITE, mqtt=MqttConfig(host="127.0.0.1", port=1, client_id=name),
                           keys=KeysConfig(signing_key_file=str(tmp / f"{name}.key"), signing_key_id=number or 9),
                           replication=replicating)
    upgrade(url)
    ctx = CentralContext.create(config, mqtt=False)
    if number:
        with ctx.engine.begin() as conn:
            replication.setup(conn, number)
    return config, ctx


def _ingest(ctx, events) -> float:
    from central.services.ingest import ingest_batch

    t0 = time.perf_counter()
    for start in range(0, len(events), 500):
        with ctx.sessions.begin() as db:
            ingest_batch(db, events[start:start + 500])
    return len(events) / (time.perf_counter() - t0)


def run(quick: bool = False) -> Section:
    from sqlalchemy import func, select

    from central.models import PassageEventRecord, ReplicationApplied
    from central.services import replication
    from central.services.gates import ensure_site, ensure_zone, register_gate
    from tests.bench.bench_gate import workdir
    from tests.support.services import create_pg_database, drop_pg_database, pg_admin_url, pg_reachable

    per_round = 2_500 if quick else 25_000
    section = Section("replication")
    admin = pg_admin_url()
    if not pg_reachable(admin):
        raise RuntimeError(f"PostgreSQL not reachable at {admin} (set GATES_TEST_PG)")
    tmp = workdir("replication")
    made = [create_pg_database(admin) for _ in range(3)]
    contexts = []
    try:
        tag = uuid.uuid4().hex[:4]
        _plain_cfg, plain = _server(made[0][0], tmp, f"plain{tag}", None)
        _park_cfg, park = _server(made[1][0], tmp, "park", 2, head_office="ho", sites=(SITE,))
        ho_cfg, ho = _server(made[2][0], tmp, "ho", 1, parks=(f"park:{SITE}",))
        contexts += [plain, park, ho]
        for ctx in (plain, park):
            with ctx.sessions.begin() as db:
                ensure_site(db, SITE, name="Bench Park", timezone="UTC")
                ensure_zone(db, SITE, 1, name="Main", capacity=None)
                for g in range(GATES):
                    register_gate(db, SITE, f"g{g}", 1)
        rates: dict[str, list[float]] = {"plain": [], "capture": []}
        for _ in range(ROUNDS):  # alternating: the machine's drift falls on both alike
            rates["plain"].append(_ingest(plain, _events(per_round)))
            rates["capture"].append(_ingest(park, _events(per_round)))
        plain_rate, capture_rate = median(rates["plain"]), median(rates["capture"])
        section.figures["replication_ingest_plain_events_per_s"] = round(plain_rate)
        section.figures["replication_ingest_capture_events_per_s"] = round(capture_rate)
        section.figures["replication_capture_ratio"] = round(capture_rate / plain_rate, 2)

        shipped, t0 = 0, time.perf_counter()
        while True:
            with park.sessions.begin() as db:
                replication.sequence(db)
            with ho.sessions() as db:
                state = db.get(ReplicationApplied, "park")
                after = state.seq if state else 0
            with park.sessions() as db:
                batch = replication.pending(db, None, after, 2000)
            if batch.upto <= after:
                break
            with ho.sessions.begin() as db:
                replication.apply(db, "park", batch.after, batch.upto, batch.changes, ho_cfg.is_home,
                                  allowed_sites={SITE})
            shipped += len(batch.changes)
        took = time.perf_counter() - t0
        section.figures["replication_apply_changes_per_s"] = round(shipped / took)
        section.figures["replication_changes"] = shipped
        counts = []
        for ctx in (park, ho):
            with ctx.sessions() as db:
                counts.append(db.scalar(select(func.count()).select_from(PassageEventRecord)))
        section.figures["replication_lost_passages"] = counts[0] - counts[1]
        section.bars.append(Bar("replication_lost_passages", 0, note="every passage of the park at head office"))
        section.notes.append(f"{ROUNDS} alternating rounds of {per_round} passages; the transport (MQTT, the "
                             "bridge) is not in these figures")
        return section
    finally:
        for ctx in contexts:
            ctx.close()
        for _, name in made:
            drop_pg_database(admin, name)


__all__ = ["run"]
