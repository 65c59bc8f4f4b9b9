"""Installs as a park's technician makes them: the wheel, fresh virtualenvs, processes from those
installs (never this checkout: they run outside it, with no PYTHONPATH), a small HTTP client."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of an installed program: nothing points back at this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PARK_CENTRAL_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    env.update(extra)
    return env


def build_wheel(out: Path) -> Path:
    """`pip wheel` of this checkout, as a release would be built (no editable install)."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(out)],
                   check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = out.glob("scenic_gates-*.whl")
    return wheel


def make_venv(path: Path, wheel: Path, extras: str) -> Path:
    """A fresh virtualenv with `wheel[extras]` installed from the package index (or pip's cache)."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    done = subprocess.run([str(path / "bin" / "pip"), "install", "-q", f"{wheel}[{extras}]"], capture_output=True,
                          text=True, timeout=900, env=clean_env(), cwd=path)
    assert done.returncode == 0, done.stderr[-3000:]
    return path


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    done = subprocess.run(args, cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{shlex.join(map(str, args))} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def exec_start(unit: Path, instance: str = "") -> list[str]:
    """The command of a unit's ExecStart line (with %i filled in): what systemd would run."""
    for line in unit.read_text(encoding="utf-8").splitlines():
        if line.startswith("ExecStart="):
            return shlex.split(line.removeprefix("ExecStart=").replace("%i", instance))
    raise AssertionError(f"{unit} has no ExecStart")


def http(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict | str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            status, raw, kind = response.status, response.read(), response.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers.get_content_type()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""
    return status, json.loads(raw) if kind == "application/json" else raw.decode("utf-8", "replace")


def healthy(base: str) -> bool:
    status, _ = http("GET", f"{base}/healthz")
    return status == 200


def sell_ticket(base: str, token: str) -> str:
    """A day ticket sold through the API the way a channel sells one; returns its code."""
    status, types = http("GET", f"{base}/api/v1/ticket-types", token=token)
    assert status == 200, types
    if not types["ticket_types"]:
        status, made = http("POST", f"{base}/api/v1/ticket-types", {"name": "Day ticket", "entries": 1}, token)
        assert status == 201, made
        type_id = made["id"]
    else:
        type_id = types["ticket_types"][0]["id"]
    status, ticket = http("POST", f"{base}/api/v1/tickets", {"ticket_type": type_id}, token)
    assert status == 201, ticket
    return ticket["code"]


def token_from(output: str) -> str:
    """The token `park-central token create` printed ("token NAME (ROLE): SECRET")."""
    return output.strip().rsplit(": ", 1)[1]
