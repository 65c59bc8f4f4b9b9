"""Several parks in one central: the header's park switch and the head office's view of every park.

What a person sees is for the parks they work for (`stack.visible_sites`; the request's database
session reads nothing else). The switch keeps the chosen park in the session; every page then is
for that park, as it was for the central's only park before.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for

from central.i18n import _
from central.models import ROLES
from central.services import parks as park_service
from central.web.i18n import local_path
from central.web.stack import SITE_KEY, config, db, require, visible_sites

bp = Blueprint("parks", __name__, url_prefix="/parks")


@bp.post("/switch")
@require(*ROLES)
def switch():
    """Work on another of one's parks from now on (kept in the login's session)."""
    chosen = request.form.get("site", "")
    if chosen in visible_sites():
        session[SITE_KEY] = chosen  # looking, not changing: not an audited action
    else:
        flash(_("You do not work for that park."), "error")
    return redirect(local_path(request.form.get("next")) or url_for("auth.home"))


def _overview():
    return park_service.overview(db(), visible_sites())


def _links():
    """The link with the other servers (a park server's with head office, head office's with each park
    server the person may see), where this central replicates."""
    from central.services.replication import links

    r = config().replication
    if not r.enabled:
        return []
    seen = set(visible_sites())
    peers = {name: sites for name, sites in r.peers().items() if sites is None or seen & set(sites)}
    return links(db(), peers)


@bp.get("/")
@require("manager")
def index():
    return render_template("parks/index.html", overview=_overview(), links=_links())


@bp.get("/table")
@require("manager")
def table():
    """The figures alone, for the page's refresh every few seconds."""
    return render_template("parks/_table.html", overview=_overview(), links=_links())
