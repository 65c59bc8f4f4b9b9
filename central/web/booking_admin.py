"""The booking site's back office: calendar, settings, blocklist, suspicious patterns, desk bookings."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("bookings", __name__, url_prefix="/bookings")
