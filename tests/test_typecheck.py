"""The type checker stays clean: `make typecheck` (mypy over `files` in pyproject.toml: strict over drivers/,
protocol/ and biometrics/, the default checks over gate_agent/, central/ and demo/).

It runs mypy as `make typecheck` does, from the repository root with the project's configuration, so
a change that breaks a typed boundary fails the suite rather than waiting for someone to run mypy.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from tests.support.services import need

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_finds_no_type_errors(tmp_path):
    need(importlib.util.find_spec("mypy") is not None, "mypy is not installed (it is in the dev extra)")
    # A cache of its own: a clean run each time, and nothing written into the checkout.
    run = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")],
                         cwd=ROOT, capture_output=True, text=True, timeout=280)
    report = run.stdout + run.stderr
    assert run.returncode == 0, f"mypy found type errors:\n{report[-6000:]}"
    assert run.stdout.startswith("Success: no issues found"), report[-6000:]
