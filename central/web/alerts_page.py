"""Open alerts for staff: what the central raised itself (gates down, zones full, ...) and what the
ingest flagged, each once with its count; a person resolves one when it has been looked at.

    /alerts                      manager, technician   the site's open alerts, the latest first
    /alerts/<id>/resolve (POST)  manager, technician   closes it (audited); a condition still holding opens anew
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for

from central.i18n import _
from central.services import ServiceError
from central.services.alerting import alert_text
from central.services.alerts import open_alerts, resolve_alert
from central.web.i18n import current_language, select_timezone
from central.web.stack import commit, current_user, db, require, site_id

bp = Blueprint("alerts", __name__, url_prefix="/alerts")


@bp.route("/")
@require("manager", "technician")
def index():
    language, timezone = current_language(), select_timezone()
    alerts = [(a, alert_text(a, language, timezone)) for a in open_alerts(db(), site_id())]
    return render_template("alerts/index.html", alerts=alerts)


@bp.post("/<int:alert_id>/resolve")
@require("manager", "technician")
def resolve(alert_id: int):
    user = current_user()
    try:
        alert = next((a for a in open_alerts(db(), site_id()) if a.id == alert_id), None)
        if alert is None:
            flash(_("There is no such open alert."), "error")
            return redirect(url_for("alerts.index"))
        resolve_alert(db(), alert_id, actor=user.username if user else None)
        commit()
    except ServiceError as exc:
        flash(exc.text, "error")
        return redirect(url_for("alerts.index"))
    flash(_("Alert resolved."), "ok")
    return redirect(url_for("alerts.index"))


__all__ = ["bp"]
