"""The shipped monitoring files a park's IT installs: alert rules that promtool accepts and that fire on
the series they are about, a scrape config, and a Grafana board whose queries name only metrics that
the central and the gates really serve."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from central.app import create_app
from gate_agent.metrics import GateMetrics
from tests.support.services import need

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "config" / "prometheus"
DASHBOARD = ROOT / "config" / "grafana" / "park-dashboard.json"
NAME = re.compile(r"\bpark_[a-z_]+\b")
ALERTS = {"ParkGateDown", "ParkGateOutboxGrowing", "ParkZoneNearCapacity", "ParkIngestLagging",
          "ParkConflictsAppearing", "ParkClaimsSlow", "ParkParkedMessagesGrowing"}


def _promtool(*args: str) -> subprocess.CompletedProcess:
    need(shutil.which("promtool") is not None, "promtool is not installed (apt-get install prometheus)")
    return subprocess.run(["promtool", *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)


@pytest.fixture
def served(ctx, config) -> set[str]:
    """Every metric name the central's /metrics and a gate's /metrics expose (histograms with their series)."""
    from prometheus_client import generate_latest

    client = create_app(config, context=ctx, web=False).test_client()
    gate = GateMetrics("park", "g1")
    gate.watch(outbox=lambda: 0, devices=lambda: [("turnstile", True)], connected=lambda: True)
    text = client.get("/metrics").text + generate_latest(gate.registry).decode()
    names: set[str] = set()
    for kind_line in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        name, kind = kind_line
        names.add(name)
        if kind == "counter":
            names.add(name if name.endswith("_total") else name + "_total")
        if kind == "histogram":
            names |= {name + "_bucket", name + "_count", name + "_sum"}
    return names


def test_promtool_accepts_the_rules_and_the_example_scrape_config():
    rules = _promtool("check", "rules", "park-alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 9 rules found" in rules.stdout
    config = _promtool("check", "config", "prometheus.example.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_the_alerts_fire_on_the_series_they_watch_and_not_before():
    result = _promtool("test", "rules", "park-alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_the_park_needs_is_there_and_names_only_served_metrics(served):
    rules = yaml.safe_load((PROMETHEUS / "park-alerts.yml").read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} >= ALERTS
    unknown = {name for r in rules for name in NAME.findall(r["expr"])} - served
    assert unknown == set()
    assert all(r["annotations"]["summary"] for r in rules)


def test_the_grafana_board_shows_occupancy_throughput_gates_and_devices_from_served_metrics(served):
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    rows = {p["title"] for p in board["panels"] if p["type"] == "row"}
    assert rows == {"Occupancy", "Throughput", "Gates", "Devices"}
    queries = [t["expr"] for p in board["panels"] if p["type"] != "row" for t in p["targets"]]
    assert queries and all(NAME.search(q) for q in queries)
    used = {name for q in queries for name in NAME.findall(q)}
    assert used - served == set()
    for wanted in ("park_zone_occupancy", "park_passages_total", "park_gate_up", "park_gate_device_up"):
        assert wanted in used
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
