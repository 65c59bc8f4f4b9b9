"""The pages in the reader's language and the park's time: Flask-Babel over the project's one catalogue.

The catalogue is `protocol/locale` (`protocol.i18n`), shared with the gates. A page's language is the
first of:
1. the logged-in user's choice (`staff_users.language`, set with the switch in the page header);
2. the `lang` cookie the same switch sets (so the login page keeps the last choice);
3. the browser's `Accept-Language` ("zh", "zh-CN", "zh-TW" -> Simplified Chinese; "en-GB" -> English);
4. the site's default (`sites.language`).

Every time a page shows is in the site's time zone (`sites.timezone`): the templates format them only
through the filters `local_dt`, `local_date` and `local_time`, counts through `number`, money through
`money`, and codes (statuses, modes, roles, channels) through `label(kind, code)`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, g, redirect, request, url_for
from flask_babel import (
    Babel,
    format_date,
    format_datetime,
    format_decimal,
    format_time,
    get_locale,
    get_translations,
)
from jinja2 import pass_context
from jinja2.runtime import Context
from sqlalchemy import event

from central.i18n import LABELS  # the codes in people's words, shared with the services
from central.models import Site, StaffUser
from central.web.stack import commit, current_user, db, site_id
from protocol.clock import park_now
from protocol.i18n import LOCALEDIR, LOCALES, catalogue_locale
from protocol.reasons import Reason, visitor_text

bp = Blueprint("i18n", __name__)
babel = Babel()
COOKIE = "lang"
COOKIE_AGE_S = 365 * 24 * 3600
# The switch names each language in that language, as language menus do.
LANGUAGES = (("zh_Hans", "中文"), ("en", "English"))
HTML_LANG = {"zh_Hans": "zh-Hans", "en": "en"}

@dataclass(frozen=True)
class SiteLocale:
    timezone: str
    language: str | None


SITE_LOCALE_TTL_S = 5.0
_site_locales: dict[str, tuple[float, SiteLocale]] = {}


@event.listens_for(Site, "after_insert")
@event.listens_for(Site, "after_update")
@event.listens_for(Site, "after_delete")
def _forget_site_locales(_mapper, _connection, _site) -> None:
    """A park's row written in this process (its time zone or language may have changed): its pages use
    the new one at once (other processes within SITE_LOCALE_TTL_S). A mapper event: it costs other
    sessions' flushes nothing."""
    _site_locales.clear()


def _site() -> SiteLocale | None:
    """This request's park's language and time zone. Read at most every few seconds per process: every
    page formats dates with them, and a SELECT of the site row was a fifth of a booking form's answer
    under a rush (the booking bench's profile)."""
    if "i18n_site" not in g:
        # The "database away" page asks nothing of the database: the cookie and the browser decide.
        if g.get("database_away"):
            g.i18n_site = None
        else:
            key, now = site_id(), time.monotonic()
            cached = _site_locales.get(key)
            if cached is not None and now - cached[0] <= SITE_LOCALE_TTL_S:
                g.i18n_site = cached[1]
            else:
                row = db().get(Site, key)
                g.i18n_site = SiteLocale(row.timezone, row.language) if row is not None else None
                if g.i18n_site is not None:
                    _site_locales[key] = (now, g.i18n_site)
    return g.i18n_site


def site_today() -> date:
    """Today in the park's time zone (a desk at 02:53 in Shanghai sells for Shanghai's date)."""
    from zoneinfo import ZoneInfo

    site = _site()
    return park_now().astimezone(ZoneInfo(site.timezone if site is not None else "UTC")).date()


def select_locale() -> str:
    """The catalogue locale of this request: the user's choice, the cookie, the browser's, the site's."""
    user = None if g.get("database_away") else current_user()
    if user is not None and user.language in LOCALES:
        return user.language
    if request.cookies.get(COOKIE) in LOCALES:
        return request.cookies[COOKIE]
    best = request.accept_languages.best_match(["zh", "en"])
    if best:
        return catalogue_locale(best)
    site = _site()
    return catalogue_locale(site.language if site is not None else None)


def select_timezone() -> str:
    site = _site()
    return site.timezone if site is not None and site.timezone else "UTC"


def current_language() -> str:
    return str(get_locale() or "en")


def html_lang() -> str:
    """The page's `lang` attribute (BCP 47): zh-Hans or en."""
    return HTML_LANG.get(current_language(), "en")


# --- filters: every date, time and number a page shows ---------------------------------------------


def local_dt(value: datetime | None, precision: str = "seconds") -> str:
    """An aware (UTC) datetime as the site's local date and time, for the reader's locale.

    `precision` "seconds" (logs, last seen) or "minutes" (validity, sales): the day always as the
    locale's medium date ("Dec 1, 2026", "2026年12月1日"), never a short one like 12/1/26 that
    readers of another country would take for another day.
    """
    if value is None:
        return ""
    if precision == "seconds":
        return format_datetime(value, "medium")
    pattern = str(get_locale().datetime_formats["medium"])  # "{1}, {0}": date, time
    return pattern.replace("{1}", format_date(value, "medium")).replace("{0}", format_time(value, "short"))


def local_date(value: date | datetime | None, format: str = "medium") -> str:
    """A day (a date as is; a datetime as its day in the site's time zone), for the reader's locale."""
    return "" if value is None else format_date(value, format)


def local_time(value: datetime | None, format: str = "short") -> str:
    """The site-local time of day of an aware datetime, for the reader's locale."""
    return "" if value is None else format_time(value, format)


def number(value: int | float | Decimal | None) -> str:
    """A count with the locale's digit grouping."""
    return "" if value is None else format_decimal(value)


def money(value: Decimal | str | float | None) -> str:
    """An amount with two decimals and the locale's grouping (the currency is the park's)."""
    if value is None or value == "":
        return ""
    try:
        return format_decimal(Decimal(str(value)), format="#,##0.00")
    except InvalidOperation:
        return str(value)


def label(kind: str, code: str | None) -> str:
    """A stored code (`kind` as in LABELS) in the reader's words; an unknown code as it is."""
    if code is None:
        return ""
    text = LABELS.get(kind, {}).get(code)
    return str(text) if text is not None else str(code)


def labels(kind: str) -> dict[str, str]:
    """Every code of `kind` in the reader's words (for a page's script)."""
    return {code: str(text) for code, text in LABELS.get(kind, {}).items()}


def reason_text(reason: str) -> str:
    """A refusal reason in the page's language, with no time: "Too early, please come back later"."""
    try:
        return visitor_text(reason, translations=get_translations())
    except ValueError:
        return reason


def reason_texts() -> dict[str, str]:
    """Every refusal reason in the reader's words, with no time (for a page's script)."""
    return {reason.value: reason_text(reason.value) for reason in Reason}


# --- the switch in the header ----------------------------------------------------------------------


def local_path(target: str | None) -> str | None:
    """Only a path on this site, never an absolute URL someone else chose (browsers read /\\ as //)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return None
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc else target


@bp.post("/language")
def set_language():
    """Remember the chosen language: on the user's record when logged in, and in a cookie for this browser."""
    choice = request.form.get("language", "")
    target = local_path(request.form.get("next")) or url_for("auth.home")
    response = redirect(target)
    if choice not in LOCALES:
        return response
    user = current_user()
    if user is not None:
        db().get(StaffUser, user.id).language = choice
        commit()
    response.set_cookie(COOKIE, choice, max_age=COOKIE_AGE_S, httponly=True, samesite="Lax",
                        secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")))
    return response


def _translations(context: Context):
    """The catalogue of this render, looked up once: Flask-Babel's own lookup runs for every text of a
    template (the request context, the domain, the locale's name), a fifth of a booking form's render
    under the rush. Kept on the render's evaluation context (shared by its blocks and macros), so a
    render inside `force_locale` gets that locale's words."""
    found = getattr(context.eval_ctx, "park_translations", None)
    if found is None:
        found = get_translations()
        setattr(context.eval_ctx, "park_translations", found)  # noqa: B010  (an attribute Jinja does not type)
    return found


@pass_context
def _template_gettext(context: Context, message: str) -> str:
    return _translations(context).ugettext(message)


@pass_context
def _template_ngettext(context: Context, singular: str, plural: str, n: int) -> str:
    return _translations(context).ungettext(singular, plural, n)


@pass_context
def _template_pgettext(context: Context, message_context: str, message: str) -> str:
    return _translations(context).upgettext(message_context, message)


@pass_context
def _template_npgettext(context: Context, message_context: str, singular: str, plural: str, n: int) -> str:
    return _translations(context).unpgettext(message_context, singular, plural, n)


def init_app(app: Flask) -> None:
    """Flask-Babel on the shared catalogue, the switch, and the template helpers."""
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(LOCALEDIR)
    app.config["BABEL_DOMAIN"] = "messages"
    babel.init_app(app, locale_selector=select_locale, timezone_selector=select_timezone)
    # Templates' _() and ngettext(): as Flask-Babel installs them (newstyle), with the lookup above.
    # (a method the i18n extension adds to the environment, unknown to Jinja's types)
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        _template_gettext, _template_ngettext, newstyle=True,
        pgettext=_template_pgettext, npgettext=_template_npgettext)
    app.jinja_env.policies["ext.i18n.trimmed"] = True  # as babel.cfg extracts {% trans %} blocks
    app.jinja_env.filters.update(local_dt=local_dt, local_date=local_date, local_time=local_time,
                                 number=number, money=money)
    app.jinja_env.globals.update(label=label, labels=labels, reason_texts=reason_texts, html_lang=html_lang,
                                 current_language=current_language, languages=LANGUAGES)
    app.register_blueprint(bp)


__all__ = ["LABELS", "init_app", "label", "labels", "local_date", "local_dt", "local_time", "money", "number",
           "site_today"]
