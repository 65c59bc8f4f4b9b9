"""The brokers of a cluster a client may connect to, tried in turn: the configured `host:port` first,
then each `failover` address, round and round (a gate or the central on NATS or RabbitMQ clusters).

paho connects to one host. When a connection attempt fails or an established one drops, the link asks
`advance` for the next address and hands it to paho's `connect_async` (from paho's own callback, where
no connection is open); paho's reconnect loop, with its back-off, then connects there. (paho's `host`
setter refuses a client whose connection was lost rather than closed, so it cannot serve here.) Sessions
and subscriptions follow as the broker keeps them: a clustered broker shares a persistent session
between its nodes (NATS keeps MQTT sessions in replicated JetStream streams), so a client resumes on
another node what it had on the one that went away.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence

log = logging.getLogger(__name__)
_ADDRESS = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$(?!\n)")


def parse_address(text: str) -> tuple[str, int]:
    """"host:port" (IPv6 as [addr]:port) as (host, port), or ValueError naming what is wrong."""
    found = _ADDRESS.match(text.strip()) if isinstance(text, str) else None
    if found is None or not 0 < int(found["port"]) < 65536:
        raise ValueError(f"{text!r} is not a broker address like host:1883")
    return found["host"].strip("[]"), int(found["port"])


class BrokerRotation:
    """The addresses to try, and which one the client is pointed at."""

    def __init__(self, host: str, port: int, failover: Sequence[str] = ()) -> None:
        self.addresses = [(host, port)] + [parse_address(a) for a in failover]
        self._index = 0
        self._lock = threading.Lock()

    @property
    def current(self) -> tuple[str, int]:
        return self.addresses[self._index]

    def advance(self) -> tuple[str, int] | None:
        """The next address to connect to; None with a single one (paho then retries that one)."""
        if len(self.addresses) < 2:
            return None
        with self._lock:
            self._index = (self._index + 1) % len(self.addresses)
            address = self.addresses[self._index]
        log.info("next broker of the cluster: %s:%s", *address)
        return address


__all__ = ["BrokerRotation", "parse_address"]
