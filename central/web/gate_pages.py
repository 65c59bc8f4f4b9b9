"""The technician's pages: register gates, set their hardware, push the config and see it applied,
switch modes (a gate, a zone, the whole site in emergency), open once, health and recent faults."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from central.bus.link import PublishError
from central.services import ServiceError
from central.services import gates as gate_service
from central.web import queries
from central.web.stack import commit, config, ctx, current_user, db, live_hub, require, site_id

bp = Blueprint("gates", __name__, url_prefix="/gates")
MODES = gate_service.MODES
DIRECTIONS = gate_service.DIRECTIONS


def _actor() -> str:
    return current_user().username


@dataclass
class HardwareForm:
    """The hardware settings a technician may change from the central, validated field by field."""

    controller_profile: str = ""
    unit_id: int = 1
    passage_timeout_s: float = 10.0
    repeat_scan_s: float = 1.5

    @classmethod
    def parse(cls, form) -> tuple[HardwareForm, dict[str, str]]:
        errors: dict[str, str] = {}
        out = cls()
        profile = (form.get("controller_profile") or "").strip()
        if len(profile) > 64 or any(not (c.isalnum() or c in "-_.") for c in profile):
            errors["controller_profile"] = "a profile name is up to 64 letters, digits, - _ ."
        out.controller_profile = profile

        def number(key: str, kind, low, high, low_open=False):
            raw = (form.get(key) or "").strip()
            try:
                value = kind(raw)
            except ValueError:
                errors[key] = f"{key.replace('_', ' ')} must be a number"
                return getattr(out, key)
            if value != value or (value <= low if low_open else value < low) or value > high:  # NaN too
                floor = "above" if low_open else "at least"
                errors[key] = f"{key.replace('_', ' ')} must be {floor} {low} and at most {high}"
            return value

        out.unit_id = number("unit_id", int, 1, 247)
        out.passage_timeout_s = number("passage_timeout_s", float, 0, 120, low_open=True)
        out.repeat_scan_s = number("repeat_scan_s", float, 0, 60)
        return out, errors

    def as_dict(self) -> dict:
        data = {"unit_id": self.unit_id, "passage_timeout_s": self.passage_timeout_s,
                "repeat_scan_s": self.repeat_scan_s}
        if self.controller_profile:
            data["controller_profile"] = self.controller_profile
        return data


@bp.route("/")
@require("technician")
def index():
    session = db()
    return render_template("gates/index.html", gates=queries.gates(session, site_id()),
                           zones=queries.zones(session, site_id()), modes=MODES, directions=DIRECTIONS,
                           creds=None)


@bp.post("/")
@require("technician")
def register():
    form = request.form
    try:
        zone = int(form.get("zone") or 0)
    except ValueError:
        zone = 0
    try:
        gate, creds = gate_service.register_gate(db(), site_id(), (form.get("name") or "").strip(), zone,
                                                 direction=form.get("direction") or "both", actor=_actor(),
                                                 profiles=config().gates.known_profiles)
        commit()
    except (ServiceError, ValueError) as exc:
        db().rollback()
        flash(exc.text if isinstance(exc, ServiceError) else str(exc), "error")
        return redirect(url_for(".index"))
    # The password is shown once, on this page: never put into a flash message (the session cookie).
    session = db()
    return render_template("gates/index.html", gates=queries.gates(session, site_id()),
                           zones=queries.zones(session, site_id()), modes=MODES, directions=DIRECTIONS,
                           creds=creds, new_gate=gate.name)


def _gate_or_404(name: str):
    try:
        return gate_service.get_gate(db(), site_id(), name)
    except ServiceError:
        abort(404)


def config_state(gate) -> dict:
    """Where the gate's config stands: published, applied, refused, or waiting for the gate."""
    acked, error = gate.config_acked, gate.config_error
    hub = live_hub()
    live = hub.config_acks.get((gate.site_id, gate.name)) if hub else None
    if live:
        if live["applied"] and live["version"] > acked:
            acked, error = live["version"], None
        elif not live["applied"] and live["version"] >= gate.config_version:
            error = live["error"] or "refused"
    if acked >= gate.config_version:
        state = "applied"
    elif error:
        state = "refused"
    elif gate.config_published >= gate.config_version:
        state = "waiting"
    else:
        state = "not_sent"
    return {"version": gate.config_version, "published": gate.config_published, "acked": acked, "error": error,
            "state": state}


@bp.route("/<name>")
@require("technician")
def gate(name: str):
    g = _gate_or_404(name)
    hw = HardwareForm(**{k: v for k, v in (g.hardware or {}).items() if k in HardwareForm.__dataclass_fields__})
    return _gate_page(g, hw, {})


def _gate_page(g, hw: HardwareForm, errors: dict[str, str], status: int = 200):
    history = queries.gate_history(db(), site_id(), g.name)
    faults = [r for r in history if queries.is_fault(r)][:20]
    return render_template("gates/gate.html", g=g, hw=hw, errors=errors, history=history, faults=faults,
                           latest=history[0] if history else None, config=config_state(g),
                           zones=queries.zones(db(), site_id()), modes=MODES, directions=DIRECTIONS,
                           commands=queries.gate_commands(db(), site_id(), g.name)), status


@bp.route("/<name>/config-state")
@require("technician")
def config_fragment(name: str):
    g = _gate_or_404(name)
    return render_template("gates/_config_state.html", g=g, config=config_state(g))


@bp.post("/<name>/config")
@require("technician")
def save_config(name: str):
    g = _gate_or_404(name)
    hw, errors = HardwareForm.parse(request.form)
    direction = request.form.get("direction") or g.direction
    if direction not in DIRECTIONS:
        errors["direction"] = "direction must be in, out or both"
    try:
        zone = int(request.form.get("zone") or g.zone_number)
        if not 1 <= zone <= 32:
            raise ValueError
    except ValueError:
        errors["zone"] = "zone must be 1-32"
        zone = g.zone_number
    if errors:
        return _gate_page(g, hw, errors, 422)
    try:
        gate_service.update_gate(db(), site_id(), name, zone=zone, direction=direction, hardware=hw.as_dict(),
                                 actor=_actor(), profiles=config().gates.known_profiles)
        commit()
    except ServiceError as exc:
        db().rollback()
        flash(exc.text, "error")
        return redirect(url_for(".gate", name=name))
    flash("Config saved and pushed: the state below shows when the gate has applied it.")
    return redirect(url_for(".gate", name=name))


@bp.post("/<name>/push")
@require("technician")
def push(name: str):
    _gate_or_404(name)
    gate_service.update_gate(db(), site_id(), name, actor=_actor())  # a new version: every gate re-applies
    commit()
    flash("Config pushed again.")
    return redirect(url_for(".gate", name=name))


@bp.post("/<name>/mode")
@require("technician")
def mode(name: str):
    _gate_or_404(name)
    try:
        gate_service.set_gate_mode(db(), site_id(), name, request.form.get("mode", ""), actor=_actor())
        commit()
        flash(f"Gate {name}: mode {request.form.get('mode')} sent.")
    except ServiceError as exc:
        db().rollback()
        flash(exc.text, "error")
    return redirect(url_for(".gate", name=name))


def _send_command(gate: str | None, kind: str, **kwargs) -> bool:
    record, _message, _topic = gate_service.create_command(db(), site_id(), gate, kind, actor=_actor(), **kwargs)
    command_id = record.id
    commit()
    try:
        ctx().publisher.send_command(command_id)
        return True
    except PublishError:
        return False


@bp.post("/<name>/open")
@require("technician")
def open_once(name: str):
    _gate_or_404(name)
    try:
        sent = _send_command(name, "open_once", direction=request.form.get("direction", "in"))
        flash(f"Gate {name}: open once {'sent' if sent else 'recorded, but the broker is away'}.",
              "message" if sent else "error")
    except ServiceError as exc:
        db().rollback()
        flash(exc.text, "error")
    return redirect(url_for(".gate", name=name))


@bp.post("/zone-mode")
@require("technician")
def zone_mode():
    mode_ = request.form.get("mode", "")
    try:
        zone = int(request.form.get("zone") or 0)
    except ValueError:
        zone = 0
    names = [g.name for g in queries.gates(db(), site_id()) if g.zone_number == zone]
    if not names:
        flash(f"No gate in zone {zone}.", "error")
        return redirect(url_for(".index"))
    try:
        for name in names:
            gate_service.set_gate_mode(db(), site_id(), name, mode_, actor=_actor())
        commit()
        flash(f"Zone {zone}: mode {mode_} sent to {len(names)} gates.")
    except ServiceError as exc:
        db().rollback()
        flash(exc.text, "error")
    return redirect(url_for(".index"))


@bp.post("/emergency")
@require("technician")
def emergency():
    """Emergency for the whole site: every gate opens now (site command) and keeps it (config)."""
    on = request.form.get("state") == "on"
    mode_ = "emergency" if on else "normal"
    try:
        for g in queries.gates(db(), site_id()):
            gate_service.set_gate_mode(db(), site_id(), g.name, mode_, actor=_actor())
        commit()
        sent = _send_command(None, "set_mode", mode=mode_)
    except ServiceError as exc:
        db().rollback()
        flash(exc.text, "error")
        return redirect(url_for(".index"))
    flash(("Emergency: every gate is told to open." if on else "Emergency ended: gates back to normal.")
          + ("" if sent else " The broker is away: gates learn it when it is back."), "message" if sent else "error")
    return redirect(url_for(".index"))
