"""人证核验: an ID-card entry admitted only when the camera's face matches the card's photo. The ID card
reader simulator on a pty hands over an ID-style photo made from the shared test photos (never copied
into the project), the camera reads real photos, the face templates are real."""

from __future__ import annotations

import pytest

from drivers.idcard_frames import IdCard
from drivers.sim.idcard_sim import IdCardReaderSim
from protocol import messages as m
from tests.drivers.test_idcard import ZHANG
from tests.gate_agent.conftest import RULES, booking_today, gate_config_for
from tests.gate_agent.test_id_key import store_bytes
from tests.support.id_photos import id_photo

pytestmark = [pytest.mark.faces, pytest.mark.slow]
REAL_NAME = m.TicketTypeRules(id=6, name="实名票", entries=1, id_face=True)
DECODER = "drivers.sim.idcard_sim:sim_photo_decoder"


@pytest.fixture(scope="module")
def card_photos(faces_dir):
    pytest.importorskip("face_recognition")
    return {who: id_photo(faces_dir / who / "1.jpg") for who in ("obama", "biden")}


@pytest.fixture
def reader():
    with IdCardReaderSim() as sim:
        yield sim


def gate_with_card_reader(gate_factory, probe, signer, site, reader, faces_dir, *, decoder: str | None = DECODER,
                          ticket_type: int = 6, **config):
    idcard = {"port": reader.device_path, **({"photo_decoder": decoder} if decoder else {})}
    camera = {"files": str(faces_dir / "obama" / "2.jpg"), "fps": 20}  # Obama stands at the gate
    probe.snapshot.append(booking_today(7001, ZHANG.id_number, ticket_type=ticket_type))
    cfg = gate_config_for(signer, site, "g1", ticket_types=[*RULES, REAL_NAME], **config)
    agent, sim = gate_factory("g1", config=cfg, devices={"idcard": idcard, "camera": camera})
    probe.wait(lambda: agent.store.meta("snapshot_id"))
    return agent, sim


def lay(reader: IdCardReaderSim, photo: bytes, card: IdCard = ZHANG) -> None:
    reader.photo = photo
    reader.present(card)


def decision(agent):
    return agent.display.wait_notice(lambda n: n.reason != "look_at_camera", timeout=20)


def test_the_holder_of_the_card_is_admitted_and_the_photo_is_kept_nowhere(gate_factory, probe, signer, site,
                                                                           reader, faces_dir, card_photos):
    agent, sim = gate_with_card_reader(gate_factory, probe, signer, site, reader, faces_dir)

    lay(reader, card_photos["obama"])

    assert decision(agent).reason == "ok"
    event = probe.wait(lambda: [e for e in probe.events("g1") if e.passed])[0]
    assert (event.credential_kind, event.decision) == ("id_card", "granted") and event.binding is None
    assert sim.counters == (1, 0)
    photo = card_photos["obama"]
    # Neither the store (file, WAL) nor anything sent holds a piece of the card's photo.
    assert photo[200:264] not in store_bytes(agent.file_cfg.store_path)
    assert not any(photo[200:264] in payload for _topic, payload in probe.messages)


def test_another_persons_card_is_refused_as_not_the_same_person(gate_factory, probe, signer, site, reader,
                                                               faces_dir, card_photos):
    agent, sim = gate_with_card_reader(gate_factory, probe, signer, site, reader, faces_dir)

    lay(reader, card_photos["biden"])  # Biden's card, Obama at the camera

    notice = decision(agent)
    assert (notice.reason, notice.text) == ("not_same_person", "Ticket belongs to another person")
    assert notice.see_staff and sim.counters == (0, 0)


def test_a_reader_that_gives_no_photo_sends_the_visitor_to_staff(gate_factory, probe, signer, site, reader,
                                                                faces_dir, card_photos):
    agent, sim = gate_with_card_reader(gate_factory, probe, signer, site, reader, faces_dir, decoder=None)

    lay(reader, card_photos["obama"])

    notice = decision(agent)
    assert (notice.reason, notice.text) == ("card_photo_unreadable", "ID card photo not readable, please see staff")
    assert sim.counters == (0, 0)


def test_a_ticket_type_without_the_check_admits_the_id_card_alone(gate_factory, probe, signer, site, reader,
                                                                  faces_dir, card_photos):
    agent, sim = gate_with_card_reader(gate_factory, probe, signer, site, reader, faces_dir, ticket_type=1)
    lay(reader, card_photos["biden"])
    assert decision(agent).reason == "ok"


def test_the_site_can_ask_it_of_every_id_card_entry(gate_factory, probe, signer, site, reader, faces_dir,
                                                    card_photos):
    agent, sim = gate_with_card_reader(gate_factory, probe, signer, site, reader, faces_dir, ticket_type=1,
                                       id_face=True)
    lay(reader, card_photos["biden"])
    assert decision(agent).reason == "not_same_person"
