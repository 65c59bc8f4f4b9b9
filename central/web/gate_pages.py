"""The technician's pages: register gates, set their hardware, push the config and see it applied,
switch modes (a gate, a zone, the whole site in emergency), open once, health and recent faults."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from central.bus.link import PublishError
from central.i18n import _, _l
from central.services import Invalid, ServiceError
from central.services import gates as gate_service
from central.web import queries
from central.web.i18n import label
from central.web.stack import commit, config, ctx, db, gates_served_here, live_hub, require, signed_in, site_id

bp = Blueprint("gates", __name__, url_prefix="/gates")
MODES = gate_service.MODES
DIRECTIONS = gate_service.DIRECTIONS


def _actor() -> str:
    return signed_in().username


@bp.before_request
def _only_for_our_gates():
    """Every change here is for this central's own gates (not a park server's, at a head office)."""
    if request.method != "POST":
        return None
    try:
        gates_served_here(site_id())
    except ServiceError as exc:
        flash(exc.text, "error")
        return redirect(url_for(".index")), 303
    return None


HARDWARE_FIELDS = {"unit_id": _l("Modbus unit id"), "passage_timeout_s": _l("Passage timeout (seconds)"),
                   "repeat_scan_s": _l("Repeat-scan window (seconds)")}


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
        if profile and profile not in config().gates.known_profiles:
            errors["controller_profile"] = _("Choose a controller profile from the list.")
        out.controller_profile = profile

        def number(key: str, kind, low, high, low_open=False):
            raw = (form.get(key) or "").strip()
            try:
                value = kind(raw)
            except ValueError:
                errors[key] = _("“%(field)s” is a number.", field=HARDWARE_FIELDS[key])
                return getattr(out, key)
            if value != value or (value <= low if low_open else value < low) or value > high:  # NaN too
                errors[key] = (_("“%(field)s” is above %(low)s and at most %(high)s.", field=HARDWARE_FIELDS[key],
                                 low=low, high=high) if low_open else
                               _("“%(field)s” is from %(low)s to %(high)s.", field=HARDWARE_FIELDS[key], low=low,
                                 high=high))
            return value

        out.unit_id = number("unit_id", int, 1, 247)
        out.passage_timeout_s = number("passage_timeout_s", float, 0, 120, low_open=True)
        out.repeat_scan_s = number("repeat_scan_s", float, 0, 60)
        return out, errors

    def as_dict(self) -> dict:
        data: dict[str, object] = {"unit_id": self.unit_id, "passage_timeout_s": self.passage_timeout_s,
                "repeat_scan_s": self.repeat_scan_s}
        if self.controller_profile:
            data["controller_profile"] = self.controller_profile
        return data


def _index_page(status: int = 200, **extra):
    session = db()
    return render_template("gates/index.html", gates=queries.gates(session, site_id()),
                           zones=queries.zones(session, site_id()), modes=MODES, directions=DIRECTIONS,
                           **({"creds": None, "form": {}, "errors": {}} | extra)), status


@bp.route("/")
@require("technician", "manager")
def index():
    return _index_page()


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
    except ServiceError as exc:
        db().rollback()
        field = {"bad_gate_name": "name", "gate_exists": "name", "no_zone": "zone", "bad_zone": "zone",
                 "bad_direction": "direction"}.get(exc.code, "form")
        return _index_page(422, form=form, errors={field: exc.text})
    # The password is shown once, on this page: never put into a flash message (the session cookie).
    return _index_page(creds=creds, new_gate=gate.name)


@bp.post("/zones")
@require("technician", "manager")
def add_zone():
    form = request.form
    capacity = _capacity(form.get("capacity"))
    if capacity is False:
        return _index_page(422, zone_form=form, zone_errors={"capacity": _("The capacity is a whole number.")})
    try:
        zone = gate_service.add_zone(db(), site_id(), name=form.get("name") or "", capacity=capacity, actor=_actor())
        commit()
    except ServiceError as exc:
        db().rollback()
        return _index_page(422, zone_form=form, zone_errors={"name": exc.text})
    flash(_("Zone %(number)s, %(name)s, added.", number=zone.number, name=zone.name))
    return redirect(url_for(".index"))


@bp.post("/zones/<int:number>")
@require("technician", "manager")
def edit_zone(number: int):
    form = request.form
    capacity = _capacity(form.get("capacity"))
    try:
        if form.get("action") == "remove":
            gate_service.remove_zone(db(), site_id(), number, actor=_actor())
            done = _("Zone %(number)s removed.", number=number)
        elif capacity is False:
            raise Invalid("bad_capacity", _l("The capacity is a whole number."))
        else:
            gate_service.update_zone(db(), site_id(), number, name=form.get("name"), capacity=capacity,
                                     actor=_actor())
            done = _("Zone %(number)s saved.", number=number)
        commit()
        flash(done)
    except ServiceError as exc:
        db().rollback()
        flash(exc.text, "error")
    return redirect(url_for(".index"))


def _capacity(text: str | None):
    """The capacity typed (None: empty, no limit; False: not a number)."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return False


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
                           profiles=config().gates.known_profiles,
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
        errors["direction"] = _("A direction is in, out or both.")
    try:
        zone = int(request.form.get("zone") or g.zone_number)
    except ValueError:
        zone = 0
    if zone not in {z.number for z in queries.zones(db(), site_id())}:
        errors["zone"] = _("Choose one of the park's zones.")
        zone = g.zone_number
    if errors:
        return _gate_page(g, hw, errors, 422)
    try:
        gate_service.update_gate(db(), site_id(), name, zone=zone, direction=direction, hardware=hw.as_dict(),
                                 actor=_actor(), profiles=config().gates.known_profiles)
        commit()
    except ServiceError as exc:
        db().rollback()
        field = {"bad_profile": "controller_profile", "no_zone": "zone", "bad_hardware": "form"}.get(exc.code, "form")
        return _gate_page(g, hw, {field: exc.text}, 422)
    flash(_("Config saved and pushed: the state below shows when the gate has applied it."))
    return redirect(url_for(".gate", name=name))


@bp.post("/<name>/push")
@require("technician")
def push(name: str):
    _gate_or_404(name)
    gate_service.update_gate(db(), site_id(), name, actor=_actor())  # a new version: every gate re-applies
    commit()
    flash(_("Config pushed again."))
    return redirect(url_for(".gate", name=name))


@bp.post("/<name>/mode")
@require("technician")
def mode(name: str):
    _gate_or_404(name)
    try:
        gate_service.set_gate_mode(db(), site_id(), name, request.form.get("mode", ""), actor=_actor())
        commit()
        flash(_("Gate %(name)s: mode %(mode)s sent.", name=name, mode=label("mode", request.form.get("mode"))))
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
        flash(_("Gate %(name)s: open once sent.", name=name) if sent else
              _("Gate %(name)s: open once recorded, but the broker is away.", name=name),
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
        flash(_("No gate in zone %(zone)s.", zone=zone), "error")
        return redirect(url_for(".index"))
    try:
        for name in names:
            gate_service.set_gate_mode(db(), site_id(), name, mode_, actor=_actor())
        commit()
        flash(_("Zone %(zone)s: mode %(mode)s sent to %(n)s gates.", zone=zone, mode=label("mode", mode_),
                n=len(names)))
    except ServiceError as exc:
        db().rollback()
        flash(exc.text, "error")
    return redirect(url_for(".index"))


@bp.post("/emergency")
@require("technician", "manager")
def emergency():
    """Emergency for the whole site: every gate opens now (site command) and keeps it (config); ending it
    returns each gate to the mode it had before (a locked gate stays locked)."""
    on = request.form.get("state") == "on"
    try:
        if on:
            gate_service.start_site_emergency(db(), site_id(), actor=_actor())
        else:
            gate_service.end_site_emergency(db(), site_id(), actor=_actor())
        commit()
        # The command reaches the gates at once; ending needs none: the new config versions clear it.
        sent = _send_command(None, "set_mode", mode="emergency") if on else True
    except ServiceError as exc:
        db().rollback()
        flash(exc.text, "error")
        return redirect(url_for(".index"))
    message = (_("Emergency: every gate is told to open.") if on else
               _("Emergency ended: every gate goes back to the mode it had before."))
    if not sent:
        message = f"{message} {_('The broker is away: gates learn it when it is back.')}"
    flash(message, "message" if sent else "error")
    return redirect(request.form.get("back") if _local(request.form.get("back")) else url_for(".index"))


def _local(target: str | None) -> bool:
    return target is not None and target.startswith("/") and not target.startswith("//")
