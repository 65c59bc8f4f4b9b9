"""`make bench` cannot rot: the quick benchmark runs every section and writes every figure.

No timing is asserted here (the machine is shared and noisy); `make bench` compares each figure with
its bar and its limit measured in the same run.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import have_mosquitto, need, pg_admin_url, pg_reachable

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = (
    "gate_qr_decide_p50_us", "gate_qr_decide_p99_us", "gate_qr_verify_bare_p99_us", "gate_id_decide_p99_us",
    "gate_rfid_decide_p99_us", "face_encode_ms", "face_encode_bare_ms", "face_identify_100k_p99_ms",
    "ingest_events_per_s", "ingest_raw_events_per_s", "ingest_lost_events", "count_lag_p99_ms", "snapshot_1m_s",
    "revocation_reach_p99_ms", "gate_rss_mb", "ingest_rss_mb",
    "metrics_gate_overhead_pct", "metrics_ingest_single_overhead_pct", "metrics_ingest_multiprocess_overhead_pct",
    "booking_rush_oversold", "booking_rush_lost", "booking_rush_per_s", "booking_rush_p99_ms", "booking_bare_per_s",
    "headoffice_events_per_s", "headoffice_lost_events", "headoffice_count_lag_p99_ms",
    "headoffice_one_park_events_per_s",
    "replication_capture_ratio", "replication_apply_changes_per_s", "replication_lost_passages",
)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.mosquitto
@pytest.mark.timeout(600)
def test_quick_benchmark_writes_every_figure(tmp_path):
    need(have_mosquitto(), "the mosquitto binary is not installed")
    need(pg_reachable(pg_admin_url()), f"PostgreSQL not reachable at {pg_admin_url()}")
    out = tmp_path / "results.json"
    run = subprocess.run([sys.executable, "-m", "tests.bench", "--quick", "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=580)
    assert out.exists(), f"no results written:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    results = json.loads(out.read_text())
    assert results["errors"] == [], results["errors"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert results["quick"] is True
    assert isinstance(results["machine"], str) and results["machine"]
    missing = [k for k in REQUIRED if k not in results]
    assert not missing, f"figures missing: {missing}"
    not_numbers = [k for k in REQUIRED if not isinstance(results[k], int | float) or isinstance(results[k], bool)
                   or math.isnan(results[k])]
    assert not not_numbers, f"figures that are not numbers: {not_numbers}"
    # Correctness, not speed: the booking rush never sells a place twice nor loses a visitor.
    assert (results["booking_rush_oversold"], results["booking_rush_lost"]) == (0, 0)
    assert results["replication_lost_passages"] == 0  # head office holds every passage of the park
