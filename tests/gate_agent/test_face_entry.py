"""Faces at gates, with real templates from the shared photos: same-person re-entry across gates (1:1 against
the face bound at first entry), face-only entry among enrolled holders (1:N), and a holder forgotten."""

from __future__ import annotations

import pytest

from biometrics.face import FaceTemplate
from protocol import messages as m
from tests.gate_agent.conftest import RULES, gate_config_for, ticket

pytestmark = [pytest.mark.faces, pytest.mark.slow]

SAME_PERSON = m.TicketTypeRules(id=5, name="two-day ticket, same person", entries=3, same_person=True)


@pytest.fixture(scope="module")
def faces(faces_dir):
    pytest.importorskip("face_recognition")
    from biometrics.face import encode_frame

    def one(path: str) -> FaceTemplate:
        return encode_frame(str(faces_dir / path))[0]

    return {name: one(path) for name, path in (("obama1", "obama/1.jpg"), ("obama2", "obama/2.jpg"),
                                                ("biden", "biden/1.jpg"), ("alex", "alex_lacamoire/1.jpg"))}


def raw(store) -> bytes:
    return b"".join(p.read_bytes() for p in (store.path, store.path.with_name(store.path.name + "-wal"))
                    if p.exists())


def test_same_person_ticket_binds_the_face_at_first_entry_and_checks_it_at_another_gate(
        gate_factory, probe, signer, site, faces_dir, faces):
    config = {"ticket_types": [*RULES, SAME_PERSON]}
    a, _ = gate_factory("g1", config=gate_config_for(signer, site, "g1", **config),
                        devices={"camera": {"files": str(faces_dir / "obama" / "1.jpg"), "fps": 20}})
    b, _ = gate_factory("g2", config=gate_config_for(signer, site, "g2", **config),
                        devices={"camera": {"files": str(faces_dir / "obama" / "2.jpg"), "fps": 20}})
    code = ticket(signer, 9201, ticket_type=5)

    first = a.present("qr", code)
    assert first.granted and first.passed == 1
    bound = first.events[0].binding
    assert FaceTemplate.from_bytes(bound) == faces["obama1"]  # bound at the first entry, shared on the event
    probe.wait(lambda: b.store.usage("T9201")[0].bound, timeout=2)
    assert b.store.usage("T9201")[1] == bound

    again = b.present("qr", code)  # Obama comes back through gate B
    assert again.granted and again.passed == 1 and again.events[0].binding is None
    assert again.events[0].face_distance < 0.5

    b._recent.clear()
    b.camera.driver.paths = [str(faces_dir / "biden" / "1.jpg")]  # Biden at gate B's camera ...
    someone_else = b.present("qr", code)  # ... with Obama's ticket
    assert someone_else.reason == "not_same_person" and someone_else.passed == 0
    assert b.store.usage("T9201")[0].entries == 2

    # The bound face is personal data: neither gate's store file holds it in clear.
    probe.wait(lambda: a.store.outbox_depth() == 0 and b.store.outbox_depth() == 0)
    for store in (a.store, b.store):
        assert bound not in raw(store)


def test_face_only_entry_admits_an_enrolled_holder_on_their_pass_and_refuses_a_stranger_then_forgets(
        gate_factory, probe, signer, site, faces):
    agent, turnstile = gate_factory("g1")
    probe.wait(lambda: agent.store.meta("snapshot_id"))
    probe.delta(m.PassChange(pass_id=81, holder_id="obama", card_uid="0481"),
                m.TemplateChange(holder_id="obama", kind="face", data=faces["obama1"].to_bytes()),
                m.PassChange(pass_id=82, holder_id="biden", card_uid="0482"),
                m.TemplateChange(holder_id="biden", kind="face", data=faces["biden"].to_bytes()))
    probe.wait(lambda: agent.store.seq == probe.seq)

    holder = agent.present("face", faces["obama2"])  # another photo than the enrolled one
    assert holder.granted and holder.passed == 1
    assert (holder.events[0].credential_kind, holder.events[0].credential_ref) == ("face", "P81")
    stranger = agent.present("face", faces["alex"])
    assert stranger.reason == "unknown_credential" and stranger.passed == 0
    assert turnstile.counters == (1, 0)
    assert faces["obama1"].to_bytes() not in raw(agent.store)

    # Deletion on request: the rows, the in-memory index entry and with them the entry by face go.
    probe.delta(m.HolderForget(holder_id="obama"))
    probe.wait(lambda: agent.store.seq == probe.seq)
    assert agent.store.db.execute("SELECT count(*) FROM templates WHERE holder_id = 'obama'").fetchone()[0] == 0
    assert "obama" not in agent.decider.faces and "biden" in agent.decider.faces
    agent._recent.clear()
    assert agent.present("face", faces["obama2"]).reason == "unknown_credential"
    assert agent.present("face", faces["biden"]).granted


def test_a_booked_face_enters_on_its_ticket_in_its_slot_from_the_days_gallery_and_is_forgotten_after(
        gate_factory, probe, signer, site, faces):
    """Face entry at booking: the central sends a booked person's face with their ticket as its holder,
    on the visit day only. The gate keeps it in the day's gallery, apart from the pass holders'."""
    from datetime import timedelta

    from tests.gate_agent.conftest import now

    agent, turnstile = gate_factory("g1")
    probe.wait(lambda: agent.store.meta("snapshot_id"))
    t = now()
    probe.delta(
        m.TicketChange(ticket_id=9301, ticket_type=1, valid_from=t - timedelta(hours=2),
                       valid_to=t + timedelta(hours=10), slot_start=t - timedelta(minutes=30),
                       slot_end=t + timedelta(minutes=90)),
        m.TemplateChange(holder_id="T9301", kind="face", data=faces["obama1"].to_bytes()),
        m.TicketChange(ticket_id=9302, ticket_type=1, valid_from=t - timedelta(hours=2),
                       valid_to=t + timedelta(hours=10), slot_start=t + timedelta(hours=3),
                       slot_end=t + timedelta(hours=5)),
        m.TemplateChange(holder_id="T9302", kind="face", data=faces["biden"].to_bytes()),
        m.PassChange(pass_id=83, holder_id="alex", card_uid="0483"),
        m.TemplateChange(holder_id="alex", kind="face", data=faces["alex"].to_bytes()))
    probe.wait(lambda: agent.store.seq == probe.seq)
    agent.decider.face_source.load(force=True)
    matcher = agent.decider.face_source
    assert matcher.day.holders() == {"T9301", "T9302"} and matcher.index.holders() == {"alex"}

    booked = agent.present("face", faces["obama2"])  # another photo than the selfie
    assert booked.granted and booked.passed == 1
    assert (booked.events[0].credential_kind, booked.events[0].credential_ref) == ("face", "T9301")
    agent._recent.clear()
    again = agent.present("face", faces["obama2"])  # a day ticket: one entry
    assert not again.granted and again.passed == 0
    early = agent.present("face", faces["biden"])  # booked for a later slot
    assert early.reason == "too_early" and early.passed == 0
    assert agent.present("face", faces["alex"]).events[0].credential_ref == "P83"  # holders still enter
    assert turnstile.counters[0] == 2

    # After the visit day the central takes the faces back: the gallery empties, the face admits nobody.
    probe.delta(m.HolderForget(holder_id="T9302"))
    probe.wait(lambda: agent.store.seq == probe.seq)
    assert "T9302" not in matcher.day and agent.store.templates("T9302", "face") == []
    agent._recent.clear()
    assert agent.present("face", faces["biden"]).reason == "unknown_credential"
