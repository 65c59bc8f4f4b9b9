"""GA 467 ID card frames (codec alone, canned frames, fuzzed) and the reader against its pty simulator."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import idcard_frames as f
from drivers.errors import DeviceTimeout, FrameError
from drivers.idcard import IdCard, IdCardReader, valid_id_number
from drivers.sim.idcard_sim import IdCardReaderSim
from tests.drivers.conftest import hex_fixture

ZHANG = IdCard(
    name="张三",
    sex="male",
    nation="汉",
    birth_date=dt.date(1949, 12, 31),
    address="北京市朝阳区某某路1号",
    id_number="11010519491231002X",
    issuer="北京市公安局朝阳分局",
    valid_from=dt.date(2015, 1, 1),
    valid_to=dt.date(2035, 1, 1),
    nation_code=1,
)
LI = IdCard("李四", "female", "壮", dt.date(1990, 3, 7), "广西南宁市青秀区民族大道100号",
            "450103199003070020", "南宁市公安局青秀分局", dt.date(2020, 5, 1), None, 8)


# -- the codec ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cmd"),
    [("find_card_cmd", f.FIND_CARD), ("select_card_cmd", f.SELECT_CARD), ("read_text_cmd", f.READ_TEXT_PHOTO)],
)
def test_command_frames_match_the_module_documents(name, cmd):
    assert f.encode_command(*cmd) == hex_fixture("ga467", name)
    assert (f.decode_command(hex_fixture("ga467", name)).cmd, f.decode_command(hex_fixture("ga467", name)).para) == cmd


@pytest.mark.parametrize(
    ("name", "sw3", "data_len"),
    [("find_card_ok", 0x9F, 4), ("find_card_none", 0x80, 0), ("select_card_ok", 0x90, 8)],
)
def test_canned_answers_decode(name, sw3, data_len):
    response = f.decode_response(hex_fixture("ga467", name))
    assert response.sw3 == sw3 and len(response.data) == data_len


def test_canned_read_answer_gives_the_card():
    response = f.decode_response(hex_fixture("ga467", "read_text_ok"))
    text, photo = f.split_text_photo(response.data)
    assert len(text) == 256 and len(photo) == 1024
    assert f.parse_text(text) == ZHANG


def test_frame_with_a_flipped_bit_fails_its_checksum():
    frame = bytearray(hex_fixture("ga467", "select_card_ok"))
    frame[10] ^= 0x01
    with pytest.raises(FrameError, match="checksum"):
        f.decode_response(bytes(frame))


def test_garbage_before_a_frame_is_skipped_by_split():
    good = hex_fixture("ga467", "find_card_ok")
    frame, used = f.split_frame(b"\x00\xaa\x13" + good + b"\xaa\xaa")
    assert frame == good and used == 3 + len(good)


def test_split_waits_for_the_rest_of_a_frame():
    good = hex_fixture("ga467", "find_card_ok")
    assert f.split_frame(good[:9]) == (None, 0)


def test_card_without_end_date_is_long_term():
    assert f.parse_text(f.build_text(LI)) == LI and LI.valid_to is None


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        ("11010519491231002X", True),
        ("11010519491231002x", True),
        ("450103199003070020", True),
        ("110105194912310021", False),  # wrong check digit
        ("11010519491331002X", False),  # month 13 (and wrong check digit)
        ("1101051949123100", False),
        ("1101051949123100AX", False),
        ("", False),
    ],
)
def test_id_number_check_digit(number, ok):
    assert valid_id_number(number) is ok


def test_id_number_with_a_typo_is_refused_in_the_text_block():
    bad = IdCard(**{**ZHANG.__dict__, "id_number": "110105194912310021"})
    with pytest.raises(FrameError, match="check digit"):
        f.parse_text(f.build_text(bad))


def test_repr_masks_personal_data():
    text = repr(ZHANG) + str(ZHANG)
    assert "11010519491231002X" not in text and "张三" not in text and "朝阳" not in text
    assert "110" in text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_decoders_raise_only_frame_error_on_arbitrary_bytes(data):
    for decode in (f.decode_response, f.decode_command, f.split_frame, f.split_text_photo):
        try:
            decode(data)
        except FrameError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_decoders_survive_garbage_after_a_valid_preamble(tail):
    data = f.PREAMBLE + tail
    for decode in (f.decode_response, f.decode_command, f.split_frame):
        try:
            decode(data)
        except FrameError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=256, max_size=256))
def test_text_parser_raises_only_frame_error(block):
    try:
        f.parse_text(block)
    except FrameError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 255), st.binary(max_size=300))
def test_response_round_trip(sw3, data):
    assert f.decode_response(f.encode_response(sw3, data)) == f.Response(0, 0, sw3, data)


# -- the reader over a pseudo-terminal -----------------------------------------------------------


@pytest.fixture
def reader_rig():
    sim = IdCardReaderSim()
    reader = IdCardReader(sim.device_path, response_timeout=0.3, poll_interval_s=0.02)
    assert reader.open()
    yield sim, reader
    reader.close()
    sim.close()


def test_card_laid_on_the_reader_is_read(reader_rig):
    sim, reader = reader_rig
    sim.present(ZHANG)
    card = reader.read_card(2.0)
    assert card == ZHANG and card.id_number == "11010519491231002X"


def test_no_card_returns_none_after_the_timeout(reader_rig):
    _, reader = reader_rig
    start = time.monotonic()
    assert reader.read_card(0.15) is None
    assert time.monotonic() - start < 1.0


def test_card_left_on_the_reader_is_read_once(reader_rig):
    sim, reader = reader_rig
    sim.present(LI)
    assert reader.read_card(2.0) == LI
    assert reader.read_card(0.1) is None
    sim.remove()
    sim.present(LI)
    assert reader.read_card(2.0) == LI


def test_corrupted_frame_is_reported_and_the_next_read_gets_the_card(reader_rig):
    sim, reader = reader_rig
    sim.present(ZHANG)
    sim.corrupt_next_frame(3)  # find, select and read answers all broken
    with pytest.raises(FrameError) as err:
        reader.read_card(2.0)
    assert err.value.port == sim.device_path
    sim.corrupt_next_frame(0)
    card = None
    for _ in range(3):  # each corrupted answer costs one call; the card stays on the reader
        try:
            card = reader.read_card(2.0)
            break
        except FrameError:
            continue
    assert card == ZHANG


def test_card_whose_id_number_fails_its_check_digit_is_refused(reader_rig):
    sim, reader = reader_rig
    sim.present(ZHANG)
    sim.raw_text = f.build_text(IdCard(**{**ZHANG.__dict__, "id_number": "110105194912310021"}))
    with pytest.raises(FrameError, match="check digit"):
        reader.read_card(2.0)


def test_module_that_stops_answering_times_out(reader_rig):
    sim, reader = reader_rig
    sim.silent = True
    with pytest.raises(DeviceTimeout) as err:
        reader.read_card(2.0)
    assert err.value.port == sim.device_path
    sim.silent = False
    sim.present(LI)
    assert reader.read_card(2.0) == LI


def test_reader_unplugged_and_back_reads_again(reader_rig):
    sim, reader = reader_rig
    sim.unplug()
    assert reader.read_card(0.2) is None
    assert not reader.connected
    sim.replug()
    sim.present(ZHANG)
    assert reader.read_card(3.0) == ZHANG
