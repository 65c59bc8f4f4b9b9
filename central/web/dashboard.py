"""The manager's dashboard: one page, filled and then kept current by the live stream."""

from __future__ import annotations

from flask import Blueprint, render_template

from central.web.stack import require, site_id
from protocol.reasons import Reason

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")


@bp.route("/")
@require("manager")
def index():
    return render_template("dashboard.html", site=site_id(), reasons=list(Reason))
