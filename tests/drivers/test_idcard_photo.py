"""The ID card's photo: the reader hands over what the maker's decoder makes of the chip's WLT image, the
simulator sends a test photo in its place; no decoder, no photo; the photo never shows in a repr."""

from __future__ import annotations

from drivers.idcard import IdCardReader
from drivers.sim.idcard_sim import IdCardReaderSim, sim_photo_decoder
from tests.drivers.test_idcard import ZHANG

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 12  # a photo's bytes, as large as a card's photo gets


def test_the_reader_yields_the_cards_photo_through_the_makers_decoder():
    with IdCardReaderSim(photo=JPEG) as sim, IdCardReader(sim.device_path, photo_decoder=sim_photo_decoder) as r:
        sim.present(ZHANG)
        card = r.read_card(2.0)
    assert card == ZHANG and card.photo == JPEG
    assert "photo" not in repr(card) and str(JPEG[:8]) not in repr(card)


def test_without_a_decoder_the_card_comes_without_its_photo():
    with IdCardReaderSim(photo=JPEG) as sim, IdCardReader(sim.device_path) as r:
        sim.present(ZHANG)
        assert r.read_card(2.0).photo is None


def test_a_photo_the_decoder_cannot_read_leaves_the_text_standing():
    # A real card's WLT (here, 1024 bytes) that the simulator's decoder does not know: no photo, no failure.
    with IdCardReaderSim() as sim, IdCardReader(sim.device_path, photo_decoder=sim_photo_decoder) as r:
        sim.present(ZHANG)
        card = r.read_card(2.0)
    assert card == ZHANG and card.photo is None
