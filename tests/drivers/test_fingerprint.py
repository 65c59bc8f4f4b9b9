"""AS608 packets (codec alone, canned packets, fuzzed) and the module driver against its pty simulator."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import fingerprint_packets as p
from drivers.errors import DeviceFault, DeviceTimeout, FrameError
from drivers.fingerprint import FingerprintModule, SearchHit
from drivers.sim.fingerprint_sim import FingerprintModuleSim
from tests.drivers.conftest import hex_fixture

TEMPLATE_A = bytes(range(256)) * 2  # 512 bytes, the size of an AS608 character file
TEMPLATE_B = bytes(reversed(range(256))) * 2

# -- the codec ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "built"),
    [
        ("verify_password_cmd", p.command(p.VERIFY_PASSWORD, bytes(4))),
        ("gen_img_cmd", p.command(p.GEN_IMG)),
        ("search_cmd", p.command(p.SEARCH, bytes([1, 0, 0, 0x01, 0x2C]))),
        ("ack_ok", p.ack(p.OK)),
        ("ack_no_finger", p.ack(p.NO_FINGER)),
        ("search_found", p.ack(p.OK, bytes([0, 5, 0, 150]))),
        ("template_count_ack", p.ack(p.OK, bytes([0, 2]))),
    ],
)
def test_packets_match_the_manual(name, built):
    assert built == hex_fixture("as608", name)
    assert p.decode_packet(built) == p.decode_packet(hex_fixture("as608", name))


def test_packet_with_a_wrong_sum_is_a_frame_error():
    bad = bytearray(hex_fixture("as608", "search_found"))
    bad[-1] ^= 1
    with pytest.raises(FrameError, match="checksum"):
        p.decode_packet(bytes(bad))


def test_template_is_cut_into_data_packets_ending_with_end():
    blob = p.data_packets(TEMPLATE_A, 128)
    packets, rest = [], blob
    while rest:
        raw, used = p.split_packet(rest)
        packets.append(p.decode_packet(raw))
        rest = rest[used:]
    assert [pk.pid for pk in packets] == [p.PID_DATA] * 3 + [p.PID_END]
    assert b"".join(pk.payload for pk in packets) == TEMPLATE_A


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_decoders_raise_only_frame_error_on_arbitrary_bytes(data):
    for decode in (p.decode_packet, p.split_packet):
        try:
            decode(data)
        except FrameError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_decoders_survive_garbage_after_a_header(tail):
    for decode in (p.decode_packet, p.split_packet):
        try:
            decode(p.HEADER + tail)
        except FrameError:
            pass


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(p.PIDS), st.binary(max_size=p.MAX_PAYLOAD), st.integers(0, 0xFFFFFFFF))
def test_packet_round_trip(pid, payload, address):
    assert p.decode_packet(p.encode_packet(pid, payload, address)) == p.Packet(pid, payload, address)


# -- the module over a pseudo-terminal -------------------------------------------------------------


@pytest.fixture
def module_rig():
    sim = FingerprintModuleSim(capacity=300)
    module = FingerprintModule(sim.device_path, response_timeout=0.3, poll_interval_s=0.01)
    assert module.open()
    yield sim, module
    module.close()
    sim.close()


def test_gate_checks_the_module_password(module_rig):
    sim, module = module_rig
    assert module.verify_password() is True
    module.password = 0x1234
    assert module.verify_password() is False


def test_template_from_the_central_is_stored_and_found_by_search(module_rig):
    sim, module = module_rig
    module.store_template(12, TEMPLATE_A)
    assert sim.slots[12] == TEMPLATE_A
    sim.place_finger(TEMPLATE_A)
    assert module.capture_and_search(1.0) == SearchHit(slot=12, score=150)


def test_unknown_finger_finds_nothing(module_rig):
    sim, module = module_rig
    module.store_template(1, TEMPLATE_A)
    sim.place_finger(TEMPLATE_B)
    assert module.capture_and_search(1.0) is None


def test_no_finger_within_the_timeout_returns_none(module_rig):
    _, module = module_rig
    assert module.capture_and_search(0.1) is None


def test_template_uploads_back_unchanged(module_rig):
    _, module = module_rig
    module.store_template(299, TEMPLATE_B)
    assert module.load_template(299) == TEMPLATE_B


def test_gate_keeps_the_module_slots_in_step(module_rig):
    sim, module = module_rig
    module.read_system_parameters()
    for slot in (0, 7, 256, 299):
        module.store_template(slot, bytes([slot % 256]) * 512)
    assert module.used_slots() == {0, 7, 256, 299}
    assert module.template_count() == 4
    module.delete(7)
    assert module.used_slots() == {0, 256, 299}
    module.empty()
    assert module.template_count() == 0 and module.used_slots() == frozenset()


def test_loading_an_empty_slot_is_a_device_fault(module_rig):
    _, module = module_rig
    with pytest.raises(DeviceFault) as err:
        module.load_template(3)
    assert err.value.code == p.LOAD_FAIL and "slot" in err.value.message


def test_enrolment_from_the_sensor_takes_two_captures(module_rig):
    sim, module = module_rig
    sim.enrolment_visitor(TEMPLATE_B)
    assert module.enrol(42, timeout=3.0) is True
    assert sim.slots[42] == TEMPLATE_B


def test_enrolment_without_a_finger_gives_up_at_the_timeout(module_rig):
    sim, module = module_rig
    assert module.enrol(42, timeout=0.1) is False
    assert 42 not in sim.slots


def test_corrupted_answer_is_a_frame_error_and_the_next_call_works(module_rig):
    sim, module = module_rig
    sim.corrupt_next_packet()
    with pytest.raises(FrameError) as err:
        module.template_count()
    assert err.value.port == sim.device_path
    assert module.template_count() == 0


def test_module_that_stops_answering_times_out_and_recovers(module_rig):
    sim, module = module_rig
    sim.silent = True
    with pytest.raises(DeviceTimeout):
        module.template_count()
    sim.silent = False
    assert module.template_count() == 0


def test_module_at_another_address_is_not_answered():
    with FingerprintModuleSim(address=0x12345678) as sim:
        module = FingerprintModule(sim.device_path, response_timeout=0.1)
        with pytest.raises(DeviceTimeout):
            module.template_count()
        module.address = 0x12345678
        assert module.template_count() == 0
        module.close()
