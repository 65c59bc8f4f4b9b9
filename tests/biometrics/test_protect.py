"""Templates encrypted at rest, bound to their holder and kind, under rotating keys."""

from __future__ import annotations

import base64

import pytest

from biometrics.protect import KeyConfigError, TemplateCipher, TemplateDecryptError, generate_key, load_key

TEMPLATE = bytes(range(256)) * 2  # 512 bytes, the size of a face template


@pytest.fixture
def cipher() -> TemplateCipher:
    return TemplateCipher(load_key(generate_key()))


def test_a_template_round_trips(cipher):
    record = cipher.encrypt(TEMPLATE, "holder-1", "face")
    assert cipher.decrypt(record, "holder-1", "face") == TEMPLATE
    assert TEMPLATE not in record
    assert len(record) == 1 + 12 + len(TEMPLATE) + 16


def test_the_same_template_encrypts_differently_each_time(cipher):
    assert cipher.encrypt(TEMPLATE, "h", "face") != cipher.encrypt(TEMPLATE, "h", "face")


def test_a_tampered_record_is_refused(cipher):
    record = bytearray(cipher.encrypt(TEMPLATE, "holder-1", "face"))
    record[20] ^= 0x01
    with pytest.raises(TemplateDecryptError, match="fails authentication"):
        cipher.decrypt(bytes(record), "holder-1", "face")


def test_a_record_moved_to_another_holder_does_not_decrypt(cipher):
    record = cipher.encrypt(TEMPLATE, "holder-1", "face")
    with pytest.raises(TemplateDecryptError):
        cipher.decrypt(record, "holder-2", "face")


def test_a_fingerprint_record_cannot_be_read_as_a_face(cipher):
    record = cipher.encrypt(TEMPLATE, "holder-1", "fingerprint")
    with pytest.raises(TemplateDecryptError):
        cipher.decrypt(record, "holder-1", "face")


def test_a_record_under_another_key_is_refused(cipher):
    other = TemplateCipher(load_key(generate_key()))
    with pytest.raises(TemplateDecryptError):
        other.decrypt(cipher.encrypt(TEMPLATE, "h", "face"), "h", "face")


def test_a_truncated_record_is_refused(cipher):
    with pytest.raises(TemplateDecryptError, match="truncated"):
        cipher.decrypt(b"\0" * 20, "h", "face")


def test_errors_never_carry_the_template(cipher):
    record = bytearray(cipher.encrypt(TEMPLATE, "holder-1", "face"))
    record[-1] ^= 0xFF
    with pytest.raises(TemplateDecryptError) as err:
        cipher.decrypt(bytes(record), "holder-1", "face")
    assert "holder-1" not in str(err.value) and repr(TEMPLATE[:8])[2:-1] not in str(err.value)


def test_key_rotation_old_records_decrypt_and_move_to_the_new_key():
    old_key, new_key = load_key(generate_key()), load_key(generate_key())
    old = TemplateCipher({1: old_key}, current=1)
    record = old.encrypt(TEMPLATE, "h", "fingerprint")
    both = TemplateCipher({1: old_key, 2: new_key}, current=2)
    assert both.needs_rotation(record)
    assert both.decrypt(record, "h", "fingerprint") == TEMPLATE
    moved = both.reencrypt(record, "h", "fingerprint")
    assert not both.needs_rotation(moved) and moved[0] == 2
    new_only = TemplateCipher({2: new_key}, current=2)
    assert new_only.decrypt(moved, "h", "fingerprint") == TEMPLATE
    with pytest.raises(TemplateDecryptError, match="key id 1, not configured"):
        new_only.decrypt(record, "h", "fingerprint")


def test_keys_from_configuration_text():
    k1, k2 = generate_key(), generate_key()
    cipher = TemplateCipher.from_config({"1": k1, "2": k2}, current="2")
    assert cipher.current == 2
    assert k1 not in repr(cipher) and k2 not in repr(cipher)


def test_a_generated_key_loads_with_or_without_padding_and_in_standard_base64():
    key = generate_key()
    assert len(load_key(key)) == 32
    assert load_key(key.rstrip("=")) == load_key(key)
    raw = b"\xfb" * 32
    assert load_key(base64.b64encode(raw).decode()) == raw


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "biometrics.template_key is not set"),
        ("  ", "is not set"),
        ("not base64 at all!", "is not base64url"),
        (base64.urlsafe_b64encode(b"short").decode(), "decodes to 5 bytes, a template key is 32 bytes"),
    ],
)
def test_an_unusable_configured_key_says_what_is_wrong(value, message):
    with pytest.raises(KeyConfigError, match=message):
        load_key(value)


def test_several_keys_without_a_current_one_is_a_configuration_error():
    with pytest.raises(KeyConfigError, match="say which one is current"):
        TemplateCipher({1: b"\0" * 32, 2: b"\1" * 32})
    with pytest.raises(KeyConfigError, match="not among"):
        TemplateCipher({1: b"\0" * 32}, current=3)
    with pytest.raises(KeyConfigError, match="16 bytes"):
        TemplateCipher(b"\0" * 16)


def test_an_unknown_template_kind_is_refused(cipher):
    with pytest.raises(ValueError, match="kind"):
        cipher.encrypt(TEMPLATE, "h", "iris")
