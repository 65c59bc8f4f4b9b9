"""The agent as the service runs it: `gate-agent run --config FILE` in its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drivers.sim.serial_sim import QrScannerSim
from gate_agent.store import Store
from protocol import messages as m
from protocol import topics
from tests.gate_agent.conftest import gate_config_for, ticket
from tests.support.waiting import poll

ROOT = Path(__file__).resolve().parents[2]


def write_config(path: Path, site: str, broker, sim, qr_port: str) -> Path:
    host, port = sim.tcp_address
    path.write_text(f"""
[gate]
id = "g1"
site = "{site}"
language = "en"
heartbeat_s = 2

[broker]
host = "{broker.host}"
port = {broker.port}
keepalive_s = 5

[store]
path = "gate.db"

[devices.turnstile]
tcp = "{host}:{port}"

[devices.qr]
port = "{qr_port}"
""")
    return path


def start_agent(config: Path, *, hold: bool) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GATE_AGENT_TEST_HOLD_PUBLISH", None)
    if hold:
        env["GATE_AGENT_TEST_HOLD_PUBLISH"] = "1"
    log = open(config.parent / "agent.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "gate_agent.cli", "run", "--config", str(config)], cwd=ROOT,
                            env=env, stdout=log, stderr=log)




@pytest.mark.slow
def test_agent_killed_between_passage_and_publish_publishes_the_event_once_after_restart(
        tmp_path, mosquitto, site, signer, probe, turnstile_factory):
    sim = turnstile_factory()
    scanner = QrScannerSim()
    probe.publish(topics.config(site, "g1"), gate_config_for(signer, site, "g1"), retain=True)
    config = write_config(tmp_path / "gate.toml", site, mosquitto, sim, scanner.device_path)
    store = Store(tmp_path / "gate.db")
    agent = start_agent(config, hold=True)
    try:
        poll(lambda: store.meta("config_version") == "1" and (tmp_path / "gate.sock").exists(), timeout=20)
        scanner.scan(ticket(signer, 5001))
        poll(lambda: store.outbox_depth() == 1)
        assert sim.counters == (1, 0)  # the visitor went through
        assert store.usage("T5001")[0].entries == 1
        assert probe.events("g1") == []  # ... and nothing reached the broker yet
        agent.send_signal(signal.SIGKILL)
        agent.wait(5)

        agent = start_agent(config, hold=False)
        events = probe.wait(lambda: probe.events("g1"), timeout=20)
        poll(lambda: store.outbox_depth() == 0)
        time.sleep(0.3)  # a second copy would arrive now, if there were one
        events = probe.events("g1")
        assert [(e.credential_ref, e.passed) for e in events] == [("T5001", True)]
        assert store.usage("T5001")[0].entries == 1

        # The technician's CLI talks to the running agent.
        cli = [sys.executable, "-m", "gate_agent.cli"]
        out = subprocess.run([*cli, "status", "--config", str(config)], capture_output=True, text=True, cwd=ROOT,
                             timeout=20)
        assert out.returncode == 0 and '"config_version": 1' in out.stdout
        out = subprocess.run([*cli, "test-device", "turnstile", "--config", str(config)], capture_output=True,
                             text=True, cwd=ROOT, timeout=20)
        assert out.returncode == 0, out.stdout + out.stderr
        out = subprocess.run([*cli, "outbox", "--config", str(config)], capture_output=True, text=True, cwd=ROOT,
                             timeout=20)
        assert '"depth": 0' in out.stdout
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            agent.kill()
        store.close()
        scanner.close()
    # A clean stop marks the gate offline (retained), as the Last Will does for a crash.
    probe.wait(lambda: [s for s in probe.of("status", m.GateStatus, "g1") if not s.online])


def test_gate_agent_imports_nothing_of_the_central():
    code = ("import sys, gate_agent, gate_agent.agent, gate_agent.cli, gate_agent.link, gate_agent.store;"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('central', 'flask', 'sqlalchemy', 'psycopg')"
            " or m.split('.')[0] in ('dlib', 'face_recognition')];"
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"gate_agent imported: {result.stdout} {result.stderr}"
