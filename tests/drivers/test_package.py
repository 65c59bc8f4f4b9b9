"""The drivers package: a small, cheap public surface that knows nothing of tickets."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import drivers
from drivers.errors import DeviceDisconnected, DeviceFault, DeviceTimeout, DriverError, FrameError

DRIVERS = Path(drivers.__file__).parent


def test_every_error_is_a_driver_error_carrying_the_port():
    for cls in (DeviceTimeout, FrameError, DeviceDisconnected, DeviceFault):
        err = cls("/dev/ttyUSB0", "what went wrong")
        assert isinstance(err, DriverError)
        assert err.port == "/dev/ttyUSB0" and "what went wrong" in str(err) and "/dev/ttyUSB0" in str(err)


def test_public_names_are_exported():
    for name in drivers.__all__:
        assert getattr(drivers, name) is not None


def test_importing_drivers_loads_no_hardware_library():
    code = (
        "import sys, drivers; "
        "print(','.join(m for m in ('pymodbus','serial','smartcard','numpy','PIL','cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_drivers_know_nothing_of_tickets():
    forbidden = {"protocol", "gate_agent", "central", "biometrics"}
    for path in DRIVERS.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path} imports {name}"


def test_the_shipped_controller_profiles_are_package_data_the_contract_names():
    from drivers.turnstile import PROFILE_DIR, ControllerProfile, known_profiles
    from protocol.controllers import DEFAULT_PROFILE, SHIPPED_PROFILES

    assert PROFILE_DIR.parent == DRIVERS  # inside the package: a wheel carries them
    assert tuple(known_profiles()) == SHIPPED_PROFILES and DEFAULT_PROFILE in SHIPPED_PROFILES
    for name in SHIPPED_PROFILES:
        assert ControllerProfile.load(name).model == name


def test_a_sites_own_profile_folder_is_searched_first_and_names_stay_names(tmp_path):
    import pytest

    from drivers.turnstile import ControllerProfile, ProfileError, known_profiles

    own = tmp_path / "controllers"
    own.mkdir()
    text = (DRIVERS / "controllers" / "tripod-coil.toml").read_text(encoding="utf-8")
    (own / "acme-tripod.toml").write_text(text.replace('model = "tripod-coil"', 'model = "acme-tripod"'))
    assert "acme-tripod" in known_profiles((own,))
    assert ControllerProfile.load("acme-tripod", (own,)).model == "acme-tripod"
    with pytest.raises(ProfileError, match="known models: acme-tripod, swing-regcmd, tripod-coil"):
        ControllerProfile.load("acme-tripodd", (own,))
    with pytest.raises(ProfileError):
        ControllerProfile.load("../controllers/acme-tripod", ())  # a name is never a path into another folder
