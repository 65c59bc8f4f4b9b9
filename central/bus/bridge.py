"""The Mosquitto bridge of an on-site server: the park's broker forwards its gates' traffic to head
office over a slow link and queues it (persistence on, QoS 1) while the link is down.

`park-central bridge-config` prints this for a site; `config/mosquitto/bridge-to-head-office.conf`
is its commented example. Events may cross twice when the link drops before an acknowledgement:
the central's unique event id keeps every passage once.
"""

from __future__ import annotations

from protocol import topics

# Gate traffic that head office needs: passages, status, acknowledgements.
OUTBOUND = ("event", "status", "config/ack", "cmd/ack")
# When head office, not an on-site central, manages the gates: what else the gates send it, and what it
# sends them.
MANAGED_OUTBOUND = ("claim", "sync/request", "fire", "help", "counts")
INBOUND = ("config", "cmd", "claim/reply", "sync", "event/ack")


def bridge_config(site: str, remote_host: str, remote_port: int, *, username: str | None = None,
                  password: str | None = None, cafile: str | None = None, manage_from_head_office: bool = False,
                  restart_timeout: tuple[int, int] = (5, 60), replication: tuple[str, str] | None = None) -> str:
    """The `connection` block for the park's mosquitto.conf.

    `replication` = (this park server's name, the head office server's): the park has a central of its
    own that replicates with head office (`central.bus.replicator`): only the replicators' two topics
    cross, queued both ways while the link is down; the gates' traffic stays at the park (its central
    holds it, and the replication carries passages up: forwarded too, they would count twice)."""
    topics.check_name("site", site)
    lines = [
        f"connection head-office-{site}",
        f"address {remote_host}:{remote_port}",
        f"remote_clientid bridge-{site}",
        "cleansession false",
        "bridge_protocol_version mqttv311",
        "try_private true",
        "start_type automatic",
        f"restart_timeout {restart_timeout[0]} {restart_timeout[1]}",
    ]
    if username:
        lines += [f"remote_username {username}", f"remote_password {password or ''}"]
    if cafile:
        lines.append(f"bridge_cafile {cafile}")
    prefix = f"{topics.ROOT}/{site}"
    if replication is not None:
        if manage_from_head_office:
            raise ValueError("a park server with its own central is not managed from head office")
        server, head_office = (topics.check_name("replication server", name) for name in replication)
        lines += [f"topic {topics.ROOT}/repl/{head_office}/+/{server} out 1",
                  f"topic {topics.ROOT}/repl/{server}/# in 1"]
        return "\n".join(lines) + "\n"
    lines += [f"topic {prefix}/gate/+/{suffix} out 1" for suffix in OUTBOUND]
    if manage_from_head_office:
        lines += [f"topic {prefix}/gate/+/{suffix} out 1" for suffix in MANAGED_OUTBOUND]
        lines += [f"topic {prefix}/gate/+/{suffix} in 1" for suffix in INBOUND]
        lines += [f"topic {prefix}/deltas in 1", f"topic {prefix}/cmd in 1", f"topic {prefix}/occupancy in 1"]
    return "\n".join(lines) + "\n"
