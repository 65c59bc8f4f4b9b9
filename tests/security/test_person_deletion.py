"""Deletion on request reaches every gate: two running gates of a site drop the holder's face templates
(store rows and the in-memory face index) and their card no longer admits anyone.

The real central (database, publisher over the broker, an ingest worker answering the gates' snapshot
requests) and two in-process `GateAgent`s with turnstile simulators, over the session's Mosquitto.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from biometrics.face import FaceTemplate
from central.bus.ingest_worker import IngestWorker
from central.services.gates import register_gate, update_site
from central.services.passes import bind_template, create_pass, create_person
from central.services.users import create_token
from gate_agent.agent import GateAgent
from gate_agent.display import ConsoleDisplay
from tests.central.conftest import make_config, prepare
from tests.gate_agent.conftest import file_config
from tests.support.waiting import poll

pytestmark = pytest.mark.mosquitto


def _face(seed: int) -> FaceTemplate:
    vec = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return FaceTemplate(vec / np.linalg.norm(vec) * 0.9)


def _face_rows(agent: GateAgent, holder: str) -> int:
    return agent.store.db.execute("SELECT count(*) FROM templates WHERE holder_id = ?", (holder,)).fetchone()[0]


def test_a_person_deleted_at_the_central_is_forgotten_by_every_gate_and_their_card_no_longer_admits(db_url,
        tmp_path, mosquitto, turnstile_factory):
    config = make_config(db_url, tmp_path, mosquitto)
    ctx = prepare(config, mqtt_on=True)
    assert ctx.link.wait_connected(10)
    site = config.site
    start = datetime.now(UTC) - timedelta(days=1)
    face, other_face = _face(1), _face(2)
    with ctx.sessions.begin() as db:
        update_site(db, site, pass_biometric="none")  # the card alone admits: what must stop
        for gate in ("g1", "g2"):
            register_gate(db, site, gate, 1, direction="both",
                          hardware={"controller_profile": "tripod-coil", "passage_timeout_s": 2.0})
        holder = create_person(db, site, "Li Lei", phone="+86 138 0000 0001")
        create_pass(db, site, person_id=holder.id, valid_from=start, valid_to=start + timedelta(days=365),
                    card_uid="04D00D01")
        bind_template(db, ctx.cipher, holder.id, "face", face.to_bytes())
        neighbour = create_person(db, site, "Han Meimei")
        create_pass(db, site, person_id=neighbour.id, valid_from=start, valid_to=start + timedelta(days=365),
                    card_uid="04D00D02")
        bind_template(db, ctx.cipher, neighbour.id, "face", other_face.to_bytes())
        holder_id, who, other = holder.id, holder.holder_ref, neighbour.holder_ref
        _token, manager_token = create_token(db, "privacy-desk", "manager")
    ctx.publisher.flush()  # the gates' retained configs
    worker = IngestWorker(config, ctx.sessions, ctx.link, worker_id=uuid.uuid4().hex[:6], cipher=ctx.cipher).start()
    agents: list[GateAgent] = []
    try:
        for gate in ("g1", "g2"):
            fc = file_config(tmp_path, mosquitto, site, gate, turnstile=turnstile_factory())
            agents.append(GateAgent(fc, display=ConsoleDisplay(gate, stream=io.StringIO())).start())
        for agent in agents:  # the first snapshot brings both holders' passes and faces
            poll(lambda a=agent: a.active is not None and _face_rows(a, who) and _face_rows(a, other), 20,
                 what=f"{agent.gate}'s snapshot")
            agent.load_faces(force=True)
            assert {who, other} <= agent.decider.faces.holders()
            first = agent.present("annual_pass", "04D00D01")
            assert first.passed == 1, (first.reason, agent.active.cfg.pass_biometric, agent.active.cfg.version)
            agent._recent.clear()
            entry = agent.present("face", face)
            assert entry.passed == 1 and entry.events[0].credential_kind == "face"

        from central.app import create_app

        client = create_app(config, context=ctx, web=False).test_client()
        res = client.delete(f"/api/v1/persons/{holder_id}", headers={"Authorization": f"Bearer {manager_token}"})
        assert res.status_code == 200, res.get_json()  # the route flushes the publisher: the delta is out

        for agent in agents:
            # The store's rows go first, then (same thread, just after) the in-memory index entry.
            poll(lambda a=agent: _face_rows(a, who) == 0 and who not in a.decider.faces, 10,
                 what=f"{agent.gate} to drop the templates")
            assert other in agent.decider.faces
            assert agent.store.templates(who, "face") == []
            agent._recent.clear()
            card = agent.present("annual_pass", "04D00D01")
            assert card.passed == 0 and card.reason == "unknown_credential", card
            by_face = agent.present("face", face)
            assert by_face.passed == 0 and by_face.reason == "unknown_credential", by_face
            assert agent.present("annual_pass", "04D00D02").passed == 1  # nobody else was touched
            passes = agent.store.db.execute("SELECT card_uid, status FROM passes WHERE holder_id = ?",
                                            (who,)).fetchall()
            assert passes == [("", "expired")]

        # A gate that starts afresh (or resyncs) gets nothing of the holder in its snapshot.
        agents[0].resync("after deletion")
        poll(lambda: not agents[0].sync.resyncing, 10, what="the resync")
        assert agents[0].store.db.execute("SELECT count(*) FROM passes WHERE holder_id = ?",
                                          (who,)).fetchone()[0] == 0
    finally:
        for agent in agents:
            agent.stop()
        worker.stop()
        ctx.close()
