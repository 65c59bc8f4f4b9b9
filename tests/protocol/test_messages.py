"""MQTT topics and message schemas: every message round-trips, every decoder refuses bad input by name."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from protocol import topics
from protocol.errors import MessageError, ProtocolError
from protocol.ids import id_number_digest, new_event_id
from protocol.messages import (
    MAX_BYTES,
    ClaimReply,
    ClaimRequest,
    Command,
    CommandAck,
    ConfigAck,
    Delta,
    EventAck,
    FireAlarm,
    GateConfig,
    GateCounts,
    GateSeen,
    GateStatus,
    HelpRequest,
    HolderForget,
    Occupancy,
    OpeningHours,
    PassageEvent,
    PassChange,
    PublicKeyInfo,
    ReaderHealth,
    SnapshotChunk,
    SnapshotRequest,
    StoredPassage,
    StoredPassages,
    TemplateChange,
    TicketChange,
    TicketTypeRules,
    V,
    ZoneCount,
    ZoneTally,
    decode,
    encode,
)

AT = datetime(2025, 5, 1, 10, 0, 0, 123000, tzinfo=timezone(timedelta(hours=8)))
CHANGES = [
    TicketChange(ticket_id=7, ticket_type=1, status="revoked", valid_from=AT, valid_to=AT + timedelta(hours=8),
                 slot_start=AT, slot_end=AT + timedelta(hours=1), headcount=3, zones=[1, 2], id_digest="ab" * 16),
    PassChange(pass_id=3, holder_id="H3", card_uid="04A1B2C3", status="lost", valid_from=AT, zones=[1]),
    TemplateChange(holder_id="H3", kind="face", data=bytes(range(256)) * 2, version=2),
    HolderForget(holder_id="H4"),
]
SAMPLES: dict[type, msgspec.Struct] = {
    PassageEvent: PassageEvent(
        id=new_event_id(), site="lijiang", gate="north-1", zone=1, at=AT, direction="in", credential_kind="qr",
        credential_ref="T123", decision="refused", reason="too_early", passed=False, headcount=2, offline=True,
        ticket_type=3, claim_id="c1", binding=b"\x01\x02", face_distance=0.41),
    EventAck: EventAck(gate="north-1", ids=[new_event_id(), new_event_id()]),
    GateStatus: GateStatus(site="lijiang", gate="north-1", online=False, at=AT, mode="locked", config_version=4,
                           store_seq=17, outbox=2, readers=[ReaderHealth(name="qr", ok=False, detail="timeout")],
                           controller_ok=False, alarms=["door forced"], agent_version="1.2.3"),
    GateConfig: GateConfig(
        version=4, site="lijiang", gate="north-1", zone=2, direction="in", mode="free", claim="central",
        timezone="Europe/Berlin", language="en", opening=OpeningHours(opens="08:00", closes="24:00"),
        face_threshold=0.5, pass_biometric="either",
        ticket_types=[TicketTypeRules(id=3, name="day", entries=2, same_person=True, anti_passback=True,
                                      min_gap_s=600, zones=[1, 2], weekdays=[5, 6], slot_grace_min=10,
                                      staff_check=True)],
        fire_scope="site", emergency_ended_at=AT,
        keys=[PublicKeyInfo(key_id=1, public=bytes(32), retired_at=AT, grace_s=86400)], id_salt=b"s" * 16),
    ConfigAck: ConfigAck(gate="north-1", version=4, applied=False, error="zone 40 unknown"),
    Command: Command(id="cmd-1", kind="set_mode", mode="emergency", at=AT),
    CommandAck: CommandAck(id="cmd-1", gate="north-1", ok=True),
    ClaimRequest: ClaimRequest(id="c1", site="lijiang", gate="north-1", zone=1, credential_kind="id_card",
                               credential_ref="D1", ticket_type=2, headcount=2, allowed=2, at=AT),
    ClaimReply: ClaimReply(id="c1", granted=False, reason="claimed_elsewhere", passages=0),
    Delta: Delta(site="lijiang", seq=42, at=AT, changes=CHANGES),
    SnapshotRequest: SnapshotRequest(gate="north-1", have_seq=41, reason="gap"),
    SnapshotChunk: SnapshotChunk(site="lijiang", gate="north-1", snapshot_id="s1", index=0, last=True, seq=42,
                                 changes=CHANGES),
    Occupancy: Occupancy(site="lijiang", at=AT, zones=[ZoneCount(zone=1, name="old town", inside=-1, capacity=500)],
                         day=AT.date(), gates=[GateSeen(gate="east-1", zone=1, entries=40, exits=3)]),
    GateCounts: GateCounts(site="lijiang", gate="east-1", day=AT.date(), at=AT,
                           zones=[ZoneTally(zone=1, entries=41, exits=3)]),
    StoredPassages: StoredPassages(site="lijiang", events=[StoredPassage(id="0192a9e4-1", gate="east-1", zone=1, at=AT,
                                                                         direction="in", passed=True)]),
    FireAlarm: FireAlarm(site="lijiang", gate="north-1", zone=2, scope="site", active=True, at=AT),
    HelpRequest: HelpRequest(id="h1", site="lijiang", gate="north-1", at=AT, direction="in",
                             credential_kind="annual_pass", credential_ref="P7", holder_id="H7",
                             reason="not_same_person", frame=b"\xff\xd8\xff" + bytes(100)),
}
KINDS = list(MAX_BYTES)
ids = [k.__name__ for k in KINDS]


def _required(kind: type) -> str:
    """A required field of `kind` (one a sender must always fill)."""
    for f in msgspec.structs.fields(kind):
        if f.required and f.name != "v":
            return f.name
    raise AssertionError(kind)


def _as_dict(kind: type) -> dict:
    return json.loads(encode(SAMPLES[kind]))


def _refused(kind: type, payload) -> MessageError:
    with pytest.raises(MessageError) as caught:
        decode(kind, payload)
    assert isinstance(caught.value, ProtocolError) and isinstance(caught.value, ValueError)
    return caught.value


def test_every_message_kind_has_a_sample() -> None:
    assert set(SAMPLES) == set(MAX_BYTES)


@pytest.mark.parametrize("kind", KINDS, ids=ids)
def test_every_message_round_trips(kind: type) -> None:
    payload = encode(SAMPLES[kind])
    assert decode(kind, payload) == SAMPLES[kind]
    assert decode(kind, bytearray(payload)) == SAMPLES[kind]
    assert decode(kind, memoryview(payload)) == SAMPLES[kind]
    assert decode(kind, payload.decode()) == SAMPLES[kind]
    assert json.loads(payload)["v"] == V


@pytest.mark.parametrize("kind", KINDS, ids=ids)
def test_a_newer_sender_may_add_fields(kind: type) -> None:
    data = _as_dict(kind) | {"added_in_a_later_minor": {"x": [1, 2]}}
    assert decode(kind, json.dumps(data).encode()) == SAMPLES[kind]


@pytest.mark.parametrize("kind", KINDS, ids=ids)
def test_an_oversized_payload_is_refused_before_parsing(kind: type) -> None:
    limit = MAX_BYTES[kind]
    padded = encode(SAMPLES[kind]) + b" " * limit
    assert _refused(kind, padded).reason == "oversized"
    assert _refused(kind, padded.decode()).reason == "oversized"


@pytest.mark.parametrize("kind", KINDS, ids=ids)
@pytest.mark.parametrize("payload", [b"", b"not json", b"{", b"\xff\xfe", b'{"v":1,}', "\ud800"],
                         ids=["empty", "words", "open brace", "not utf-8", "trailing comma", "lone surrogate"])
def test_what_is_not_json_is_malformed(kind: type, payload) -> None:
    assert _refused(kind, payload).reason == "malformed"


@pytest.mark.parametrize("kind", KINDS, ids=ids)
def test_a_deeply_nested_payload_is_malformed_not_a_recursion_error(kind: type) -> None:
    depth = MAX_BYTES[kind] // 2 - 20 if MAX_BYTES[kind] < 100_000 else 50_000
    payload = b'{"x":' + b"[" * depth + b"]" * depth + b"}"
    assert _refused(kind, payload).reason in {"malformed", "invalid"}


@pytest.mark.parametrize("kind", KINDS, ids=ids)
@pytest.mark.parametrize("v", [2, 0, -1, "1", 1.0, True, None, [1]])
def test_another_version_is_refused_naming_v(kind: type, v) -> None:
    data = _as_dict(kind) | {"v": v}
    error = _refused(kind, json.dumps(data).encode())
    assert error.field == "$.v"
    assert error.reason in ({"version"} if v is not None else {"version", "invalid"})


@pytest.mark.parametrize("kind", KINDS, ids=ids)
def test_a_message_of_version_2_with_other_fields_is_refused_for_its_version(kind: type) -> None:
    error = _refused(kind, b'{"v":2,"payload":{"renamed":true}}')
    assert (error.reason, error.field) == ("version", "$.v")


@pytest.mark.parametrize("kind", KINDS, ids=ids)
def test_a_wrong_typed_field_is_named(kind: type) -> None:
    name = _required(kind)
    data = _as_dict(kind) | {name: {"not": "this"}}
    error = _refused(kind, json.dumps(data).encode())
    assert (error.reason, error.field) == ("invalid", f"$.{name}")
    assert f"$.{name}" in str(error)


@pytest.mark.parametrize("kind", KINDS, ids=ids)
def test_a_missing_field_is_named(kind: type) -> None:
    name = _required(kind)
    data = _as_dict(kind)
    del data[name]
    error = _refused(kind, json.dumps(data).encode())
    assert (error.reason, error.field) == ("invalid", f"$.{name}")


@pytest.mark.parametrize("kind", [k for k in KINDS if "at" in msgspec.structs.asdict(SAMPLES[k])],
                         ids=lambda k: k.__name__)
def test_a_naive_time_is_refused(kind: type) -> None:
    data = _as_dict(kind) | {"at": "2025-05-01T10:00:00"}
    assert _refused(kind, json.dumps(data).encode()).field == "$.at"


@pytest.mark.parametrize("kind, field, value", [
    (PassageEvent, "headcount", 256), (PassageEvent, "headcount", -1), (PassageEvent, "zone", 256),
    (PassageEvent, "direction", "sideways"), (PassageEvent, "credential_kind", "palm"),
    (PassageEvent, "credential_ref", "x" * 129), (PassageEvent, "id", "short"), (PassageEvent, "mode", "party"),
    (PassageEvent, "gate", "north/1"), (PassageEvent, "gate", "+"), (PassageEvent, "gate", "#"),
    (PassageEvent, "gate", "north-1\n"), (PassageEvent, "site", ""), (PassageEvent, "site", "x" * 65),
    (PassageEvent, "binding", "not base64!"), (PassageEvent, "passed", 1),
    (GateConfig, "version", 0), (GateConfig, "zone", 33), (GateConfig, "timezone", "Mars/Olympus"),
    (GateConfig, "timezone", "../../etc/passwd"), (GateConfig, "claim_deadline_ms", 5),
    (GateConfig, "id_salt", "c2hvcnQ="), (GateConfig, "face_threshold", 2),
    (Command, "kind", "self_destruct"), (Delta, "seq", 0), (Occupancy, "zones", None),
], ids=lambda x: x.__name__ if isinstance(x, type) else repr(x)[:20])
def test_an_out_of_range_value_is_refused_naming_its_field(kind: type, field: str, value) -> None:
    data = _as_dict(kind) | {field: value}
    assert _refused(kind, json.dumps(data).encode()).field == f"$.{field}"


@pytest.mark.parametrize("opening, field", [
    ({"opens": "25:00"}, "$.opening.opens"), ({"opens": "8:00"}, "$.opening.opens"),
    ({"closes": "18:60"}, "$.opening.closes"), ({"closes": "24:01"}, "$.opening.closes"),
    ({"opens": "08:00\n"}, "$.opening.opens"), ({"opens": "\u0661\u0662:00"}, "$.opening.opens"),
])
def test_opening_hours_the_rules_cannot_read_are_refused(opening: dict, field: str) -> None:
    data = _as_dict(GateConfig) | {"opening": opening}
    assert _refused(GateConfig, json.dumps(data).encode()).field == field


def test_nested_fields_are_named_with_their_path() -> None:
    data = _as_dict(Delta)
    del data["changes"][0]["ticket_id"]
    assert _refused(Delta, json.dumps(data).encode()).field == "$.changes[0].ticket_id"
    data = _as_dict(Delta)
    data["changes"][1]["card_uid"] = "04a1"
    assert _refused(Delta, json.dumps(data).encode()).field == "$.changes[1].card_uid"
    data = _as_dict(Delta)
    data["changes"][2]["type"] = "payment"
    assert _refused(Delta, json.dumps(data).encode()).field == "$.changes[2].type"
    data = _as_dict(GateStatus)
    data["readers"][0]["ok"] = "yes"
    assert _refused(GateStatus, json.dumps(data).encode()).field == "$.readers[0].ok"


def test_a_payload_of_another_kind_is_refused() -> None:
    assert _refused(PassageEvent, encode(SAMPLES[GateStatus])).reason == "invalid"
    assert _refused(GateConfig, b"[]").reason == "invalid"


def test_an_error_never_repeats_the_whole_payload() -> None:
    secret = "T" + "9" * 100
    data = _as_dict(PassageEvent) | {"credential_ref": secret + "x" * 100}
    assert secret not in str(_refused(PassageEvent, json.dumps(data).encode()))


# --- ids ------------------------------------------------------------------------------------------


def test_event_ids_are_unique_and_time_ordered() -> None:
    batch = [new_event_id() for _ in range(5000)]
    assert len(set(batch)) == len(batch)
    assert batch == sorted(batch)
    assert all(len(i) == 36 and i[14] == "7" for i in batch)  # UUID version 7
    decode(PassageEvent, encode(msgspec.structs.replace(SAMPLES[PassageEvent], id=batch[0])))


def test_id_number_digests_are_salted_and_normalised() -> None:
    a = id_number_digest(b"salt-a" * 3, " 11010119900307123x ")
    assert a == id_number_digest(b"salt-a" * 3, "11010119900307123X")
    assert a != id_number_digest(b"salt-b" * 3, "11010119900307123X")
    assert len(a) == 32 and "11010119900307123" not in a


# --- topics ---------------------------------------------------------------------------------------

GATE_TOPICS = [topics.event, topics.status, topics.config, topics.config_ack, topics.command, topics.command_ack,
               topics.claim, topics.claim_reply, topics.sync_request, topics.sync, topics.counts]
SITE_TOPICS = [topics.deltas, topics.site_command, topics.occupancy]


def test_the_topic_tree_is_versioned_per_site_and_gate() -> None:
    assert topics.event("lijiang", "north-1") == "gates/v1/lijiang/gate/north-1/event"
    assert topics.deltas("lijiang") == "gates/v1/lijiang/deltas"
    assert topics.occupancy("lijiang") == "gates/v1/lijiang/occupancy"
    assert topics.all_events() == "gates/v1/+/gate/+/event"
    assert topics.shared("ingest", topics.all_events()) == "$share/ingest/gates/v1/+/gate/+/event"


@pytest.mark.parametrize("bad", ["+", "#", "a/b", "", "a b", "north-1\n", "\nnorth", "x" * 65, "门", "a+", None, 7])
def test_topic_builders_refuse_ids_that_are_not_one_topic_level(bad) -> None:
    for build in GATE_TOPICS:
        with pytest.raises(ValueError):
            build("lijiang", bad)
        with pytest.raises(ValueError):
            build(bad, "north-1")
    for build in SITE_TOPICS:
        with pytest.raises(ValueError):
            build(bad)


@pytest.mark.parametrize("build", GATE_TOPICS, ids=lambda b: b.__name__)
def test_parse_gate_topic_inverts_every_gate_topic(build) -> None:
    site, gate, rest = topics.parse_gate_topic(build("lijiang", "north-1"))
    assert (site, gate) == ("lijiang", "north-1")
    assert build(site, gate) == f"{topics.gate_prefix(site, gate)}/{rest}"


@pytest.mark.parametrize("topic", [
    "gates/v1/lijiang/deltas", "gates/v2/lijiang/gate/g/event", "other/v1/s/gate/g/event", "gates/v1/s/gate/g",
    "gates/v1/s/gates/g/event", "gates/v1//gate//event", "gates/v1/+/gate/+/event", "", "gates/v1/s/gate/#/event",
])
def test_parse_gate_topic_refuses_other_topics(topic: str) -> None:
    with pytest.raises(ValueError):
        topics.parse_gate_topic(topic)


def test_a_gate_may_write_only_its_own_topics() -> None:
    acl = topics.acl_for_gate("lijiang", "north-1")
    lines = acl.strip().splitlines()
    assert lines[0] == "user gate-lijiang-north-1"
    own = topics.gate_prefix("lijiang", "north-1") + "/"
    writes = [line.split(" ", 2)[2] for line in lines if line.startswith("topic write")]
    assert writes and all(t.startswith(own) and "+" not in t and "#" not in t for t in writes)
    assert set(writes) == {topics.event("lijiang", "north-1"), topics.status("lijiang", "north-1"),
                           topics.config_ack("lijiang", "north-1"), topics.command_ack("lijiang", "north-1"),
                           topics.claim("lijiang", "north-1"), topics.sync_request("lijiang", "north-1"),
                           topics.fire("lijiang", "north-1"), topics.help_request("lijiang", "north-1"),
                           topics.counts("lijiang", "north-1")}
    assert not any(line.startswith("topic readwrite") for line in lines)
    reads = {line.split(" ", 2)[2] for line in lines if line.startswith("topic read ")}
    assert {topics.config("lijiang", "north-1"), topics.command("lijiang", "north-1"),
            topics.deltas("lijiang"), topics.site_command("lijiang"), topics.occupancy("lijiang"),
            topics.all_of_kind("fire", "lijiang")} <= reads  # the fire alarm of the site's other gates
    assert all(t.startswith("gates/v1/lijiang/") for t in reads)  # nothing of another site


def test_an_acl_user_name_cannot_break_the_acl_file() -> None:
    assert topics.acl_for_gate("s", "g", username="gate-7").startswith("user gate-7\n")
    for bad in ("a\ntopic readwrite #", "a b", ""):
        with pytest.raises(ValueError):
            topics.acl_for_gate("s", "g", username=bad) if bad else topics.acl_for_gate("s", "g\n")


def test_the_central_may_read_and_write_the_whole_tree() -> None:
    assert "topic readwrite gates/v1/#" in topics.acl_for_central()


def test_a_gate_status_is_what_the_last_will_says() -> None:
    """The Last Will a gate registers is an ordinary GateStatus with online False."""
    will = GateStatus(site="lijiang", gate="north-1", online=False, at=datetime(2025, 5, 1, tzinfo=UTC))
    assert decode(GateStatus, encode(will)).online is False


@pytest.mark.parametrize("kind, old", [
    (PassageEvent, b'"credential_ref":"T123"'), (GateStatus, b'"agent_version":"1.2.3"'),
    (ConfigAck, b'"error":"zone 40 unknown"'), (Delta, b'"holder_id":"H4"'), (Occupancy, b'"name":"old town"'),
], ids=lambda x: x.__name__ if isinstance(x, type) else "")
def test_invalid_utf8_inside_a_string_is_malformed_not_a_unicode_error(kind: type, old: bytes) -> None:
    """msgspec raises UnicodeDecodeError (not DecodeError) for this; found by test_fuzz."""
    payload = encode(SAMPLES[kind])
    assert old in payload
    bad = old[:-1] + b"\x80" + old[-1:]
    assert _refused(kind, payload.replace(old, bad)).reason == "malformed"
