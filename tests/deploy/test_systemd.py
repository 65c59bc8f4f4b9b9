"""The systemd units: valid for systemd, hardened, and their command lines understood by our CLIs."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import need

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted((ROOT / "systemd").glob("*.service"))
VENV_BIN = Path(sys.executable).parent


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(path)
    return parser


def _exec_start(path: Path) -> list[str]:
    argv = shlex.split(_unit(path)["Service"]["ExecStart"].replace("%i", "1"))
    return [str(VENV_BIN / Path(argv[0]).name), *argv[1:]]


def test_every_unit_passes_systemd_analyze_verify(tmp_path):
    need(shutil.which("systemd-analyze") is not None, "systemd-analyze is not installed (package systemd)")
    for unit in UNITS:
        text = unit.read_text().replace("/opt/scenic-gates/.venv/bin", str(VENV_BIN))
        (tmp_path / unit.name).write_text(text)
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
                          capture_output=True, text=True)
    # Users and groups of the units do not exist on a test machine; anything else is a real finding.
    findings = [line for line in (done.stdout + done.stderr).splitlines()
                if line.strip() and "Failed to resolve user" not in line and "Failed to resolve group" not in line]
    assert not findings, "\n".join(findings)


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_runs_as_its_own_user_hardened_and_restarting(unit):
    service = _unit(unit)["Service"]
    assert service["User"] not in ("", "root")
    assert service["Restart"] == "always"
    assert service["Type"] == "notify" and int(service["WatchdogSec"]) > 0
    for option in ("NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert service[option] == "yes", option
    assert service["ProtectSystem"] == "strict"


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_command_line_is_understood_by_the_cli(unit, tmp_path):
    argv = _exec_start(unit)
    config = tmp_path / "missing.toml"
    argv = [str(config) if a.endswith(".toml") else a for a in argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    # The command line parsed: the program got as far as reading its (missing) configuration.
    assert done.returncode == 2
    assert "usage:" not in done.stderr, done.stderr
    assert str(config) in done.stderr and "not found" in done.stderr
