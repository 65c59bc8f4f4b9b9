"""SYN6288 frames alone: the manual's examples, every encoding, long texts cut, garbage refused (fuzzed)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import voice_frames as f
from drivers.errors import FrameError
from tests.drivers.conftest import hex_fixture


def test_the_manuals_gb2312_example_is_what_the_driver_sends():
    assert f.encode_speak("宇音天下", f.Encoding.GB2312) == hex_fixture("syn6288", "speak_gb2312")
    assert f.encode_speak("宇音天下") == hex_fixture("syn6288", "speak_gb2312")  # GB2312 chosen by itself


def test_a_unicode_frame_carries_utf16_high_byte_first():
    assert f.encode_speak("宇音天下", f.Encoding.UNICODE) == hex_fixture("syn6288", "speak_unicode")
    assert f.decode_frame(hex_fixture("syn6288", "speak_unicode")).text == "宇音天下"


@pytest.mark.parametrize(("name", "cmd"), [("stop", f.Cmd.STOP), ("pause", f.Cmd.PAUSE), ("resume", f.Cmd.RESUME),
                                           ("status_query", f.Cmd.STATUS), ("power_down", f.Cmd.POWER_DOWN)])
def test_the_manuals_command_frames(name, cmd):
    assert f.encode_command(cmd) == hex_fixture("syn6288", name)
    assert f.decode_frame(hex_fixture("syn6288", name)).cmd == cmd


def test_a_character_gb2312_lacks_goes_as_unicode():
    # "喆" (a name character) is in GBK and Unicode, not in GB2312.
    frame = f.encode_speak("欢迎 喆")
    decoded = f.decode_frame(frame)
    assert decoded.encoding == f.Encoding.UNICODE and decoded.text == "欢迎 喆"


@pytest.mark.parametrize("encoding", list(f.Encoding))
def test_every_encoding_round_trips(encoding):
    text = "请通行" if encoding != f.Encoding.BIG5 else "請通行"
    decoded = f.decode_frame(f.encode_speak(text, encoding, music=2))
    assert (decoded.text, decoded.encoding, decoded.music) == (text, encoding, 2)


def test_background_music_sits_in_the_high_bits():
    assert f.encode_speak("好", f.Encoding.GB2312, music=1)[4] == 0x08


def test_a_text_over_200_bytes_is_cut_at_punctuation_into_frames_that_fit():
    text = "欢迎光临，" * 30  # 300 bytes in GB2312
    with pytest.raises(ValueError, match="200"):
        f.encode_speak(text)
    pieces = f.split_text(text)
    assert "".join(pieces) == text
    assert all(len(p.encode("gb2312")) <= f.MAX_TEXT and p.endswith("，") for p in pieces)


def test_a_broken_check_byte_or_length_is_refused():
    good = hex_fixture("syn6288", "speak_gb2312")
    with pytest.raises(FrameError, match="check byte"):
        f.decode_frame(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(FrameError, match="length"):
        f.decode_frame(good[:-2] + good[-1:])


def test_split_frame_skips_garbage_and_waits_for_the_rest():
    good = hex_fixture("syn6288", "speak_gb2312")
    assert f.split_frame(b"\x00\x11" + good[:6]) == (None, 2)
    assert f.split_frame(b"\x00\x11" + good + b"\xfd") == (good, 2 + len(good))
    with pytest.raises(FrameError):
        f.split_frame(b"\xfd\x00\x00\x01")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_fuzzed_bytes_never_escape_as_anything_but_frame_error(data):
    try:
        frame, used = f.split_frame(data)
        if frame is not None:
            f.decode_frame(frame)
    except FrameError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="gb2312", exclude_categories=("Cs", "Cc")), min_size=1, max_size=90))
def test_any_gb2312_text_round_trips(text):
    assert f.decode_frame(f.encode_speak(text)).text == text
