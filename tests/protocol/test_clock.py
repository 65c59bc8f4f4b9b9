"""The park's clock (`protocol.clock`): the wall clock unless PARK_CLOCK names a simulated one, which every
process given the same text reads alike, living only the day's hours when asked to."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from datetime import time as time_of_day
from zoneinfo import ZoneInfo

import pytest

from protocol import clock

SHANGHAI = ZoneInfo("Asia/Shanghai")
MORNING = datetime(2026, 12, 2, 7, 0, tzinfo=SHANGHAI)


@pytest.fixture(autouse=True)
def _own_clock(monkeypatch):
    monkeypatch.delenv(clock.ENV, raising=False)
    clock.install(None)
    yield
    clock.install(None)


def test_without_park_clock_the_park_lives_on_the_wall_clock():
    before = datetime.now(UTC)
    now = clock.park_now()
    assert before <= now <= datetime.now(UTC) and now.tzinfo is not None
    assert isinstance(clock.park_clock(), clock.WallClock)


def test_a_simulated_clock_runs_speed_times_as_fast_from_its_start():
    sim = clock.SimulatedClock(MORNING, at=1000.0, speed=900)
    assert sim.at_real(1000.0) == MORNING
    assert sim.at_real(1004.0) == MORNING + timedelta(hours=1)  # 15 simulated minutes a second


def test_a_simulated_day_with_hours_jumps_from_closing_to_the_next_morning():
    sim = clock.SimulatedClock(MORNING, at=0.0, speed=900, hours=(time_of_day(7), time_of_day(19)))
    assert sim.at_real(47.9).astimezone(SHANGHAI) == datetime(2026, 12, 2, 18, 58, 30, tzinfo=SHANGHAI)
    assert sim.at_real(48.0).astimezone(SHANGHAI) == datetime(2026, 12, 3, 7, 0, tzinfo=SHANGHAI)
    assert sim.at_real(48.0 * 10 + 4).astimezone(SHANGHAI) == datetime(2026, 12, 12, 8, 0, tzinfo=SHANGHAI)
    times = [sim.at_real(t / 10) for t in range(2000)]
    assert times == sorted(times), "the simulated time never goes back"


def test_every_process_given_the_same_park_clock_reads_the_same_time():
    sim = clock.SimulatedClock(MORNING, at=1_700_000_000.0, speed=900, hours=(time_of_day(7), time_of_day(19)))
    assert clock.parse(sim.spec()) == sim
    code = ("from protocol.clock import park_clock; "
            "print(park_clock().at_real(1_700_000_123.25).isoformat())")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, clock.ENV: sim.spec()},
                         capture_output=True, text=True, check=True).stdout.strip()
    assert datetime.fromisoformat(out) == sim.at_real(1_700_000_123.25)


def test_park_clock_from_the_environment_and_installed_in_the_process(monkeypatch):
    monkeypatch.setenv(clock.ENV, "fixed 2030-05-01T09:30:00+08:00")
    assert clock.park_now() == datetime(2030, 5, 1, 1, 30, tzinfo=UTC)
    clock.install(clock.FixedClock(datetime(2031, 1, 1, tzinfo=UTC)))
    assert clock.park_now() == datetime(2031, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("text, says", [
    ("tomorrow", '"real", "fixed TIME" or "simulated'),
    ("simulated at=1 speed=2", "needs start="),
    ("simulated start=2026-12-02T08:00:00 at=1 speed=2", "UTC offset"),
    ("simulated start=2026-12-02T08:00:00+08:00 at=1 speed=0", "speed must be above 0"),
    ("simulated start=2026-12-02T08:00:00+08:00 at=now speed=2", "at= and speed= are numbers"),
    ("simulated start=2026-12-02T06:00:00+08:00 at=1 speed=2 hours=07:00-19:00", "start within its hours"),
    ("simulated start=2026-12-02T08:00:00+08:00 at=1 speed=2 hours=7am-7pm", "HH:MM-HH:MM"),
    ("simulated start=2026-12-02T08:00:00+08:00 at=1 speed=2 hours=19:00-07:00", "end after they begin"),
    ("simulated start=2026-12-02T08:00:00+08:00 at=1 speed=2 pace=3", "unexpected 'pace=3'"),
])
def test_a_park_clock_that_cannot_be_read_says_what_is_wrong(text, says):
    with pytest.raises(clock.ClockError) as caught:
        clock.parse(text)
    assert says in str(caught.value)


def test_the_central_refuses_to_start_on_a_park_clock_it_cannot_read(tmp_path):
    result = subprocess.run([sys.executable, "-m", "central.cli", "--config", str(tmp_path / "none.toml"), "db",
                             "current"], env={**os.environ, clock.ENV: "simulated soon"},
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "PARK_CLOCK" in result.stderr and "Traceback" not in result.stderr
