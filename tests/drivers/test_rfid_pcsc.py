"""The PC/SC annual-pass reader against a real pcscd with vpcd and a virtual contactless card."""

from __future__ import annotations

import time

import pytest

from drivers.errors import DeviceDisconnected
from drivers.rfid import PcscRfidReader
from drivers.sim.virtual_card import VirtualContactlessCard, contactless_atr

pytestmark = pytest.mark.pcsc

UID = bytes.fromhex("04A1B2C3D4E5F6")


@pytest.fixture
def reader(pcscd):
    r = PcscRfidReader("Virtual PCD 00 00")
    assert r.wait_removal(2.0)  # start from an empty reader
    yield r
    r.close()


def test_contactless_atr_has_a_valid_check_byte():
    atr = contactless_atr()
    check = 0
    for b in atr[1:]:
        check ^= b
    assert atr[:2] == b"\x3b\x8f" and check == 0


def test_annual_pass_laid_on_the_reader_gives_its_uid(reader):
    card = VirtualContactlessCard(UID)
    card.insert()
    try:
        assert reader.wait_card(3.0) == "04A1B2C3D4E5F6"
        assert any(apdu[:4] == b"\xff\xca\x00\x00" for apdu in card.apdus)
    finally:
        card.remove()


def test_no_card_returns_none_after_the_timeout(reader):
    start = time.monotonic()
    assert reader.wait_card(0.2) is None
    assert time.monotonic() - start < 1.5


def test_removal_is_reported(reader):
    with VirtualContactlessCard(bytes.fromhex("DEADBEEF")):
        assert reader.wait_card(3.0) == "DEADBEEF"
        assert reader.wait_removal(0.1) is False  # still on the reader
    assert reader.wait_removal(3.0) is True


def test_two_passes_one_after_the_other(reader):
    for uid in (bytes.fromhex("01020304"), bytes.fromhex("0A0B0C0D0E0F10")):
        with VirtualContactlessCard(uid):
            assert reader.wait_card(3.0) == uid.hex().upper()
        assert reader.wait_removal(3.0)


def test_unknown_reader_name_is_reported_disconnected(pcscd):
    r = PcscRfidReader("No Such Reader")
    with pytest.raises(DeviceDisconnected) as err:
        r.wait_card(0.1)
    assert "No Such Reader" in str(err.value)
