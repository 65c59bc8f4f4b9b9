"""Device drivers: bytes to and from the hardware at a gate, and a simulator for each.

One module per device kind (turnstile controller over Modbus, QR scanner, national ID card reader,
RFID reader over PC/SC or serial, fingerprint module, camera). A driver yields plain facts (a code, an
ID number, a card UID, a sensor change) and raises its own small family of errors carrying the port
(`drivers.errors`). It knows nothing of tickets: it must not import `protocol`, `gate_agent`,
`central` or `biometrics`, and could be published on its own.

Importing this package is cheap: pymodbus, pyserial, pyscard, numpy, Pillow and OpenCV are imported
only when a driver opens its device. Simulators live in `drivers.sim.*` (not re-exported here).
Pure codecs: `drivers.idcard_frames`, `drivers.fingerprint_packets`.
"""

from drivers.camera import ImageFileCamera, OpenCvCamera
from drivers.errors import DeviceDisconnected, DeviceFault, DeviceTimeout, DriverError, FrameError
from drivers.fingerprint import FingerprintModule, SearchHit
from drivers.idcard import IdCard, IdCardReader, valid_id_number
from drivers.qr_scanner import QrScanner
from drivers.rfid import PcscRfidReader, SerialRfidReader
from drivers.turnstile import ControllerProfile, Counters, ProfileError, Turnstile, known_profiles

__all__ = [
    "ControllerProfile",
    "Counters",
    "DeviceDisconnected",
    "DeviceFault",
    "DeviceTimeout",
    "DriverError",
    "FingerprintModule",
    "FrameError",
    "IdCard",
    "IdCardReader",
    "ImageFileCamera",
    "OpenCvCamera",
    "PcscRfidReader",
    "ProfileError",
    "QrScanner",
    "SearchHit",
    "SerialRfidReader",
    "Turnstile",
    "known_profiles",
    "valid_id_number",
]
