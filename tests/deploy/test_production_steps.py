"""The production install as a park's technician meets it, from a built wheel, outside this checkout.

1. A wheel installed (not editable) into fresh virtualenvs: `.[central]` migrates a PostgreSQL
   database and serves its pages; `.[gate]` drives the turnstile simulator with a shipped controller
   profile and admits a ticket sold through the API, end to end.
2. The README's production steps, run by `systemd/deploy.sh` with paths under a scratch folder:
   the central on PostgreSQL, Mosquitto started as root with Debian's stock `mosquitto.conf` and the
   shipped drop-in (so it drops to its own user, as Debian's unit runs it), two gates provisioned and
   installed as boxes, services started from the units' own ExecStart lines, a first visitor admitted
   at each gate, the reload after the second gate drops nobody, and the replicator enabled and started
   once the config sets [replication].

What the test cannot run here, and stands in for: systemd itself (a `systemctl` stand-in reloads
Mosquitto with SIGHUP, as Debian's unit does, and the test starts each unit's ExecStart), the service
users (`CENTRAL_USER`/`GATE_USER` are the test's own user: no system users are added to the machine),
the face extra (dlib and the 100 MB model wheel; the face paths have their own tests), and TLS
(tests/security/test_mqtt_tls.py).
"""

from __future__ import annotations

import grp
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from drivers.sim.serial_sim import QrScannerSim
from drivers.sim.turnstile_sim import TurnstileSimulator
from tests.deploy.installs import (
    ROOT,
    build_wheel,
    clean_env,
    exec_start,
    healthy,
    http,
    make_venv,
    run,
    sell_ticket,
    token_from,
)
from tests.support.services import free_port, need
from tests.support.waiting import poll

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.mosquitto]
DEBIAN_MOSQUITTO_CONF = ROOT / "tests" / "fixtures" / "debian-12" / "mosquitto.conf"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


class Processes:
    """Processes started from installs; each logs to a file; all stopped at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.procs = folder, []

    def start(self, name: str, args: list[str], cwd: Path) -> subprocess.Popen:
        log = (self.folder / f"{name}.log").open("ab")
        proc = subprocess.Popen(args, cwd=cwd, env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for _name, proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def processes(tmp_path):
    procs = Processes(tmp_path)
    yield procs
    procs.stop()


class Box:
    """The devices at one turnstile: a Modbus TCP controller (tripod-coil) and a QR scanner on a pty."""

    def __init__(self) -> None:
        self.sim = TurnstileSimulator("tripod-coil", transport="tcp").start()
        self.sim.pass_delay_s = 0.03
        self.scanner = QrScannerSim()

    def devices_toml(self) -> str:
        host, port = self.sim.tcp_address
        return (f'\n[devices.turnstile]\ntcp = "{host}:{port}"\ntimeout_s = 0.3\n\n'
                f'[devices.qr]\nport = "{self.scanner.device_path}"\n')

    def close(self) -> None:
        self.scanner.close()
        self.sim.stop()


@pytest.fixture
def boxes():
    made: list[Box] = []

    def make() -> Box:
        made.append(Box())
        return made[-1]

    yield make
    for box in made:
        box.close()


def _admit(box: Box, base: str, token: str, entries_before: int) -> None:
    box.scanner.scan(sell_ticket(base, token))
    poll(lambda: box.sim.counters[0] == entries_before + 1, 20, what="the visitor through the turnstile")


def _inside(base: str, token: str, zone: int) -> int:
    status, body = http("GET", f"{base}/api/v1/occupancy", token=token)
    assert status == 200, body
    return next((z["inside"] for z in body["zones"] if z["zone"] == zone), 0)


def test_a_wheel_installed_central_and_gate_admit_a_visitor(tmp_path, wheel, pg_url, mosquitto, processes, boxes):
    central_venv = make_venv(tmp_path / "central-venv", wheel, "central")
    gate_venv = make_venv(tmp_path / "gate-venv", wheel, "gate")
    # The gate's install is a gate's: no Flask, SQLAlchemy or PostgreSQL client came with it.
    probe = run([str(gate_venv / "bin" / "python"), "-c",
                 "import importlib.util as u; print([m for m in ('flask','sqlalchemy','psycopg') if u.find_spec(m)])"],
                tmp_path)
    assert probe.strip() == "[]"

    park = tmp_path / "park"
    park.mkdir()
    cli = [str(central_venv / "bin" / "park-central"), "--config", str(park / "central.toml")]
    web_port = free_port()
    run(cli[:1] + ["init-config", "--out", str(park / "central.toml"), "--database", pg_url, "--site", "s1",
                   "--state-dir", str(park), "--mqtt-port", str(mosquitto.port), "--web-port", str(web_port)], park)
    assert "revision" in run(cli + ["db", "upgrade"], park)
    run(cli + ["keys", "generate"], park)
    run(cli + ["site", "create", "s1", "--zone", "1:100"], park)
    run(cli + ["provision-gate", "s1", "g1", "--zone", "1", "--broker", f"{mosquitto.host}:{mosquitto.port}",
               "-o", str(park / "g1.toml")], park)
    token = token_from(run(cli + ["token", "create", "shop", "--role", "manager"], park))
    processes.start("central", cli + ["run"], park)
    base = f"http://127.0.0.1:{web_port}"
    poll(lambda: healthy(base), 60, what="the wheel-installed central answering /healthz")
    status, page = http("GET", f"{base}/login")
    assert status == 200 and "<form" in page  # templates and static files came with the wheel

    box = boxes()
    gate_dir = tmp_path / "g1"
    gate_dir.mkdir()
    text = (park / "g1.toml").read_text().replace("/var/lib/scenic-gates/gate.db", str(gate_dir / "gate.db"))
    (gate_dir / "gate.toml").write_text(text + box.devices_toml())
    processes.start("gate", [str(gate_venv / "bin" / "gate-agent"), "run", "--config", str(gate_dir / "gate.toml")],
                    gate_dir)
    poll(lambda: "snapshot" in processes.log("gate") and "applied" in processes.log("gate"), 60,
         what="the gate configured and synced")
    _admit(box, base, token, 0)
    poll(lambda: _inside(base, token, 1) == 1, 20, what="the passage counted at the central")


# --- the README's production steps -----------------------------------------------------------------

SYSTEMCTL_STANDIN = """#!/usr/bin/env bash
# Stands in for systemctl (no systemd here): Mosquitto is started and reloaded as Debian's unit does
# (ExecReload=/bin/kill -HUP $MAINPID); the park's own units are started by the test from ExecStart.
echo "$*" >> "{log}"
case "$1 $2" in
  "reload mosquitto"|"reload-or-restart mosquitto")
    if [ -s "{pid}" ] && kill -0 "$(cat "{pid}")" 2>/dev/null; then kill -HUP "$(cat "{pid}")"
    else mosquitto -d -c "{conf}"; fi ;;
esac
"""


def _debian_mosquitto(root: Path) -> Path:
    """Debian 12's stock mosquitto.conf, its paths moved under `root`; Mosquitto's folders its own."""
    mosquitto_user = "mosquitto"
    conf = root / "etc" / "mosquitto" / "mosquitto.conf"
    conf.parent.mkdir(parents=True)
    text = DEBIAN_MOSQUITTO_CONF.read_text()
    for old in ("/run/mosquitto/", "/var/lib/mosquitto/", "/var/log/mosquitto/", "/etc/mosquitto/"):
        text = text.replace(old, f"{root}{old}")
    conf.write_text(text)
    for folder in ("run/mosquitto", "var/lib/mosquitto", "var/log/mosquitto"):
        (root / folder).mkdir(parents=True)
        shutil.chown(root / folder, mosquitto_user, mosquitto_user)
    return conf


def _broker_log(root: Path) -> str:
    path = root / "var" / "log" / "mosquitto" / "mosquitto.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _connections(log: str, username: str) -> int:
    return len(re.findall(rf"New client connected .* u'{re.escape(username)}'\)", log))


def test_the_readme_production_steps_admit_a_visitor_at_each_gate_and_a_reload_drops_nobody(
        tmp_path, wheel, pg_url, processes, boxes):
    need(os.geteuid() == 0, "the production steps start Mosquitto as root (it then drops to user mosquitto)")
    need(shutil.which("mosquitto") is not None, "the mosquitto binary is not installed")
    need(_has_group("mosquitto"), "Debian's mosquitto package (its user and group) is not installed")
    root = Path(tempfile.mkdtemp(prefix="gates-prod-"))
    try:
        root.chmod(0o755)  # Mosquitto, as its own user, walks down to its files like under /etc
        _production_steps(root, tmp_path, wheel, pg_url, processes, boxes)
    finally:
        processes.stop()
        pid = root / "run" / "mosquitto" / "mosquitto.pid"
        if pid.exists() and pid.read_text().strip():
            subprocess.run(["kill", pid.read_text().strip()], check=False)
        shutil.rmtree(root, ignore_errors=True)


def _has_group(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _production_steps(root: Path, tmp_path: Path, wheel: Path, pg_url: str, processes: Processes, boxes) -> None:
    mqtt_port, web_port = free_port(), free_port()
    broker_conf = _debian_mosquitto(root)
    standin = root / "bin" / "systemctl"
    standin.parent.mkdir()
    standin.write_text(SYSTEMCTL_STANDIN.format(log=root / "systemctl.log", pid=root / "run/mosquitto/mosquitto.pid",
                                                conf=broker_conf))
    standin.chmod(0o755)
    me = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    env = clean_env(SOURCE=str(ROOT), PACKAGE=str(wheel), PREFIX=str(root / "opt/scenic-gates"),
                    ETC=str(root / "etc"), STATE=str(root / "var/lib"), UNITS=str(root / "etc/systemd/system"),
                    CENTRAL_USER=me, GATE_USER=me, MQTT_PORT=str(mqtt_port), DB_URL=pg_url, CENTRAL_EXTRAS="central",
                    GATES_OUT=str(root / "gates"), SYSTEMCTL=str(standin))
    deploy = [str(ROOT / "systemd" / "deploy.sh")]

    def step(*args: str, env_: dict | None = None) -> str:
        return run(deploy + list(args), tmp_path, env_ or env, timeout=900)

    # The central: package, config with fresh secrets (0640), schema, keys, units.
    step("central")
    conf = root / "etc" / "park-central" / "central.toml"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o640
    text = conf.read_text()
    conf.write_text(text.replace('port = 8080', f'port = {web_port}'))
    step("site", "park1", "1:500", "2:300")
    assert "password" in step("admin", "alice")

    # Mosquitto: Debian's file and the drop-in, the broker's files readable by its group.
    step("mosquitto")
    for name in ("park.passwd", "park.acl"):
        info = (root / "etc" / "mosquitto" / name).stat()
        assert stat.S_IMODE(info.st_mode) == 0o640 and info.st_gid == grp.getgrnam("mosquitto").gr_gid, name
    poll(lambda: "mosquitto version" in _broker_log(root) and "running" in _broker_log(root), 15,
         what="Mosquitto running with the stock config and the drop-in")
    assert "Error" not in _broker_log(root), _broker_log(root)

    # The central's services, as their units start them.
    units = root / "etc" / "systemd" / "system"
    venv_cli = root / "opt" / "scenic-gates" / ".venv" / "bin" / "park-central"
    for unit, instance in (("park-central-web.service", ""), ("park-central-ingest@.service", "1"),
                           ("park-central-scheduler.service", "")):
        processes.start(unit.split("@")[0].split(".")[0], exec_start(units / unit, instance), tmp_path)
    base = f"http://127.0.0.1:{web_port}"
    poll(lambda: healthy(base), 60, what="the central's web unit answering")
    token = token_from(run([str(venv_cli), "--config", str(conf), "token", "create", "shop", "--role", "manager"],
                           tmp_path))
    poll(lambda: _connections(_broker_log(root), "central") >= 3, 30,
         what="web, ingest and scheduler on the broker with the central's password")

    # The first gate: provisioned at the central, installed as a box, started from its unit.
    east = _gate_box("east1", "1", root, env, step, boxes, processes, tmp_path, mqtt_port)
    _admit(east, base, token, 0)
    poll(lambda: _inside(base, token, 1) == 1, 20, what="east1's visitor counted at the central")

    # A second gate: the broker's files are rewritten and Mosquitto reloaded while everyone is connected.
    log_before = _broker_log(root)
    west = _gate_box("west1", "2", root, env, step, boxes, processes, tmp_path, mqtt_port)
    _admit(west, base, token, 0)
    _admit(east, base, token, 1)
    poll(lambda: _inside(base, token, 1) == 2 and _inside(base, token, 2) == 1, 20, what="both gates' visitors")
    after = _broker_log(root)[len(log_before):]
    assert "Reloading config" in after or "reload" in after.lower(), after
    # Only the provisioning command's own short connection may end (it publishes the new gate's config).
    dropped = [line for line in after.splitlines() if ("disconnect" in line.lower() or "closed its connection" in line)
               and "central-cli-" not in line]
    assert dropped == [], "the reload dropped clients:\n" + "\n".join(dropped)
    assert _connections(_broker_log(root), "gate-park1-east1") == 1
    assert _connections(_broker_log(root), "gate-park1-west1") == 1

    # The replicator is optional: `start central` enables it only once the config sets [replication],
    # and then its unit's command runs from the install (no head office needs to answer for that).
    enabled = root / "systemctl.log"
    step("start", "central")
    assert "park-central-scheduler.service" in enabled.read_text() and "replicate" not in enabled.read_text()
    conf.write_text(conf.read_text() + '\n[replication]\nserver = "park1"\nnumber = 2\nhead_office = "ho"\n')
    step("start", "central")
    assert "park-central-replicate.service" in enabled.read_text().splitlines()[-1].split()
    processes.start("replicate", exec_start(units / "park-central-replicate.service"), tmp_path)
    poll(lambda: "replicator park1 running with ho" in processes.log("replicate"), 30,
         what="the replicator started from its unit")
    poll(lambda: re.search(r"New client connected .* as central-repl-park1 .*u'central'\)", _broker_log(root)), 15,
         what="the replicator on the broker with the central's password")


def _gate_box(gate: str, zone: str, root: Path, env: dict, step, boxes, processes: Processes, tmp_path: Path,
              mqtt_port: int) -> Box:
    step("provision", "park1", gate, zone, "tripod-coil", f"127.0.0.1:{mqtt_port}")
    toml = root / "gates" / f"{gate}.toml"
    box = boxes()
    toml.write_text(toml.read_text() + box.devices_toml())  # the technician names the devices' ports
    box_root = root / "boxes" / gate  # each box is a machine of its own
    box_env = {**env, "PREFIX": str(box_root / "opt/scenic-gates"), "ETC": str(box_root / "etc"),
               "STATE": str(box_root / "var/lib"), "UNITS": str(box_root / "etc/systemd/system")}
    step("gate-box", str(toml), env_=box_env)
    cmd = exec_start(box_root / "etc/systemd/system/gate-agent.service")
    assert cmd[-1] == str(box_root / "etc/scenic-gates/gate.toml")
    processes.start(gate, cmd, tmp_path)
    poll(lambda: "snapshot" in processes.log(gate) and "applied" in processes.log(gate), 60,
         what=f"{gate} configured and synced")
    return box


def test_the_stock_config_the_test_uses_is_debians():
    """The fixture is Debian 12's /etc/mosquitto/mosquitto.conf; where apt's cache holds the package, the
    two are compared (the machine's own /etc/mosquitto may have been changed by whoever set it up)."""
    debs = sorted(Path("/var/cache/apt/archives").glob("mosquitto_2.*_*.deb"))
    if not debs:
        pytest.skip("no mosquitto .deb in apt's cache to compare with")
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), out], check=True)
        assert (Path(out) / "etc/mosquitto/mosquitto.conf").read_text() == DEBIAN_MOSQUITTO_CONF.read_text()
