"""Biometric templates at rest in the gate's store: sealed with the gate's key, opened only into memory."""

from __future__ import annotations

import base64
import os
import stat
from datetime import UTC, datetime

import pytest

from biometrics.protect import TemplateCipher, generate_key, load_key
from gate_agent.config import ConfigError, from_dict
from gate_agent.store import Store
from gate_agent.template_key import key_file, load_template_cipher
from protocol import messages as m
from protocol.ids import new_event_id

FACE = os.urandom(512)
FINGER = os.urandom(512)
BOUND = os.urandom(512)


def raw(path) -> bytes:
    """Every byte SQLite keeps for the store: the file and its write-ahead log."""
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def cipher() -> TemplateCipher:
    return TemplateCipher(load_key(generate_key()))


def entry(ref: str, binding: bytes | None) -> m.PassageEvent:
    return m.PassageEvent(id=new_event_id(), site="s1", gate="g1", zone=1, at=datetime.now(UTC), direction="in",
                          credential_kind="qr", credential_ref=ref, passed=True, binding=binding)


def test_templates_and_bindings_are_sealed_in_the_store_file_and_opened_only_with_the_key(tmp_path):
    path = tmp_path / "gate.db"
    key = cipher()
    store = Store(path, cipher=key)
    store.apply_delta(m.Delta(site="s1", seq=1, at=datetime.now(UTC), changes=[
        m.PassChange(pass_id=1, holder_id="h1", card_uid="01"),
        m.TemplateChange(holder_id="h1", kind="face", data=FACE),
        m.TemplateChange(holder_id="h1", kind="fingerprint", data=FINGER, finger=3)]))
    store.record(entry("T5", BOUND), "scenic/v1/s1/gate/g1/event")  # waits in the outbox, binding inside

    assert store.templates("h1", "face") == [FACE] and store.all_templates("fingerprint") == [("h1", 3, FINGER)]
    assert store.usage("T5")[1] == BOUND
    assert m.decode(m.PassageEvent, store.outbox_after(0)[0].payload).binding == BOUND
    on_disk = raw(path)
    for secret in (FACE, FINGER, BOUND):
        assert secret not in on_disk and base64.b64encode(secret) not in on_disk
    store.close()

    stranger = Store(path, cipher=cipher())  # the file without its key: nothing readable comes out
    assert stranger.templates("h1", "face") == [] and stranger.usage("T5")[1] is None
    assert stranger.usage("T5")[0].bound  # still bound: a re-entry is refused, not waved through
    stranger.close()
    keyless = Store(path)
    assert keyless.templates("h1", "face") == []
    keyless.close()


def test_a_store_written_before_sealing_is_sealed_when_first_opened_with_a_key(tmp_path):
    path = tmp_path / "gate.db"
    old = Store(path)
    with old.write() as c:  # rows as an earlier agent version wrote them, in clear
        c.execute("INSERT INTO templates VALUES ('h1', 'face', 0, 1, ?)", (FACE,))
        c.execute("INSERT INTO usage(credential_ref, entries, binding) VALUES ('T5', 1, ?)", (BOUND,))
    old.close()

    store = Store(path, cipher=cipher())
    assert store.templates("h1", "face") == [FACE] and store.usage("T5")[1] == BOUND
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert FACE not in raw(path) and BOUND not in raw(path)
    store.close()


def test_forgetting_a_holder_drops_their_rows_and_tombstones_their_fingerprint_slots(tmp_path):
    store = Store(tmp_path / "gate.db", cipher=cipher())
    store.apply_delta(m.Delta(site="s1", seq=1, at=datetime.now(UTC), changes=[
        m.TemplateChange(holder_id="h1", kind="face", data=FACE),
        m.TemplateChange(holder_id="h1", kind="fingerprint", data=FINGER),
        m.TemplateChange(holder_id="h2", kind="fingerprint", data=BOUND)]))
    store.fp_slot_set(0, "h1")
    store.fp_slot_set(1, "h2")

    store.apply_delta(m.Delta(site="s1", seq=2, at=datetime.now(UTC), changes=[m.HolderForget(holder_id="h1")]))

    assert store.db.execute("SELECT count(*) FROM templates WHERE holder_id = 'h1'").fetchone()[0] == 0
    assert store.fp_slot_holder(0) is None and store.fp_slot_holder(1) == "h2"  # h1's finger admits nobody now
    assert store.fp_slots()[0][0] == ""  # ... until the module's slot is emptied
    store.close()


def test_the_template_key_file_is_made_on_first_start_with_mode_0600_and_refused_when_others_may_read(tmp_path):
    cfg = from_dict({"gate": {"id": "g1", "site": "s1"}, "store": {"path": "gate.db"}}, source="gate.toml",
                    base=tmp_path)
    first = load_template_cipher(cfg)
    path = key_file(cfg)
    assert path == tmp_path / "gate.key" and stat.S_IMODE(path.stat().st_mode) == 0o600
    sealed = first.encrypt(FACE, "h1", "face")
    assert load_template_cipher(cfg).decrypt(sealed, "h1", "face") == FACE  # the same key the next time

    path.chmod(0o644)
    with pytest.raises(ConfigError, match="gate.toml: store.template_key_file: .* chmod 600"):
        load_template_cipher(cfg)
    inline = from_dict({"gate": {"id": "g1", "site": "s1"}, "store": {"template_key": "dG9vLXNob3J0"}}, source="g.toml")
    with pytest.raises(ConfigError, match="g.toml: store.template_key decodes to"):
        load_template_cipher(inline)


def test_a_same_person_binding_is_deleted_two_days_after_the_last_entry(tmp_path):
    store = Store(tmp_path / "gate.db", cipher=cipher())
    store.record(entry("T7", BOUND), "gates/v1/s1/gate/g1/event")
    store.record(entry("T8", BOUND), "gates/v1/s1/gate/g1/event")
    now = datetime.now(UTC).timestamp()
    assert store.purge_bindings(now=now + 3600) == 0  # the visit goes on: kept
    store.db.execute("UPDATE usage SET last_entry_at = ? WHERE credential_ref = 'T8'", (now - 3 * 24 * 3600,))
    store.db.commit()
    assert store.purge_bindings(now=now) == 1
    assert store.usage("T7")[1] == BOUND
    usage, binding = store.usage("T8")
    assert binding is None and not usage.bound and usage.entries == 1  # the entry stays counted
    store.close()
