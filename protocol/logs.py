"""Structured logs, shared by the gate and the central: one JSON object a line, the site and the gate on
every line (`[logging] json = true` in gate.toml or central.toml).

    {"at": "2026-12-02T01:30:00.123Z", "level": "WARNING", "logger": "gate_agent.link", "site": "park1",
     "gate": "east-1", "service": "gate-agent", "message": "disconnected from the broker: ..."}

A gate's lines carry its own names; the central's carry its site, and the gate a line is about when the
code logging it passes `extra={"gate": ...}` (else ""). An exception adds its type and its stack
(file, line, function), never its message: a message may quote what a request carried. What a line
says is what the code logged, which the project keeps free of personal data (no names, ID numbers,
phone numbers, templates or full ticket codes).
"""

from __future__ import annotations

import json
import logging
import traceback
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    """A log record as one JSON line; `site`, `gate` and `service` fill what the record does not say."""

    def __init__(self, *, site: str, gate: str = "", service: str = "") -> None:
        super().__init__()
        self.site, self.gate, self.service = site, gate, service

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, object] = {
            "at": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
            "level": record.levelname, "logger": record.name,
            "site": getattr(record, "site", None) or self.site, "gate": getattr(record, "gate", None) or self.gate,
            "service": self.service, "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            entry["error"] = f"{type(exc).__module__}.{type(exc).__qualname__}"
            entry["stack"] = [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(exc.__traceback__)]
        return json.dumps(entry, ensure_ascii=False)


def use_json_logs(*, site: str, gate: str = "", service: str = "") -> None:
    """Every handler of the root logger writes JSON lines from now on."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter(site=site, gate=gate, service=service))


__all__ = ["JsonFormatter", "use_json_logs"]
