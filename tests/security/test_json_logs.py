"""Structured logs, when a park turns them on: every line of the gate agent and of the central's ingest
is one JSON object with the site and the gate, and none carries the ticket code the visitor showed."""

from __future__ import annotations

import json
import logging

import pytest

from protocol.logs import JsonFormatter
from tests.reliability.conftest import GateProc, Park
from tests.support.waiting import poll

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto]


def _lines(path) -> list[dict]:
    """Every log line; the console display's lines ("[g1] ...", the visitor's screen on stdout) are not logs."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("[g1] ")]


def test_json_logs_of_a_gate_and_the_ingest_name_site_and_gate_and_never_the_code(db_url, tmp_path,
                                                                                   mosquitto_factory):
    broker = mosquitto_factory()
    park = Park(tmp_path, db_url, broker, gates=("g1",), tickets=1)
    with park.config_path.open("a") as fh:
        fh.write("[logging]\njson = true\n")
    gate = GateProc(tmp_path, broker, park.site, "g1", extra_toml="\n[logging]\njson = true\n")
    try:
        park.start_ingest(wait=False)
        poll(lambda: park.ingest_log.exists() and "running" in park.ingest_log.read_text(), 30,
             what="the ingest worker running")
        gate.start()
        poll(gate.ready, 40, what="the gate configured and synced")
        code = park.codes[0]
        gate.scanner.scan(code)
        poll(lambda: park.rows("g1", passed=True) == 1, 30, what="the passage at the central")
        gate.stop()
    finally:
        gate.close()
        park.close()
    gate_lines = _lines(gate.log)
    assert len(gate_lines) >= 3
    assert all(line["site"] == park.site and line["gate"] == "g1" and line["service"] == "gate-agent"
               for line in gate_lines)
    assert any(line["logger"] == "gate_agent.agent" and "started" in line["message"] for line in gate_lines)
    central_lines = _lines(park.ingest_log)
    assert any("running" in line["message"] for line in central_lines)
    assert all(line["site"] == park.site and "gate" in line for line in central_lines)
    everything = gate.log.read_text(encoding="utf-8") + park.ingest_log.read_text(encoding="utf-8")
    assert code not in everything and code[:16] not in everything


def test_an_exception_in_a_json_line_gives_its_type_and_stack_but_not_its_message():
    try:
        raise ValueError("110101199003078515 Zhang San")
    except ValueError:
        record = logging.LogRecord("central.x", logging.ERROR, __file__, 1, "storing failed", (), exc_info=True)
        import sys

        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter(site="park1", service="t").format(record))
    assert line["error"] == "builtins.ValueError" and line["stack"] and line["gate"] == ""
    assert "110101199003078515" not in json.dumps(line) and "Zhang" not in json.dumps(line)
