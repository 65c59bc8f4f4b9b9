"""The MQTT topic tree, versioned under `gates/v1`.

    gates/v1/{site}/gate/{gate}/event          gate -> central, QoS 1: every decision (PassageEvent);
                                               the site's other gates read it to share usage
    gates/v1/{site}/gate/{gate}/event/ack      central -> gate, QoS 1: these events are stored (EventAck);
                                               only then does the gate drop them from its outbox
    gates/v1/{site}/gate/{gate}/status         gate -> all, retained; the Last Will marks it offline
    gates/v1/{site}/gate/{gate}/config         central -> gate, retained, versioned (GateConfig)
    gates/v1/{site}/gate/{gate}/config/ack     gate -> central (ConfigAck)
    gates/v1/{site}/gate/{gate}/cmd            central -> gate (Command)
    gates/v1/{site}/gate/{gate}/cmd/ack        gate -> central (CommandAck)
    gates/v1/{site}/gate/{gate}/claim          gate -> central (ClaimRequest)
    gates/v1/{site}/gate/{gate}/claim/reply    central -> gate (ClaimReply)
    gates/v1/{site}/gate/{gate}/sync/request   gate -> central (SnapshotRequest)
    gates/v1/{site}/gate/{gate}/sync           central -> gate (SnapshotChunk)
    gates/v1/{site}/gate/{gate}/fire           gate -> the site's gates and the central, retained, QoS 1
                                               (FireAlarm): its controller's fire input, so the gates of its
                                               zone or site open at once, without the central
    gates/v1/{site}/gate/{gate}/help           gate -> central, QoS 1 (HelpRequest): a pass refused for its
                                               biometric, for staff at the gate (cmd staff_admit/refuse)
    gates/v1/{site}/deltas                     central -> gates, QoS 1, sequence-numbered (Delta)
    gates/v1/{site}/cmd                        central -> every gate of the site (Command: emergency)
    gates/v1/{site}/occupancy                  central -> all, retained (Occupancy)
    gates/v1/{site}/live/passages              central -> dashboards, QoS 0: the passages just stored, each
                                               once (StoredPassages; gates may not read it)

A gate publishes only below its own `gate/{gate}/` prefix; the ACL the central writes for Mosquitto
(`acl_for_gate`) says exactly that, and lets it read its own config, commands, replies and sync, and
the site's shared topics.
"""

from __future__ import annotations

import re

ROOT = "gates/v1"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_name(kind: str, value: str) -> str:
    """Site and gate ids become topic levels: no wildcards, separators or empty levels."""
    # fullmatch, not match: `$` would accept "g1\n" and so a newline inside a Mosquitto ACL line.
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(f"{kind} id {value!r} must be 1-64 characters of A-Z a-z 0-9 _ -")
    return value


def gate_prefix(site: str, gate: str) -> str:
    return f"{ROOT}/{check_name('site', site)}/gate/{check_name('gate', gate)}"


def event(site: str, gate: str) -> str:
    return f"{gate_prefix(site, gate)}/event"


def event_ack(site: str, gate: str) -> str:
    return f"{gate_prefix(site, gate)}/event/ack"


def status(site: str, gate: str) -> str:
    return f"{gate_prefix(site, gate)}/status"


def config(site: str, gate: str) -> str:
    return f"{gate_prefix(site, gate)}/config"


def config_ack(site: str, gate: str) -> str:
    return f"{gate_prefix(site, gate)}/config/ack"


def command(site: str, gate: str) -> str:
    return f"{gate_prefix(site, gate)}/cmd"


def command_ack(site: str, gate: str) -> str:
    return f"{gate_prefix(site, gate)}/cmd/ack"


def claim(site: str, gate: str) -> str:
    return f"{gate_prefix(site, gate)}/claim"


def claim_reply(site: str, gate: str) -> str:
    return f"{gate_prefix(site, gate)}/claim/reply"


def sync_request(site: str, gate: str) -> str:
    return f"{gate_prefix(site, gate)}/sync/request"


def sync(site: str, gate: str) -> str:
    return f"{gate_prefix(site, gate)}/sync"


def fire(site: str, gate: str) -> str:
    return f"{gate_prefix(site, gate)}/fire"


def help_request(site: str, gate: str) -> str:
    return f"{gate_prefix(site, gate)}/help"


def counts(site: str, gate: str) -> str:
    """The gate's own passage counts of the day (`GateCounts`, retained): the live counts' light path."""
    return f"{gate_prefix(site, gate)}/counts"


def deltas(site: str) -> str:
    return f"{ROOT}/{check_name('site', site)}/deltas"


def site_command(site: str) -> str:
    return f"{ROOT}/{check_name('site', site)}/cmd"


def occupancy(site: str) -> str:
    return f"{ROOT}/{check_name('site', site)}/occupancy"


def live_passages(site: str) -> str:
    return f"{ROOT}/{check_name('site', site)}/live/passages"


# Subscriptions with wildcards, for the central and for gates sharing usage.
def all_events(site: str = "+") -> str:
    return f"{ROOT}/{site}/gate/+/event"


def all_live_passages() -> str:
    return f"{ROOT}/+/live/passages"


def all_occupancy() -> str:
    return f"{ROOT}/+/occupancy"


def all_of_kind(suffix: str, site: str = "+") -> str:
    """e.g. all_of_kind('status') -> gates/v1/+/gate/+/status"""
    return f"{ROOT}/{site}/gate/+/{suffix}"


def shared(group: str, topic: str) -> str:
    """An MQTT 5 shared subscription: workers in one group split the messages of `topic`."""
    return f"$share/{group}/{topic}"


def parse_gate_topic(topic: str) -> tuple[str, str, str]:
    """Split `gates/v1/{site}/gate/{gate}/{rest}` into (site, gate, rest); ValueError otherwise."""
    parts = topic.split("/", 5)
    if len(parts) < 6 or f"{parts[0]}/{parts[1]}" != ROOT or parts[3] != "gate":
        raise ValueError(f"not a gate topic: {topic!r}")
    check_name("site", parts[2])
    check_name("gate", parts[4])
    return parts[2], parts[4], parts[5]


def acl_for_gate(site: str, gate: str, username: str | None = None) -> str:
    """The Mosquitto ACL block for one gate's MQTT user."""
    p = gate_prefix(site, gate)
    user = username or f"gate-{site}-{gate}"
    if not user.isprintable() or any(c.isspace() for c in user):
        raise ValueError(f"MQTT user name {user!r} must be one printable word (it is a line of the ACL file)")
    return "\n".join([
        f"user {user}",
        f"topic write {p}/event",
        f"topic write {p}/status",
        f"topic write {p}/config/ack",
        f"topic write {p}/cmd/ack",
        f"topic write {p}/claim",
        f"topic write {p}/sync/request",
        f"topic write {p}/fire",
        f"topic write {p}/help",
        f"topic write {p}/counts",
        f"topic read {p}/config",
        f"topic read {p}/event/ack",
        f"topic read {p}/cmd",
        f"topic read {p}/claim/reply",
        f"topic read {p}/sync",
        f"topic read {ROOT}/{site}/gate/+/event",
        f"topic read {ROOT}/{site}/gate/+/status",
        f"topic read {ROOT}/{site}/gate/+/fire",
        f"topic read {deltas(site)}",
        f"topic read {site_command(site)}",
        f"topic read {occupancy(site)}",
        "",
    ])


def replication_user(server: str) -> str:
    """A park server's bridge user on the head office's broker."""
    return f"bridge-{check_name('server', server)}"


def acl_for_park_server(head_office: str, server: str) -> str:
    """What a park server's bridge may do on the head office's broker: send its own replication (its
    changes and acknowledgements, under its own name) and read what is for it; nothing of the gates'."""
    check_name("server", head_office)
    return "\n".join([
        f"user {replication_user(server)}",
        f"topic write {ROOT}/repl/{head_office}/changes/{server}",
        f"topic write {ROOT}/repl/{head_office}/ack/{server}",
        f"topic read {ROOT}/repl/{server}/#",
        "",
    ])


def acl_for_central(username: str = "central") -> str:
    return f"user {username}\ntopic readwrite {ROOT}/#\ntopic read $share/#\n"
