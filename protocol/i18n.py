"""The project's one gettext catalogue, read with the standard library (the gate box has no Babel).

    protocol/locale/messages.pot                        every msgid (English source text), extracted
    protocol/locale/<locale>/LC_MESSAGES/messages.po    the translations: zh_Hans, en
    protocol/locale/<locale>/LC_MESSAGES/messages.mo    compiled, committed (`make messages`)

The central reads the same files through Flask-Babel (`BABEL_TRANSLATION_DIRECTORIES`), the gate
through `translation()`. Language tags as configured ("zh", "zh-CN", "en-GB") map to a catalogue
locale with `catalogue_locale()`: every Chinese tag to Simplified Chinese, everything else to English.
"""

from __future__ import annotations

import gettext
from functools import lru_cache
from pathlib import Path

LOCALEDIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"
LOCALES = ("zh_Hans", "en")  # the catalogues there are; the first is the parks' own language


def N_(message: str) -> str:
    """Mark `message` for extraction without translating it yet (a module-level table)."""
    return message


def catalogue_locale(language: str | None) -> str:
    """The catalogue locale for a language tag: 'zh', 'zh-CN', 'zh-TW', 'zh_Hans' -> 'zh_Hans', else 'en'."""
    tag = (language or "").strip().replace("-", "_").lower()
    return "zh_Hans" if tag == "zh" or tag.startswith("zh_") else "en"


@lru_cache(maxsize=8)
def translation(language: str | None) -> gettext.NullTranslations:
    """The translations for `language` (a tag as `catalogue_locale` takes); the msgids if none is found."""
    return gettext.translation(DOMAIN, str(LOCALEDIR), languages=[catalogue_locale(language)], fallback=True)


__all__ = ["DOMAIN", "LOCALEDIR", "LOCALES", "N_", "catalogue_locale", "translation"]
