"""A real Prometheus (Debian's) scrapes a running central (its web and its ingest worker, two processes
counting into one multiprocess folder) and a running gate agent; after passages at the turnstile its
query API answers with the passages, the occupancy, the gate's decisions and its devices."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.reliability.conftest import ROOT, GateProc, Park, _env, stop_process
from tests.support.services import free_port, need, wait_port
from tests.support.waiting import poll

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto]
RULES = ROOT / "config" / "prometheus" / "park-alerts.yml"


class Prometheus:
    def __init__(self, tmp_path: Path, targets: dict[str, list[str]]) -> None:
        need(shutil.which("prometheus") is not None, "prometheus is not installed (apt-get install prometheus)")
        self.port = free_port()
        shutil.copy(RULES, tmp_path / "park-alerts.yml")
        jobs = "".join(f"  - job_name: {job}\n    static_configs:\n      - targets: {json.dumps(t)}\n"
                       for job, t in targets.items())
        config = tmp_path / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                          f"rule_files:\n  - park-alerts.yml\nscrape_configs:\n{jobs}")
        self.log = (tmp_path / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}"], stdout=self.log, stderr=subprocess.STDOUT)
        assert wait_port("127.0.0.1", self.port, 30), "prometheus did not start"

    def api(self, path: str, **params) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return answer["data"]

    def value(self, query: str) -> float | None:
        result = self.api("query", query=query)["result"]
        return float(result[0]["value"][1]) if result else None

    def close(self) -> None:
        stop_process(self.proc)
        self.log.close()


def test_prometheus_reads_passages_occupancy_and_gate_health_from_the_central_and_the_gate(
        db_url, tmp_path, mosquitto_factory):
    broker = mosquitto_factory()
    park = Park(tmp_path, db_url, broker, gates=("g1",), tickets=2)
    web_port, gate_port = free_port(), free_port()
    with park.config_path.open("a") as fh:
        fh.write(f'[web]\nhost = "127.0.0.1"\nport = {web_port}\n'
                 f'[metrics]\nmultiprocess_dir = "{tmp_path / "metrics"}"\n')
    gate = GateProc(tmp_path, broker, park.site, "g1", extra_toml=f'\n[metrics]\nlisten = "127.0.0.1:{gate_port}"\n')
    web = prometheus = None
    try:
        park.start_ingest()
        web_log = (tmp_path / "web.log").open("wb")
        web = subprocess.Popen([sys.executable, "-m", "central.cli", "--config", str(park.config_path), "serve"],
                               cwd=ROOT, env=_env(), stdout=web_log, stderr=subprocess.STDOUT)
        assert wait_port("127.0.0.1", web_port, 30), (tmp_path / "web.log").read_text()[-2000:]
        gate.start()
        poll(gate.ready, 40, what="the gate configured and synced")
        prometheus = Prometheus(tmp_path, {"park-central": [f"127.0.0.1:{web_port}"],
                                           "park-gates": [f"127.0.0.1:{gate_port}"]})
        for code in park.codes:
            gate.scanner.scan(code)
            poll(lambda c=code: gate.written() == park.codes.index(c) + 1, 20, what="the visitor decided")
        poll(lambda: park.rows("g1", passed=True) == 2, 30, what="both passages at the central")

        site = park.site
        assert poll(lambda: prometheus.value(f'sum(park_passages_total{{site="{site}",job="park-central"}})') == 2,
                    30, what="the ingest process's passages in Prometheus")
        assert prometheus.value(f'park_zone_occupancy{{site="{site}",zone="1"}}') == 2
        assert prometheus.value(f'park_gate_up{{site="{site}",gate="g1"}}') == 1
        assert prometheus.value('sum(park_ingest_events_total{outcome="stored"})') >= 2
        assert poll(lambda: prometheus.value(f'park_gate_decision_seconds_count{{site="{site}",gate="g1"}}') == 2,
                    20, what="the gate's decisions in Prometheus")
        assert prometheus.value('park_gate_device_up{device="turnstile"}') == 1
        assert prometheus.value('park_gate_device_up{device="qr"}') == 1
        assert prometheus.value('park_gate_outbox_events{job="park-gates",gate="g1"}') is not None
        assert prometheus.value('min(up{job=~"park-central|park-gates"})') == 1
        groups = prometheus.api("rules")["groups"]
        assert {r["name"] for g in groups for r in g["rules"]} >= {"ParkGateDown", "ParkZoneNearCapacity"}
        assert all(r["health"] == "ok" for g in groups for r in g["rules"])
        labels = prometheus.api("labels")
        assert not {"ref", "credential", "code", "holder", "name"} & set(labels)
        for code in park.codes:
            assert prometheus.api("query", query=f'{{__name__=~"park_.*",code="{code}"}}')["result"] == []
    finally:
        if prometheus is not None:
            prometheus.close()
        stop_process(web)
        gate.close()
        park.close()
