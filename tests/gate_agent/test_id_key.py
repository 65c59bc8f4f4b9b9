"""The site's ID-number salt lives in a key file of its own (mode 0600), never in the store beside the
digests it keys, nor in a backup of the store; ID-card entry still works after a restart."""

from __future__ import annotations

import base64
import io
import stat

import pytest

from gate_agent import backup
from gate_agent.agent import GateAgent
from gate_agent.config import ConfigError
from gate_agent.display import ConsoleDisplay
from gate_agent.id_key import id_key_file, load_id_salt
from gate_agent.store import Store
from protocol import messages as m
from protocol import topics
from tests.gate_agent.conftest import SALT, booking_today, file_config, gate_config_for

ZHANG, LI = "11010519491231002X", "110105198001010034"


def salt_forms(salt: bytes) -> list[bytes]:
    """The salt as raw bytes and as the JSON of a GateConfig carries it (base64), in every alignment."""
    forms = [salt, base64.b64encode(salt), base64.urlsafe_b64encode(salt).rstrip(b"=")]
    return forms + [base64.b64encode(salt[i:])[4:-4] for i in (1, 2)]


def store_bytes(path) -> bytes:
    """Every byte SQLite keeps of the store: the file, its write-ahead log and shared memory."""
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal"),
                                            path.with_name(path.name + "-shm")) if p.exists())


def assert_no_salt(path) -> None:
    data = store_bytes(path)
    for form in salt_forms(SALT):
        assert form not in data, f"the salt ({form[:8]!r}...) is in {path.name}"


def test_after_a_config_is_applied_the_salt_is_only_in_its_0600_key_file_and_id_cards_work_after_a_restart(
        tmp_path, mosquitto, site, signer, probe, gate_factory):
    probe.snapshot += [booking_today(6101, ZHANG), booking_today(6102, LI)]
    agent, sim = gate_factory("g1")
    probe.wait(lambda: agent.store.meta("snapshot_id"))
    assert agent.present("id_card", ZHANG).passed == 1
    store_path = agent.file_cfg.store_path
    assert_no_salt(store_path)
    key = id_key_file(agent.file_cfg)
    assert key == store_path.with_suffix(".idkey")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert load_id_salt(agent.file_cfg) == SALT
    copy = backup.backup(store_path, tmp_path / "backup" / "g1.db")
    assert_no_salt(copy)
    agent.stop()
    assert_no_salt(store_path)

    # The central's retained config is gone: the restarted gate has only its store and the key file.
    probe.publish(topics.config(site, "g1"), b"", retain=True)
    again = GateAgent(file_config(tmp_path, mosquitto, site, "g1", turnstile=sim),
                      display=ConsoleDisplay("g1", stream=io.StringIO())).start()
    try:
        assert again.active is not None and again.active.cfg.id_salt == SALT
        assert again.present("id_card", LI).passed == 1
        assert again.present("id_card", ZHANG).reason == "used_up"
    finally:
        again.stop()
    assert_no_salt(store_path)

    key.unlink()  # without the key file the saved config cannot find a booking: the gate waits, locked
    locked = GateAgent(file_config(tmp_path, mosquitto, site, "g1", turnstile=sim),
                       display=ConsoleDisplay("g1", stream=io.StringIO()))
    try:
        assert locked.active is None
    finally:
        locked.store.close()


def test_a_store_that_still_holds_the_salt_is_stripped_at_start_and_in_a_backup(tmp_path, mosquitto, site, signer):
    cfg = file_config(tmp_path, mosquitto, site, "g1")
    old = Store(cfg.store_path)
    payload = m.encode(gate_config_for(signer, site, "g1"))
    old.set_meta("config", payload.decode())  # as an agent before the key file wrote it
    old.set_meta("config_version", "1")
    old.close()
    assert base64.b64encode(SALT) in store_bytes(cfg.store_path)  # what the tests below must take away

    copy = backup.backup(cfg.store_path, tmp_path / "old-backup.db")
    assert_no_salt(copy)

    agent = GateAgent(cfg, display=ConsoleDisplay("g1", stream=io.StringIO()))
    try:
        assert agent.active is not None and agent.active.cfg.id_salt == SALT
        assert load_id_salt(cfg) == SALT
    finally:
        agent.store.close()
    assert_no_salt(cfg.store_path)


def test_a_key_file_others_may_read_is_refused_at_start(tmp_path, mosquitto, site, signer):
    cfg = file_config(tmp_path, mosquitto, site, "g1")
    store = Store(cfg.store_path)
    store.save_config(m.encode(gate_config_for(signer, site, "g1")), 1)
    store.close()
    key = id_key_file(cfg)
    key.write_text(base64.urlsafe_b64encode(SALT).decode() + "\n")
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="store.id_key_file: .* chmod 600"):
        GateAgent(cfg, display=ConsoleDisplay("g1", stream=io.StringIO()))
