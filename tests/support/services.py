"""Real services for the tests: a Mosquitto process of our own, PostgreSQL databases made per test.

Tests need real brokers and databases. Where one is missing, a local run skips with the reason;
under CI=true the same test fails, so a missing service can never pass silently.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def need(condition: bool, reason: str) -> None:
    """Skip (locally) or fail (CI=true) the calling test when a required service is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required service missing under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


@dataclass
class Mosquitto:
    """A Mosquitto broker of the test's own on a free port; can be stopped and started again."""

    workdir: Path
    port: int = field(default_factory=free_port)
    extra_config: str = ""
    persistence: bool = True
    proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def config_text(self) -> str:
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            "max_queued_messages 1000000",
            "max_inflight_messages 100",
            "log_dest stderr",
            "log_type error",
        ]
        if os.geteuid() == 0 and "\nuser " not in "\n" + self.extra_config:
            # Run as root, Mosquitto drops to the "mosquitto" user, which cannot write its
            # persistence file in the test's folder: sessions would be lost across restart().
            lines.append("user root")
        if "allow_anonymous" not in self.extra_config and "password_file" not in self.extra_config:
            lines.append("allow_anonymous true")
        return "\n".join(lines) + "\n" + self.extra_config + "\n"

    def start(self) -> Mosquitto:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config_text())
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=log)
        if not wait_port(self.host, self.port):
            self.stop()
            raise RuntimeError(f"mosquitto did not start on port {self.port}: see {self.workdir}/mosquitto.log")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def have_mosquitto() -> bool:
    return shutil.which("mosquitto") is not None


def pg_admin_url() -> str:
    return os.environ.get("GATES_TEST_PG", DEFAULT_PG)


def pg_reachable(url: str) -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    try:
        with psycopg.connect(_libpq(url), connect_timeout=3):
            return True
    except Exception:
        return False


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def create_pg_database(admin_url: str) -> tuple[str, str]:
    """Make an empty database for one test; returns (sqlalchemy_url, name)."""
    import psycopg

    name = f"gates_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}", name


def drop_pg_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class NatsMqtt:
    """A NATS server of the test's own with its MQTT listener (MQTT 3.1.1, QoS 0/1, needs JetStream):
    the open, clustered alternative to Mosquitto the project must not be tied to."""

    workdir: Path
    port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def start(self) -> NatsMqtt:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "nats.conf"
        conf.write_text(
            f'listen: "127.0.0.1:{self.port}"\n'
            f'server_name: "gates-test-{self.port}"\n'
            f'jetstream {{ store_dir: "{self.workdir}/js" }}\n'
            f'mqtt {{ listen: "127.0.0.1:{self.mqtt_port}" }}\n'
        )
        log = open(self.workdir / "nats.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen([nats_server_binary(), "-c", str(conf)], stdout=log, stderr=log)
        if not wait_port(self.host, self.mqtt_port, timeout=20):
            self.stop()
            raise RuntimeError(f"nats-server did not open MQTT on {self.mqtt_port}: see {self.workdir}/nats.log")
        return self

    def stop(self) -> None:
        _end(self.proc)
        self.proc = None


@dataclass
class NatsClusterNode:
    name: str
    workdir: Path
    port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.mqtt_port}"


@dataclass
class NatsCluster:
    """Three NATS servers of the test's own in one cluster with JetStream, each with its MQTT listener:
    MQTT sessions and QoS 1 messages live in JetStream streams replicated on all three (`stream_replicas`),
    so a client whose node goes away resumes its session on another."""

    workdir: Path
    size: int = 3
    nodes: list[NatsClusterNode] = field(default_factory=list)

    def start(self) -> NatsCluster:
        self.nodes = [NatsClusterNode(f"n{i + 1}", self.workdir / f"n{i + 1}") for i in range(self.size)]
        for node in self.nodes:
            self._start(node)
        for node in self.nodes:
            if not wait_port(node.host, node.mqtt_port, timeout=30):
                self.stop()
                raise RuntimeError(f"nats-server {node.name} did not open MQTT: see {node.workdir}/nats.log")
        return self

    def _start(self, node: NatsClusterNode) -> None:
        node.workdir.mkdir(parents=True, exist_ok=True)
        routes = ", ".join(f'"nats-route://127.0.0.1:{n.cluster_port}"' for n in self.nodes if n is not node)
        (node.workdir / "nats.conf").write_text(
            f'listen: "127.0.0.1:{node.port}"\n'
            f'server_name: "{node.name}"\n'
            f'jetstream {{ store_dir: "{node.workdir}/js" }}\n'
            f'cluster {{ name: "gates-test", listen: "127.0.0.1:{node.cluster_port}", routes: [{routes}] }}\n'
            f'mqtt {{ listen: "127.0.0.1:{node.mqtt_port}", stream_replicas: {self.size} }}\n'
        )
        log = open(node.workdir / "nats.log", "ab")  # noqa: SIM115 - lives as long as the process
        node.proc = subprocess.Popen([nats_server_binary(), "-c", str(node.workdir / "nats.conf")],
                                     stdout=log, stderr=log)

    def kill(self, node: NatsClusterNode) -> None:
        """The node goes away at once (SIGKILL: no goodbye to its clients or its cluster)."""
        if node.proc and node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait()
        node.proc = None

    def restart(self, node: NatsClusterNode) -> None:
        self._start(node)
        if not wait_port(node.host, node.mqtt_port, timeout=30):
            raise RuntimeError(f"nats-server {node.name} did not come back: see {node.workdir}/nats.log")

    def stop(self) -> None:
        for node in self.nodes:
            _end(node.proc)
            node.proc = None


def _end(proc: subprocess.Popen | None) -> None:
    """SIGTERM a server of the test's own, SIGKILL after 10 s."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def nats_server_binary() -> str:
    return shutil.which("nats-server") or "/usr/sbin/nats-server"


def have_nats() -> bool:
    return Path(nats_server_binary()).exists()
