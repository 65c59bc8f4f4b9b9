"""The one gettext catalogue (protocol/locale): complete, compiled, and in step with the sources.

A text marked in the code but missing from the .pot, a language with an untranslated or fuzzy entry,
a translation that drops a placeholder, or a .po whose committed .mo was not recompiled: each fails
here, so `make messages` and the translation are never forgotten.
"""

from __future__ import annotations

import gettext
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("babel", reason="Babel comes with the dev extra")
from babel.messages.mofile import write_mo  # noqa: E402
from babel.messages.pofile import read_po  # noqa: E402

from protocol.i18n import LOCALEDIR, LOCALES, catalogue_locale, translation  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
POT = LOCALEDIR / "messages.pot"
BRACES = re.compile(r"\{[a-z_]+\}")
PERCENT = re.compile(r"%\([a-z_]+\)[sd]")


def _po(locale: str):
    with open(LOCALEDIR / locale / "LC_MESSAGES" / "messages.po", "rb") as fp:
        return read_po(fp, locale=locale)


def _ids(catalog) -> set:
    """(context, msgid) of every entry: the same word may stand in two contexts ("expired")."""
    return {(m.context, m.id) for m in catalog if m.id}


def _extract_args() -> list[str]:
    """The extraction the Makefile's `messages` target runs (its BABEL_EXTRACT line), so both agree."""
    line = next(x for x in (ROOT / "Makefile").read_text().splitlines() if x.startswith("BABEL_EXTRACT :="))
    return shlex.split(line.split(":=", 1)[1])


def test_the_pot_holds_every_text_marked_in_the_sources(tmp_path) -> None:
    fresh = tmp_path / "fresh.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", *_extract_args(), "-o", str(fresh), "."],
                   cwd=ROOT, check=True, capture_output=True)
    with open(fresh, "rb") as fp:
        extracted = _ids(read_po(fp))
    with open(POT, "rb") as fp:
        committed = _ids(read_po(fp))
    assert extracted, "nothing extracted: is babel.cfg read?"
    assert not extracted - committed, f"not in messages.pot (run `make messages`): {sorted(extracted - committed)}"
    assert not committed - extracted, f"in messages.pot but gone from the code: {sorted(committed - extracted)}"


@pytest.mark.parametrize("locale", LOCALES)
def test_each_language_translates_every_msgid_of_the_pot(locale: str) -> None:
    with open(POT, "rb") as fp:
        wanted = _ids(read_po(fp))
    catalog = _po(locale)
    assert _ids(catalog) == wanted, "the .po is not updated from the .pot (run `make messages`)"
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert not fuzzy, f"fuzzy entries in {locale}: {fuzzy}"
    untranslated = [m.id for m in catalog if m.id and not all(m.string if isinstance(m.string, tuple)
                                                               else (m.string,))]
    assert not untranslated, f"untranslated in {locale}: {untranslated}"
    errors = [(m.id, [str(e) for e in errs]) for m, errs in catalog.check()]
    assert not errors, f"placeholders do not match in {locale}: {errors}"
    for m in catalog:
        if not m.id:
            continue
        ids = m.id if isinstance(m.id, tuple) else (m.id,)
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        for pattern in (BRACES, PERCENT):
            want = set(pattern.findall(ids[0]))
            for s in strings:
                assert set(pattern.findall(s)) == want, f"{locale}: {m.id!r} -> {s!r} changes the placeholders"


@pytest.mark.parametrize("locale", LOCALES)
def test_the_committed_mo_is_the_compiled_po(locale: str) -> None:
    compiled = io.BytesIO()
    write_mo(compiled, _po(locale))
    compiled.seek(0)
    with open(LOCALEDIR / locale / "LC_MESSAGES" / "messages.mo", "rb") as fp:
        committed = gettext.GNUTranslations(fp)
    assert committed._catalog == gettext.GNUTranslations(compiled)._catalog, \
        f"{locale}: messages.mo is stale (run `make messages`)"


@pytest.mark.parametrize("tag, locale", [("zh", "zh_Hans"), ("zh-CN", "zh_Hans"), ("zh-TW", "zh_Hans"),
                                         ("zh_Hans", "zh_Hans"), ("en", "en"), ("en-GB", "en"), ("", "en"),
                                         (None, "en"), ("fr", "en")])
def test_language_tags_map_to_a_catalogue(tag, locale) -> None:
    assert catalogue_locale(tag) == locale


def test_the_standard_library_reads_the_chinese_catalogue() -> None:
    """The gate has no Babel: plain gettext must find the compiled file."""
    assert isinstance(translation("zh"), gettext.GNUTranslations)
    assert translation("zh").info()["language"] == "zh_Hans"


# The park's words, as Chinese ticketing and gate products use them: one English term, one Chinese.
GLOSSARY = {
    "gate": "闸机", "ticket type": "票种", "annual pass": "年卡", "time slot": "时段", "refund": "退",
    "zone": "区域", "fingerprint": "指纹", "real-name": "实名", "emergency": "紧急", "capacity": "承载量",
}
# A visitor at a turnstile reads 通道 (lane), the word on the signs above it.
GLOSSARY_EXCEPTIONS = {"Gate closed, please use another gate"}
CJK = re.compile(r"[\u4e00-\u9fff]")


def test_the_chinese_catalogue_is_chinese_and_keeps_to_one_word_per_term() -> None:
    for m in _po("zh_Hans"):
        if not m.id:
            continue
        msgid = m.id if isinstance(m.id, str) else m.id[0]
        msgstr = m.string if isinstance(m.string, str) else m.string[0]
        bare = PERCENT.sub("", BRACES.sub("", msgstr))
        assert CJK.search(bare) or not re.search(r"[A-Za-z]{2,}", bare), f"not Chinese: {msgid!r} -> {msgstr!r}"
        if msgid in GLOSSARY_EXCEPTIONS:
            continue
        for term, chinese in GLOSSARY.items():
            if term in msgid.lower():
                assert chinese in msgstr, f"{msgid!r} -> {msgstr!r}: '{term}' is {chinese} everywhere"
