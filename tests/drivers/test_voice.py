"""The SYN6288 voice module driver against its simulator on a pseudo-terminal."""

from __future__ import annotations

import pytest

from drivers.errors import DeviceDisconnected, DeviceFault, DeviceTimeout
from drivers.sim.voice_sim import VoiceModuleSim
from drivers.voice import VoiceModule


@pytest.fixture
def sim():
    with VoiceModuleSim() as s:
        yield s


def test_the_module_speaks_what_the_gate_says(sim):
    with VoiceModule(sim.device_path) as voice:
        voice.say("欢迎光临")
    assert sim.wait_said(lambda t: t == "欢迎光临")


def test_a_new_decision_stops_the_last_one_first(sim):
    sim.speak_s = 1.0  # a long text still being spoken
    with VoiceModule(sim.device_path) as voice:
        voice.say("请出示门票")
        assert voice.status() == "busy"
        voice.say("欢迎")
        assert sim.stops == 2 and sim.said[-1] == "欢迎"


def test_a_long_text_goes_in_several_frames_each_after_the_last_is_spoken(sim):
    text = "团队 ABC 旅行社，已入 12 / 30，" * 12
    with VoiceModule(sim.device_path) as voice:
        voice.say(text)
    assert sim.wait_said(lambda t: text.endswith(t) and len(sim.said) > 1)
    assert "".join(sim.said) == text


def test_a_module_that_hung_is_a_timeout(sim):
    sim.silent = True
    with VoiceModule(sim.device_path, response_timeout=0.1) as voice, pytest.raises(DeviceTimeout):
        voice.say("欢迎")


def test_a_refused_frame_is_a_device_fault(sim):
    with VoiceModule(sim.device_path) as voice:
        voice.open()
        voice.link.write(b"\xfd\x00\x02\x02\x00")  # a stop frame with a wrong check byte
        with pytest.raises(DeviceFault):
            voice._await(frozenset({0x41}), 0.5, "stop")


def test_an_unplugged_module_is_reported_once_and_used_again_when_back(sim):
    seen = []
    voice = VoiceModule(sim.device_path, on_status=seen.append)
    voice.say("一")
    sim.unplug()
    with pytest.raises(DeviceDisconnected):
        voice.say("二")
    with pytest.raises(DeviceDisconnected):
        voice.say("二")
    assert [type(e) for e in seen] == [DeviceDisconnected]
    sim.replug()
    voice.link._next_try = 0  # the reopen interval: not waited out in a test
    voice.say("三")
    assert sim.wait_said(lambda t: t == "三") and seen[-1] is None
    voice.close()
