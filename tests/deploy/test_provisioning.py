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
ROOT = Path(__file__).resolve().parents[2]


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


def test_a_gate_is_provisioned_with_a_known_controller_profile_and_a_typo_is_refused(tmp_path):
    (tmp_path / "central.toml").write_text(
        f'database_url = "sqlite:///{tmp_path}/central.db"\nsite = "park1"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = 1\n[keys]\nsigning_key_file = "{tmp_path}/signing.key"\n')
    assert _central(tmp_path, "db", "upgrade").returncode == 0
    assert _central(tmp_path, "site", "create", "park1", "--zone", "1").returncode == 0
    typo = _central(tmp_path, "provision-gate", "park1", "east1", "--zone", "1", "--controller", "tripod-coi")
    assert typo.returncode == 2 and "tripod-coil" in typo.stderr and "swing-regcmd" in typo.stderr

    done = _central(tmp_path, "provision-gate", "park1", "east1", "--zone", "1", "-o", "east1.toml")
    assert done.returncode == 0, done.stderr
    assert "controller tripod-coil" in done.stdout  # the default, said
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{tmp_path}/central.db")
    with engine.connect() as conn:
        hardware = conn.execute(text("SELECT hardware FROM gates WHERE name = 'east1'")).scalar_one()
    engine.dispose()
    assert '"controller_profile": "tripod-coil"' in hardware  # in the gate's first config


def test_the_shipped_central_config_has_absolute_paths_that_match_the_units(tmp_path):
    from central.config import load_config

    config = load_config(ROOT / "config" / "central.example.toml", env={})
    assert config.keys.signing_key_file.startswith("/var/lib/park-central/")  # StateDirectory=park-central
    assert config.database_url.startswith("postgresql")
    unit = (ROOT / "systemd" / "park-central-web.service").read_text()
    assert "StateDirectory=park-central" in unit and "--config /etc/park-central/central.toml" in unit


def test_init_config_writes_a_private_file_with_fresh_secrets_that_loads(tmp_path):
    from central.config import load_config

    out = tmp_path / "etc" / "central.toml"
    done = _central(tmp_path, "init-config", "--out", str(out), "--state-dir", "/var/lib/park-central")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    first = load_config(out, env={})
    assert first.web.secret_key and first.keys.template_key and first.mqtt.password
    assert _central(tmp_path, "init-config", "--out", str(out)).returncode == 1  # never overwritten
    other = tmp_path / "other.toml"
    assert _central(tmp_path, "init-config", "--out", str(other)).returncode == 0
    second = load_config(other, env={})
    assert (second.web.secret_key, second.mqtt.password) != (first.web.secret_key, first.mqtt.password)


def test_the_broker_files_are_readable_by_the_brokers_group_on_every_rewrite(tmp_path):
    """Mosquitto runs as its own user: the files are 0640 in its group, and a rewrite after a new gate
    keeps that (the site-wide outage of a routine step), replacing the file whole."""
    import grp

    (tmp_path / "central.toml").write_text(
        f'database_url = "sqlite:///{tmp_path}/central.db"\nsite = "park1"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = 1\npassword = "central-secret"\n'
        f'[keys]\nsigning_key_file = "{tmp_path}/signing.key"\n')
    assert _central(tmp_path, "db", "upgrade").returncode == 0
    assert _central(tmp_path, "site", "create", "park1", "--zone", "1").returncode == 0
    group = "mosquitto" if os.geteuid() == 0 and _group_exists("mosquitto") else grp.getgrgid(os.getegid()).gr_name
    files = ["--passwords", "etc/park.passwd", "--acl", "etc/park.acl"]
    assert _central(tmp_path, "acl", *files, "--group", group).returncode == 0
    assert _central(tmp_path, "provision-gate", "park1", "east1", "--zone", "1").returncode == 0
    done = _central(tmp_path, "acl", *files)  # the routine re-run: no --group, the files' own is kept
    assert done.returncode == 0, done.stderr
    for name in ("park.passwd", "park.acl"):
        info = (tmp_path / "etc" / name).stat()
        assert stat.S_IMODE(info.st_mode) == 0o640 and grp.getgrgid(info.st_gid).gr_name == group
    assert "gate-park1-east1:" in (tmp_path / "etc" / "park.passwd").read_text()
    assert sorted(p.name for p in (tmp_path / "etc").iterdir()) == ["park.acl", "park.passwd"]  # no temp left


def _group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True
