"""A technician brings a gate up in minutes: the central provisions it and prints a starting config
that the gate agent loads as it is."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from gate_agent.config import load

BIN = Path(sys.executable).parent


def _central(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PARK_CENTRAL_CONFIG": str(tmp_path / "central.toml")}
    return subprocess.run([str(BIN / "park-central"), *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=tmp_path)


def test_a_provisioned_gate_config_loads_in_the_gate_agent_with_its_credentials(tmp_path):
    (tmp_path / "central.toml").write_text(
        f'database_url = "sqlite:///{tmp_path}/central.db"\nsite = "park1"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = 1\n[keys]\nsigning_key_file = "{tmp_path}/signing.key"\n')
    refused = _central(tmp_path, "provision-gate", "park1", "east1", "--zone", "1")
    assert refused.returncode == 2 and "park-central db upgrade" in refused.stderr  # said plainly

    assert _central(tmp_path, "db", "upgrade").returncode == 0
    assert _central(tmp_path, "site", "create", "park1", "--zone", "1:5000").returncode == 0
    done = _central(tmp_path, "provision-gate", "park1", "east1", "--zone", "1",
                    "--broker", "mqtt.park.example:8883", "-o", "east1.toml")
    assert done.returncode == 0, done.stderr
    path = tmp_path / "east1.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the gate's MQTT password

    gate = load(path)
    assert (gate.gate.id, gate.gate.site) == ("east1", "park1")
    assert (gate.broker.host, gate.broker.port, gate.broker.username) == ("mqtt.park.example", 8883,
                                                                           "gate-park1-east1")
    assert len(gate.broker.password) >= 16

    again = _central(tmp_path, "provision-gate", "park1", "east1", "--zone", "1")
    assert again.returncode != 0  # a gate is provisioned once; its credentials are not reissued silently
