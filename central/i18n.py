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

from typing import Any

from flask_babel import force_locale, gettext, lazy_gettext, lazy_pgettext, ngettext, pgettext

_ = gettext
_l = lazy_gettext
_p = lazy_pgettext

# The codes the store keeps, as a reader of the page says them; the context tells a translator where
# the word stands (a badge, a select). In English they read as the pages always showed them.
LABELS: dict[str, dict[str, Any]] = {
    "ticket_status": {
        "valid": _p("ticket status", "valid"), "used": _p("ticket status", "used"),
        "refunded": _p("ticket status", "refunded"), "revoked": _p("ticket status", "revoked"),
        "expired": _p("ticket status", "expired"), "held": _p("ticket status", "on hold")},
    "pass_status": {"active": _p("pass status", "active"), "suspended": _p("pass status", "suspended"),
                    "lost": _p("pass status", "lost"), "expired": _p("pass status", "expired")},
    "mode": {"normal": _p("gate mode", "normal"), "free": _p("gate mode", "free passage"),
             "locked": _p("gate mode", "locked"), "emergency": _p("gate mode", "emergency")},
    "direction": {"in": _p("gate direction", "in"), "out": _p("gate direction", "out"),
                  "both": _p("gate direction", "both")},
    "role": {"admin": _p("role", "admin"), "manager": _p("role", "manager"), "staff": _p("role", "staff"),
             "technician": _p("role", "technician"), "finance": _p("role", "finance"),
             "sales": _p("role", "sales")},
    "channel": {"box_office": _p("sales channel", "box office"), "web": _p("sales channel", "website"),
                "ota": _p("sales channel", "online travel agency"), "agency": _p("sales channel", "travel agency"),
                "group": _p("sales channel", "group"), "other": _p("sales channel", "other")},
    "credential": {"qr": _p("credential", "QR ticket"), "id_card": _p("credential", "ID card"),
                   "annual_pass": _p("credential", "annual pass"), "face": _p("credential", "face"),
                   "fingerprint": _p("credential", "fingerprint"), "none": _p("credential", "none")},
    "command": {"open_once": _p("gate command", "open once"), "set_mode": _p("gate command", "set mode"),
                "resync": _p("gate command", "resync"), "test_devices": _p("gate command", "test devices"),
                "staff_admit": _p("gate command", "admitted by staff"),
                "staff_refuse": _p("gate command", "refused by staff")},
    "check": {"passed": _p("face check", "passed"), "failed": _p("face check", "failed"),
              "skipped": _p("face check", "skipped")},
}

# Group customers and finance (#21).
LABELS.update({
    "customer_kind": {"agency": _p("customer kind", "travel agency"),
                      "ota": _p("customer kind", "online travel agency"),
                      "company": _p("customer kind", "company"), "school": _p("customer kind", "school"),
                      "government": _p("customer kind", "government unit")},
    "customer_status": {"active": _p("customer status", "active"), "suspended": _p("customer status", "suspended")},
    "payment_method": {"cash": _p("payment method", "cash"), "bank_card": _p("payment method", "bank card"),
                       "wechat_pay": _p("payment method", "WeChat Pay"), "alipay": _p("payment method", "Alipay"),
                       "voucher": _p("payment method", "voucher"), "on_account": _p("payment method", "on account"),
                       "bank_transfer": _p("payment method", "bank transfer"),
                       "": _p("payment method", "not recorded")},
    "statement_status": {"open": _p("statement status", "open"), "checked": _p("statement status", "checked"),
                         "closed": _p("statement status", "closed")},
    "group_ticketing": {"group": _p("group ticketing", "one group ticket (one code, one passage per person)"),
                        "members": _p("group ticketing", "one ticket per member")},
    "payment_status": {"done": _p("payment status", "done"), "pending": _p("payment status", "waiting for approval"),
                       "rejected": _p("payment status", "rejected")},
})

# A manager's decision on a conflict from offline gates (central.services.conflicts).
LABELS["conflict_decision"] = {
    "accepted": _p("conflict decision", "accepted: the passage stands"),
    "credential_revoked": _p("conflict decision", "ticket revoked or pass suspended"),
    "followed_up": _p("conflict decision", "settled outside the system"),
}


def status_label(kind: str, code: str | None) -> object:
    """A stored code (`kind` as in LABELS) in people's words (lazy); an unknown code as it is."""
    if code is None:
        return ""
    return LABELS.get(kind, {}).get(code, code)


__all__ = ["LABELS", "_", "_l", "_p", "force_locale", "gettext", "lazy_gettext", "lazy_pgettext", "ngettext",
           "pgettext", "status_label"]
