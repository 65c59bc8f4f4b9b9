"""What gates learn from the central over the real broker: deltas, snapshots, configs, commands."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select, text

from central.bus.ingest_worker import IngestWorker
from central.models import CommandRecord, Gate, SyncChange
from central.services import sync
from central.services.passes import bind_template, create_pass, create_person
from central.services.tickets import IssueRequest, TicketTypeSpec, define_ticket_type, issue_tickets, revoke_ticket
from protocol import topics
from protocol.ids import id_number_digest
from protocol.messages import (
    CommandAck,
    ConfigAck,
    Delta,
    GateConfig,
    PassChange,
    SnapshotChunk,
    SnapshotRequest,
    TemplateChange,
    TicketChange,
    decode,
    encode,
)
from tests.central.conftest import add_gates
from tests.support.templates import fingerprint_bytes

pytestmark = pytest.mark.mosquitto


def _next_delta(listener) -> Delta:
    return decode(Delta, listener.get().payload)


def test_a_refund_reaches_the_gates_as_a_delta_within_seconds(live_client, live_config, listen):
    listener = listen(topics.deltas(live_config.site))
    type_id = live_client.post("/api/v1/ticket-types", json={"name": "Day"}).get_json()["id"]
    ticket = live_client.post("/api/v1/tickets", json={"ticket_type": type_id}).get_json()
    res = live_client.post(f"/api/v1/tickets/{ticket['id']}/refund", json={"reason": "rain"})
    assert res.status_code == 200 and res.get_json()["status"] == "refunded"
    delta = _next_delta(listener)
    assert delta.site == live_config.site and delta.seq >= 1
    assert delta.changes == [msgspec.structs.replace(delta.changes[0], ticket_id=ticket["id"], status="refunded")]
    # Refunding twice is refused.
    assert live_client.post(f"/api/v1/tickets/{ticket['id']}/refund").status_code == 409


def test_a_real_name_ticket_reaches_gates_under_the_salted_id_digest(live_client, live_ctx, live_config, listen):
    listener = listen(topics.deltas(live_config.site))
    type_id = live_client.post("/api/v1/ticket-types", json={"name": "RN", "real_name": True}).get_json()["id"]
    live_client.post("/api/v1/tickets", json={"ticket_type": type_id, "id_number": "11010519491231002X"})
    change = _next_delta(listener).changes[0]
    with live_ctx.sessions() as db:
        salt = db.execute(text("SELECT id_salt FROM sites WHERE id = :s"), {"s": live_config.site}).scalar_one()
    assert isinstance(change, TicketChange) and change.id_digest == id_number_digest(salt, "11010519491231002x")


def test_a_card_reported_lost_is_announced_with_its_uid_and_a_new_card_replaces_it(live_client, live_config, listen):
    listener = listen(topics.deltas(live_config.site))
    now = datetime.now(UTC)
    created = live_client.post("/api/v1/passes", json={
        "holder_name": "Li Lei", "card_uid": "04:a2:2b:9c", "valid_from": now.isoformat(),
        "valid_to": (now + timedelta(days=365)).isoformat()}).get_json()
    first = _next_delta(listener).changes[0]
    assert isinstance(first, PassChange) and first.status == "active" and first.card_uid == "04A22B9C"
    assert live_client.post(f"/api/v1/passes/{created['id']}/lost").status_code == 200
    lost = _next_delta(listener)
    assert lost.changes == [msgspec.structs.replace(first, status="lost")]
    assert lost.seq > 1
    new = live_client.post(f"/api/v1/passes/{created['id']}/replace", json={"card_uid": "04A22B9D"})
    assert new.status_code == 201, new.get_json()
    replacement = _next_delta(listener).changes[0]
    assert replacement.card_uid == "04A22B9D" and replacement.holder_id == first.holder_id
    assert replacement.pass_id != first.pass_id


def test_a_bound_face_template_is_encrypted_at_rest_and_sent_to_gates_in_clear(live_client, live_ctx, live_config,
                                                                               listen):
    listener = listen(topics.deltas(live_config.site))
    now = datetime.now(UTC)
    created = live_client.post("/api/v1/passes", json={
        "holder_name": "Han Meimei", "valid_from": now.isoformat(),
        "valid_to": (now + timedelta(days=30)).isoformat()}).get_json()
    _next_delta(listener)
    template = (np.arange(128, dtype="<f4") / 256).tobytes()
    res = live_client.post(f"/api/v1/passes/{created['id']}/templates",
                           json={"kind": "face", "data": base64.b64encode(template).decode()})
    assert res.status_code == 201, res.get_json()
    change = _next_delta(listener).changes[0]
    assert isinstance(change, TemplateChange) and change.data == template and change.holder_id == created["holder"]
    with live_ctx.engine.connect() as conn:
        records = conn.execute(text("SELECT record FROM biometric_templates")).scalars().all()
        stored = conn.execute(text("SELECT payload FROM sync_changes")).scalars().all()
    assert records and all(template not in bytes(r) for r in records)
    assert all(base64.b64encode(template) not in bytes(p) for p in stored)


def test_a_snapshot_request_is_answered_with_chunks_whose_union_is_the_full_state(live_ctx, live_config, listen,
                                                                                monkeypatch):
    site = live_config.site
    now = datetime.now(UTC)
    with live_ctx.sessions.begin() as db:
        tt = define_ticket_type(db, site, TicketTypeSpec(name="RN", real_name=True))
        plain = define_ticket_type(db, site, TicketTypeSpec(name="Plain"))
        named = issue_tickets(db, site, [IssueRequest(ticket_type=tt.id, id_number=f"1101051949123{i:05d}")
                                         for i in range(120)])
        others = issue_tickets(db, site, [IssueRequest(ticket_type=plain.id)] * 30)
        for t in others[:10]:
            revoke_ticket(db, t.id)
        person = create_person(db, site, "Wang")
        p = create_pass(db, site, person_id=person.id, valid_from=now, valid_to=now + timedelta(days=9),
                        card_uid="AA01BB02")
        bind_template(db, live_ctx.cipher, person.id, "fingerprint", fingerprint_bytes(1))
        expected = sync.snapshot(db, site)
    add_gates(live_ctx, site, "g7")
    expected_tickets = {t.id for t in named} | {t.id for t in others[:10]}
    worker = IngestWorker(live_config, live_ctx.sessions, worker_id=uuid.uuid4().hex[:6], cipher=live_ctx.cipher)
    # Small chunks so the snapshot spans several messages.
    sync_chunk = sync.chunk
    monkeypatch.setattr(sync, "chunk", lambda snap, gate, sid, **kw: sync_chunk(snap, gate, sid, max_changes=40))
    worker.start()
    listener = listen(topics.sync(site, "g7"))
    try:
        requester = listen(topics.sync(site, "nobody"))  # a plain client to publish with
        requester.client.publish(topics.sync_request(site, "g7"), encode(SnapshotRequest(gate="g7", have_seq=0)),
                                 qos=1).wait_for_publish(10)
        chunks: list[SnapshotChunk] = []
        while not chunks or not chunks[-1].last:
            chunks.append(decode(SnapshotChunk, listener.get(timeout=20).payload))
    finally:
        worker.stop()
    assert [c.index for c in chunks] == list(range(len(chunks))) and len(chunks) == 4
    assert len({c.snapshot_id for c in chunks}) == 1 and {c.seq for c in chunks} == {expected.seq}
    union = [change for c in chunks for change in c.changes]
    assert {c.ticket_id for c in union if isinstance(c, TicketChange)} == expected_tickets
    assert [c.pass_id for c in union if isinstance(c, PassChange)] == [p.id]
    templates = [c for c in union if isinstance(c, TemplateChange)]
    assert len(templates) == 1 and templates[0].data == fingerprint_bytes(1)
    assert len(union) == len(expected.changes) == 120 + 10 + 1 + 1


def test_a_registered_gate_gets_its_retained_config_and_its_ack_is_recorded(live_client, live_ctx, live_config,
                                                                             listen, mosquitto):
    site = live_config.site
    live_client.post("/api/v1/ticket-types", json={"name": "Day", "entries": 2, "anti_passback": True})
    res = live_client.post("/api/v1/gates", json={"name": "north1", "zone": 2, "direction": "in",
                                                 "hardware": {"controller_profile": "tripod-coil", "unit_id": 3}})
    assert res.status_code == 201, res.get_json()
    assert res.get_json()["mqtt_password"]
    listener = listen(topics.config(site, "north1"))  # subscribed after: the config is retained
    config = decode(GateConfig, listener.get().payload)
    assert config.zone == 2 and config.direction == "in" and config.hardware.unit_id == 3
    assert [(t.entries, t.anti_passback) for t in config.ticket_types] == [(2, True)]
    assert [k.public for k in config.keys] == [live_ctx.signer.public_key_bytes()]
    assert live_client.post("/api/v1/gates/north1/mode", json={"mode": "locked"}).status_code == 200
    newer = decode(GateConfig, listener.get().payload)
    assert newer.mode == "locked" and newer.version == config.version + 1

    worker = IngestWorker(live_config, live_ctx.sessions, worker_id=uuid.uuid4().hex[:6]).start()
    try:
        cmd = live_client.post("/api/v1/site/command", json={"kind": "set_mode", "mode": "emergency"}).get_json()
        gate = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"g-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
        gate.connect(mosquitto.host, mosquitto.port)
        gate.loop_start()
        gate.publish(topics.config_ack(site, "north1"), encode(ConfigAck(gate="north1", version=newer.version,
                                                                          applied=True)), qos=1).wait_for_publish(10)
        gate.publish(topics.command_ack(site, "north1"), encode(CommandAck(id=cmd["id"], gate="north1", ok=True)),
                     qos=1).wait_for_publish(10)
        gate.disconnect()
        gate.loop_stop()
        assert worker.wait_idle(20)
    finally:
        worker.stop()
    with live_ctx.sessions() as db:
        row = db.scalar(select(Gate).where(Gate.site_id == site, Gate.name == "north1"))
        assert row.config_acked == newer.version
        assert db.get(CommandRecord, cmd["id"]).acks["north1"]["ok"] is True


def test_every_change_takes_the_next_sequence_number(ctx, config):
    with ctx.sessions.begin() as db:
        tt = define_ticket_type(db, config.site, TicketTypeSpec(name="Day"))
        tickets = issue_tickets(db, config.site, [IssueRequest(ticket_type=tt.id)] * 5)
        for t in tickets:
            revoke_ticket(db, t.id)
    with ctx.sessions() as db:
        seqs = db.scalars(select(SyncChange.seq).where(SyncChange.site_id == config.site).order_by(SyncChange.seq))
        assert list(seqs) == [1, 2, 3, 4, 5]


def test_one_batch_of_changes_for_several_parks_takes_each_parks_next_number(ctx, config):
    """The ingest's used-up tickets of one batch across a head office's parks: one delta a park, each the
    next number of its own park's sequence, as if recorded one by one."""
    from central.services.gates import ensure_site

    other = "o" + config.site[1:]
    with ctx.sessions.begin() as db:
        ensure_site(db, other, name="Other Park")
        tt = define_ticket_type(db, config.site, TicketTypeSpec(name="Day"))
        ticket = issue_tickets(db, config.site, [IssueRequest(ticket_type=tt.id)])[0]
        revoke_ticket(db, ticket.id)  # the park's seq 1
        change = sync.ticket_change(ticket)
        seqs = sync.record_deltas(db, {config.site: [change], other: [change, change], "empty": []})
    assert seqs == {config.site: 2, other: 1}
    with ctx.sessions() as db:
        rows = {(r.site_id, r.seq): decode(Delta, r.payload) for r in db.scalars(select(SyncChange))}
    assert sorted(rows) == sorted([(config.site, 1), (config.site, 2), (other, 1)])
    assert len(rows[(other, 1)].changes) == 2 and rows[(other, 1)].site == other


def test_deltas_committed_by_many_threads_at_once_all_reach_the_gates_without_queueing_on_one_lock(
        live_ctx, live_config, listen):
    """Twelve requests commit a ticket each at the same moment and flush after their commit (as the web
    stack does): every delta is published once, in seq order per site, and none waits for the end of the
    others' flushes (a call made while one runs is coalesced into it)."""
    import threading

    from central.services.tickets import IssueRequest, TicketTypeSpec, define_ticket_type, issue_ticket

    site = live_config.site
    with live_ctx.sessions.begin() as db:
        define_ticket_type(db, site, TicketTypeSpec(name="RN", id=5, real_name=True))
    live_ctx.publisher.flush()
    listener = listen(topics.deltas(site))
    start = threading.Barrier(12)
    numbers = [f"11010519800101{i:03d}" for i in range(12)]

    def sell(i: int) -> None:
        from central.services.visitor_bookings import gb11643_check

        start.wait()
        with live_ctx.sessions.begin() as db:
            issue_ticket(db, site, IssueRequest(ticket_type=5, id_number=numbers[i] + gb11643_check(numbers[i])))
        live_ctx.publisher.flush()

    threads = [threading.Thread(target=sell, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = sorted(_next_delta(listener).seq for _ in range(12))
    assert len(set(seqs)) == 12
    with live_ctx.sessions() as db:
        assert db.execute(text("SELECT count(*) FROM sync_changes WHERE site_id = :s AND published_at IS NULL"),
                          {"s": site}).scalar_one() == 0


def test_a_deltas_encoding_cut_around_its_seq_is_the_encoders_own_for_every_seq():
    """`delta_parts` relies on msgspec's JSON writing a Struct's fields in order (v, site, seq, ...): pin it
    against the installed version, for seqs of every length and changes that hold the mark's text."""
    from protocol.messages import Delta, HolderForget, encode

    at = datetime(2026, 12, 4, 8, 30, tzinfo=UTC)
    changes = [HolderForget(holder_id='t,"seq":1,'), HolderForget(holder_id="p7")]
    for site in ("p", "park-01_x"):
        kinds, head, tail = sync.delta_parts(site, changes, at)
        assert kinds == "forget"
        for seq in (1, 9, 10, 12345, 2**53):
            assert head + b"%d" % seq + tail == encode(Delta(site=site, seq=seq, at=at, changes=changes))


def test_the_publishers_of_two_processes_flushing_at_once_send_each_delta_once(live_ctx, live_config, listen):
    """Every process of a park's central (web processes, ingest, scheduler) has a publisher, and after a
    rush of commits they flush at the same moment: each delta reaches the gates once, in seq order, not
    once per process (the gates would drop the copies, but each copy is fanned out to every gate)."""
    import queue
    import threading

    from central.context import CentralContext
    from protocol.ids import holder_ref
    from protocol.messages import HolderForget

    site = live_config.site
    other = CentralContext.create(live_config, mqtt=True, client_suffix="second-process")
    try:
        assert other.link.wait_connected(10)
        listener = listen(topics.deltas(site))
        with live_ctx.sessions.begin() as db:
            first = sync.record_delta(db, site, [HolderForget(holder_id=holder_ref(1))])
            for i in range(2, 401):
                sync.record_delta(db, site, [HolderForget(holder_id=holder_ref(i))])
        start = threading.Barrier(2)

        def flush(publisher) -> None:
            start.wait()
            publisher.flush()

        threads = [threading.Thread(target=flush, args=(p,)) for p in (live_ctx.publisher, other.publisher)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seqs = [_next_delta(listener).seq for _ in range(400)]
        assert seqs == list(range(first, first + 400))
        with pytest.raises(queue.Empty):
            listener.get(timeout=1.0)
    finally:
        other.close()


def test_a_template_this_central_cannot_open_does_not_hold_back_the_deltas_behind_it(live_ctx, live_config, listen):
    """A template sealed under another server's key (a head office with another keys.template_key): the
    gates cannot get it, but its delta's other changes and every later delta still go out."""
    from biometrics.protect import TemplateCipher, generate_key, load_key

    listener = listen(topics.deltas(live_config.site))
    foreign = TemplateCipher(load_key(generate_key(), "another server's key"))
    sealed = foreign.encrypt(b"\x01" * 512, "H77", "face")
    with live_ctx.sessions.begin() as db:
        define_ticket_type(db, live_config.site, TicketTypeSpec(name="Day", id=5))
        (ticket,) = issue_tickets(db, live_config.site, [IssueRequest(ticket_type=5)])
        sync.record_delta(db, live_config.site, [
            TemplateChange(holder_id="H77", kind="face", finger=0, version=1, data=sealed), sync.ticket_change(ticket)])
        revoke_ticket(db, ticket.id)
    live_ctx.publisher.flush()
    first, second = _next_delta(listener), _next_delta(listener)
    assert [type(c) for c in first.changes] == [TicketChange]  # the template left out, the ticket sent
    assert second.seq == first.seq + 1 and second.changes[0].status == "revoked"
