"""The gate's Prometheus metrics, served on `[metrics] listen` (off unless configured).

    park_gate_decision_seconds{site,gate}         a decision: the credential's arrival to the open or refusal
    park_gate_decisions_total{site,gate,decision} granted, refused
    park_gate_outbox_events{site,gate}            events held for the central (read at scrape time)
    park_gate_device_up{site,gate,device}         turnstile controller and each reader (at scrape time)
    park_gate_broker_connected{site,gate}         the MQTT link
    park_face_encode_seconds{site,gate}           one camera frame to a face template

Each agent has its own registry (tests and the bench run several agents in one process). Labels are
the gate's names and device names only: nothing a visitor showed.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

log = logging.getLogger(__name__)
DECISION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


def public_address(host: str) -> bool:
    """An address that may be reachable from outside the park: every interface, or a public one."""
    if host == "localhost":
        return False
    ip = ipaddress.ip_address(host)
    return ip.is_unspecified or not (ip.is_loopback or ip.is_private or ip.is_link_local)


class _Live(Collector):
    def __init__(self, site: str, gate: str, outbox: Callable[[], int], devices: Callable[[], list[tuple[str, bool]]],
                 connected: Callable[[], bool]) -> None:
        self.labels = [site, gate]
        self._outbox, self._devices, self._connected = outbox, devices, connected

    def collect(self) -> Iterator[Metric]:
        outbox = GaugeMetricFamily("park_gate_outbox_events", "Events this gate holds for the central",
                                   labels=["site", "gate"])
        outbox.add_metric(self.labels, self._outbox())
        devices = GaugeMetricFamily("park_gate_device_up", "1 while the device works",
                                    labels=["site", "gate", "device"])
        for name, ok in self._devices():
            devices.add_metric([*self.labels, name], 1 if ok else 0)
        link = GaugeMetricFamily("park_gate_broker_connected", "1 while the MQTT link is up", labels=["site", "gate"])
        link.add_metric(self.labels, 1 if self._connected() else 0)
        yield from (outbox, devices, link)


class GateMetrics:
    """One gate's metrics and, once `serve()`d, its HTTP endpoint."""

    def __init__(self, site: str, gate: str) -> None:
        self.site, self.gate = site, gate
        self.registry = CollectorRegistry(auto_describe=True)
        self._decision = Histogram("park_gate_decision_seconds", "A gate decision, to the open command or refusal",
                                   ["site", "gate"], buckets=DECISION_BUCKETS, registry=self.registry)
        self.decision = self._decision.labels(site, gate)
        decisions = Counter("park_gate_decisions", "Gate decisions, by verdict", ["site", "gate", "decision"],
                            registry=self.registry)
        self.granted = decisions.labels(site, gate, "granted")
        self.refused = decisions.labels(site, gate, "refused")
        self._face = Histogram("park_face_encode_seconds", "One camera frame to a face template", ["site", "gate"],
                               buckets=(0.05, 0.1, 0.2, 0.5, 1, 2, 5), registry=self.registry)
        self.face_encode = self._face.labels(site, gate)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def watch(self, *, outbox: Callable[[], int], devices: Callable[[], list[tuple[str, bool]]],
              connected: Callable[[], bool]) -> None:
        self.registry.register(_Live(self.site, self.gate, outbox, devices, connected))

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics on host:port (port 0: a free one); returns the port."""
        from prometheus_client import start_http_server

        server, self._thread = start_http_server(port, host, registry=self.registry)
        self._server = server
        bound = server.server_address[1]
        log.info("metrics on http://%s:%s/metrics", host, bound)
        return int(bound)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


__all__ = ["GateMetrics", "public_address"]
