"""Fixtures for the driver tests: simulators on real transports (TCP, pseudo-terminals, pcscd+vpcd)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.services import need

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")


def hex_fixture(model: str, name: str) -> bytes:
    """A canned frame from tests/fixtures/<model>/<name>.hex (hex text; '#' starts a comment)."""
    text = (FIXTURES / model / f"{name}.hex").read_text()
    return bytes.fromhex(" ".join(line.split("#")[0] for line in text.splitlines()))


@pytest.fixture(autouse=True)
def _quiet_pymodbus():
    # pymodbus logs every retried request at ERROR; the tests provoke those on purpose.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    yield


def _vpcd_reader_listed() -> bool:
    # Ask pcscd for its readers; never probe vpcd's TCP port, a connection there is a card insertion.
    try:
        from smartcard.System import readers

        return any(str(r).startswith("Virtual PCD") for r in readers())
    except Exception:
        return False


def _pcscd_running() -> bool:
    return subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def pcscd():
    """A running pcscd with the vpcd virtual reader; starts `pcscd -f` if none runs, and stops it after."""
    need(shutil.which("pcscd") is not None, "pcscd is not installed (apt-get install pcscd)")
    need(
        any(Path(d).exists() for d in ("/etc/reader.conf.d/vpcd", "/usr/lib/pcsc/drivers/serial/libifdvpcd.so")),
        "vpcd is not installed (apt-get install vsmartcard-vpcd)",
    )
    proc = None
    if not _pcscd_running():
        log = open(os.environ.get("PCSCD_LOG", "/tmp/pcscd-tests.log"), "ab")  # noqa: SIM115
        proc = subprocess.Popen(["pcscd", "-f"], stdout=log, stderr=log)
    # Whoever started it, the daemon gives no readiness signal: wait for its socket and the reader.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (PCSCD_SOCKET.exists() and _vpcd_reader_listed()):
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    ready = PCSCD_SOCKET.exists() and _vpcd_reader_listed()
    if not ready and proc is not None:
        proc.terminate()
        proc.wait(5)
    need(ready, "pcscd is not running with the vpcd reader (Virtual PCD 00 00)")
    yield
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
