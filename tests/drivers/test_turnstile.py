"""The turnstile driver against the pymodbus simulator, over TCP and over RTU on a pseudo-terminal."""

from __future__ import annotations

import time

import pytest

from drivers.errors import DeviceDisconnected, DeviceFault, DeviceTimeout, FrameError
from drivers.sim.turnstile_sim import TurnstileSimulator
from drivers.turnstile import ControllerProfile, Counters, ProfileError, Turnstile
from tests.support.services import free_port

MODELS = ["tripod-coil", "swing-regcmd"]
TIMEOUT, RETRIES = 0.2, 1


def _driver(sim: TurnstileSimulator, **kw) -> Turnstile:
    where = {"tcp": sim.tcp_address} if sim.transport == "tcp" else {"serial": sim.serial_path}
    return Turnstile(sim.profile, unit_id=sim.unit_id, timeout=TIMEOUT, retries=RETRIES, **where, **kw)


@pytest.fixture(params=[(m, t) for m in MODELS for t in ("tcp", "rtu")], ids=lambda p: f"{p[0]}-{p[1]}")
def rig(request):
    model, transport = request.param
    sim = TurnstileSimulator(model, transport=transport, unit_id=7).start()
    sim.pass_delay_s = 0.05
    sim.walk_away_s = 0.1
    gate = _driver(sim)
    gate.connect()
    yield sim, gate
    gate.close()
    sim.stop()


@pytest.fixture(params=["tcp", "rtu"])
def coil_rig(request):
    sim = TurnstileSimulator("tripod-coil", transport=request.param).start()
    gate = _driver(sim)
    gate.connect()
    yield sim, gate
    gate.close()
    sim.stop()


def test_shipped_profiles_have_different_layouts():
    coil, reg = (ControllerProfile.load(m) for m in MODELS)
    assert coil.open_type == "coil" and reg.open_type == "register"
    assert coil.counter_words == 1 and reg.counter_words == 2
    assert not coil.alarms.is_bitfield and reg.alarms.is_bitfield


def test_visitor_who_passes_moves_the_entry_counter(rig):
    sim, gate = rig
    before = gate.read_counters()
    gate.open_once("in")
    assert gate.wait_passage("in", 2.0, since=before) is True
    assert gate.read_counters() == Counters(before.entries + 1, before.exits)
    assert gate.healthy


def test_visitor_leaving_moves_the_exit_counter_only(rig):
    sim, gate = rig
    before = gate.read_counters()
    gate.open_once("out")
    assert gate.wait_passage("out", 2.0, since=before)
    assert gate.read_counters() == Counters(before.entries, before.exits + 1)


def test_visitor_who_walks_away_keeps_counter_unchanged(rig):
    sim, gate = rig
    sim.behaviour = "walk_away"
    before = gate.read_counters()
    gate.open_once("in")
    assert "arm_unlocked" in gate.read_sensors()
    assert gate.wait_passage("in", 0.4, since=before) is False
    assert gate.read_counters() == before
    assert "arm_unlocked" not in gate.read_sensors()  # the arm locked itself again


def test_operator_switches_modes_and_emergency_means_free(rig):
    sim, gate = rig
    gate.set_mode("locked")
    assert gate.read_mode() == "locked" and sim.mode == "locked"
    gate.set_mode("emergency")
    assert gate.read_mode() == "free"
    assert "arm_unlocked" in gate.read_sensors()
    gate.set_mode("normal")
    assert gate.read_mode() == "normal"


def test_locked_turnstile_does_not_open_for_a_command(rig):
    sim, gate = rig
    gate.set_mode("locked")
    before = gate.read_counters()
    gate.open_once("in")
    assert sim.arm_state == "locked"
    assert gate.wait_passage("in", 0.2, since=before) is False


def test_free_passage_counts_every_visitor(rig):
    sim, gate = rig
    gate.set_mode("free")
    sim.walk_through("in")
    sim.walk_through("in")
    sim.walk_through("out")
    assert gate.read_counters() == Counters(2, 1)


def test_alarms_are_reported_by_name_and_cleared(rig):
    sim, gate = rig
    assert gate.read_alarms() == frozenset()
    sim.raise_alarm("tamper")
    sim.raise_alarm("fire")
    assert gate.read_alarms() == {"tamper", "fire"}
    sim.clear_alarms()
    assert gate.read_alarms() == frozenset()


def test_silent_controller_times_out_within_retries_and_recovers(coil_rig):
    sim, gate = coil_rig
    sim.silent = True
    start = time.monotonic()
    with pytest.raises(DeviceTimeout) as err:
        gate.read_counters()
    elapsed = time.monotonic() - start
    assert elapsed < TIMEOUT * (RETRIES + 1) + 0.5
    assert err.value.port == gate.port and "no answer" in str(err.value)
    assert not gate.healthy
    sim.silent = False
    assert gate.read_counters() == Counters(0, 0)
    assert gate.healthy


def test_controller_silent_for_long_does_not_wedge_the_gate(coil_rig):
    # pymodbus drops a TCP connection after retries+3 unanswered requests; the driver reconnects.
    sim, shared = coil_rig
    shared.close()  # a serial port is opened exclusively: one driver at a time
    gate = _driver(sim)
    gate.timeout, gate.retries = 0.1, 0
    sim.silent = True
    for _ in range(5):
        with pytest.raises(DeviceTimeout):
            gate.read_alarms()
    sim.silent = False
    gate.open_once("in")
    assert gate.wait_passage("in", 2.0, since=Counters(0, 0))
    gate.close()


def test_crc_error_on_rtu_is_reported_as_frame_error_not_a_hang():
    with TurnstileSimulator("swing-regcmd", transport="rtu").start() as sim:
        gate = _driver(sim)
        sim.corrupt_responses = RETRIES + 1  # every try of one request gets a broken CRC
        start = time.monotonic()
        with pytest.raises(FrameError) as err:
            gate.read_counters()
        assert time.monotonic() - start < TIMEOUT * (RETRIES + 1) + 0.5
        assert err.value.port == sim.serial_path and "CRC" in err.value.message
        assert gate.read_counters() == Counters(0, 0)
        gate.close()


def test_single_corrupted_answer_is_retried_transparently():
    with TurnstileSimulator("tripod-coil", transport="rtu").start() as sim:
        gate = _driver(sim)
        sim.corrupt_responses = 1
        assert gate.read_counters() == Counters(0, 0)
        gate.close()


def test_controller_refusing_a_command_is_a_device_fault(coil_rig):
    sim, gate = coil_rig
    sim.refuse_commands = True
    with pytest.raises(DeviceFault) as err:
        gate.open_once("in")
    assert err.value.code == 6  # Modbus exception "device busy"
    sim.refuse_commands = False
    gate.open_once("in")


def test_wrong_unit_id_gets_no_answer():
    with TurnstileSimulator("tripod-coil", transport="tcp", unit_id=3).start() as sim:
        gate = Turnstile("tripod-coil", tcp=sim.tcp_address, unit_id=4, timeout=0.1, retries=0)
        with pytest.raises(DeviceTimeout):
            gate.read_counters()
        gate.close()


def test_unreachable_controller_is_reported_disconnected():
    gate = Turnstile("tripod-coil", tcp=("127.0.0.1", free_port()), timeout=0.2, retries=0)
    with pytest.raises(DeviceDisconnected) as err:
        gate.connect()
    assert err.value.port.startswith("tcp:127.0.0.1:")
    with pytest.raises(DeviceDisconnected):
        gate.read_counters()


def test_missing_serial_port_is_reported_disconnected(tmp_path):
    gate = Turnstile("tripod-coil", serial=str(tmp_path / "ttyUSB9"), timeout=0.2, retries=0)
    with pytest.raises(DeviceDisconnected) as err:
        gate.read_counters()
    assert "ttyUSB9" in err.value.port


def test_32bit_counters_cross_the_16bit_boundary():
    with TurnstileSimulator("swing-regcmd", transport="tcp").start() as sim:
        sim.entries = 0xFFFF
        gate = _driver(sim)
        before = gate.read_counters()
        assert before.entries == 0xFFFF
        gate.open_once("in")
        assert gate.wait_passage("in", 2.0, since=before)
        assert gate.read_counters().entries == 0x10000
        gate.close()


def test_16bit_counter_wrapping_still_counts_as_a_passage():
    with TurnstileSimulator("tripod-coil", transport="tcp").start() as sim:
        sim.entries = 0xFFFF
        gate = _driver(sim)
        before = gate.read_counters()
        gate.open_once("in")
        assert gate.wait_passage("in", 2.0, since=before)
        assert gate.read_counters().entries == 0
        gate.close()


NEW_MODEL = """
[controller]
model = "acme-flap"
[open]
type = "coil"
in = 40
out = 41
[mode]
table = "holding"
address = 10
values = { normal = 5, free = 6, locked = 7 }
[counters]
table = "input"
entries = 20
exits = 22
words = 2
word_order = "little"
[alarms]
table = "coil"
points = { tamper = 50, fire = 51 }
"""


def test_new_controller_model_needs_a_file_not_code(tmp_path):
    path = tmp_path / "acme-flap.toml"
    path.write_text(NEW_MODEL)
    profile = ControllerProfile.load(path)
    with TurnstileSimulator(profile, transport="rtu").start() as sim:
        gate = _driver(sim)
        sim.entries = 70000
        gate.set_mode("locked")
        assert sim.mode == "locked"
        gate.set_mode("normal")
        before = gate.read_counters()
        assert before == Counters(70000, 0)
        gate.open_once("out")
        assert gate.wait_passage("out", 2.0, since=before)
        sim.raise_alarm("fire")
        assert gate.read_alarms() == {"fire"}
        assert gate.read_sensors() == frozenset()  # this model has no sensor bits
        gate.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace("in = 40\n", ""), "missing key open.in"),
        (lambda t: t.replace('type = "coil"', 'type = "relay"'), "open.type must be one of"),
        (lambda t: t.replace("words = 2", "words = 3"), "counters.words must be 1 or 2"),
        (lambda t: t.replace("locked = 7", "locked = -1"), "mode.values.locked"),
        (lambda t: t.replace("exits = 22", 'exits = "22"'), "counters.exits must be an integer"),
        (lambda t: t + "\n[[broken", "not valid TOML"),
    ],
)
def test_profile_errors_name_the_file_and_the_key(tmp_path, change, message):
    path = tmp_path / "bad.toml"
    path.write_text(change(NEW_MODEL))
    with pytest.raises(ProfileError) as err:
        ControllerProfile.load(path)
    assert message in str(err.value)
    if "TOML" not in message:
        assert str(path) in str(err.value)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ProfileError, match="tripod-coil"):
        ControllerProfile.load("no-such-model")


def test_bad_direction_and_mode_are_programming_errors(coil_rig):
    _sim, gate = coil_rig
    with pytest.raises(ValueError):
        gate.open_once("sideways")
    with pytest.raises(ValueError):
        gate.set_mode("party")
