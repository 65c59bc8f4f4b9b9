"""Marking the texts people read, for code below the web layer (services, jobs, the CLI).

    _("...")            translated now, in the request's language (English outside a request)
    _l("...")           translated when shown: for module-level texts and ServiceError details
    ngettext, pgettext  plurals and words with a context

A service refuses with `Invalid("bad_phone", _l("A phone number has at most %(n)s characters", n=32))`:
the code stays stable for machines, the detail is read in the reader's language when a page flashes it
or the API answers (English by default there, Chinese for `Accept-Language: zh`). Everything marked is
extracted by `make messages` into the one catalogue (`protocol/locale`) and translated there.
"""

from __future__ import annotations

from flask_babel import force_locale, gettext, lazy_gettext, lazy_pgettext, ngettext, pgettext

_ = gettext
_l = lazy_gettext
_p = lazy_pgettext

__all__ = ["_", "_l", "_p", "force_locale", "gettext", "lazy_gettext", "lazy_pgettext", "ngettext", "pgettext"]
