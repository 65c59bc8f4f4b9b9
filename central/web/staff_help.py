"""The staff page for one gate (tablet or phone, in the staff member's language): a visitor the gate sent
to staff, the holder's photo beside the camera's view, admit once or refuse; the gate's recent refusals.

Thin views over `central.services.staff_help`; the page polls its panel every two seconds. Photos are
served with `no-store` and only to logged-in staff of the site.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, url_for

from central.bus.link import PublishError
from central.i18n import _
from central.services import ServiceError
from central.services import gates as gate_service
from central.services import staff_help as help_service
from central.web.stack import commit, ctx, db, require, site_id

bp = Blueprint("help", __name__, url_prefix="/gates/<name>/help")
ROLES = ("staff", "technician", "manager")


def _gate_or_404(name: str):
    try:
        return gate_service.get_gate(db(), site_id(), name)
    except ServiceError:
        abort(404)


def _panel_context(name: str) -> dict:
    requests = help_service.open_requests(db(), site_id(), name)
    commit()  # requests that expired meanwhile lose their camera view now
    return {"name": name, "requests": requests, "refusals": help_service.recent_refusals(db(), site_id(), name)}


@bp.get("/")
@require(*ROLES)
def page(name: str):
    _gate_or_404(name)
    return render_template("gates/help.html", **_panel_context(name))


@bp.get("/panel")
@require(*ROLES)
def panel(name: str):
    _gate_or_404(name)
    return render_template("gates/_help_panel.html", **_panel_context(name))


def _jpeg(data: bytes | None) -> Response:
    if data is None:
        abort(404)
    return Response(data, mimetype="image/jpeg", headers={"Cache-Control": "no-store, private"})


@bp.get("/<help_id>/frame.jpg")
@require(*ROLES)
def frame(name: str, help_id: str):
    try:
        row = help_service.get_request(db(), site_id(), name, help_id)
    except ServiceError:
        abort(404)
    return _jpeg(help_service.request_frame(db(), ctx().cipher, row))


@bp.get("/<help_id>/photo.jpg")
@require(*ROLES)
def photo(name: str, help_id: str):
    try:
        row = help_service.get_request(db(), site_id(), name, help_id)
    except ServiceError:
        abort(404)
    return _jpeg(help_service.request_photo(db(), ctx().cipher, row))


@bp.post("/<help_id>")
@require(*ROLES)
def answer(name: str, help_id: str):
    _gate_or_404(name)
    admit = request.form.get("decision") == "admit"
    try:
        record = help_service.answer_help(db(), site_id(), name, help_id, admit, actor=g.actor)
        command_id = record.id
        commit()
    except ServiceError as exc:
        db().rollback()
        flash(exc.text, "error")
        return redirect(url_for(".page", name=name))
    try:
        ctx().publisher.send_command(command_id)
        flash(_("Admitted once: the gate opens.") if admit else _("Refused: the gate tells the visitor."))
    except PublishError:
        flash(_("Recorded, but the broker is away: the gate has not been told."), "error")
    return redirect(url_for(".page", name=name))
