"""The errors a driver raises: few, named, each carrying the port and what went wrong.

::

    DriverError                 any driver failure; .port names the device ("/dev/ttyUSB0", "tcp:host:502")
    ├── DeviceTimeout           the device did not answer in time (after the driver's retries)
    ├── FrameError              bytes arrived but were not a valid frame (checksum, CRC, garbage, bad length)
    ├── DeviceDisconnected      the port vanished or could not be opened (unplugged cable, USB reset)
    └── DeviceFault             the device answered with an error status (Modbus exception, module error code)

A driver never lets anything else escape from its public calls: transport exceptions (OSError,
serial.SerialException, pymodbus exceptions, PC/SC errors) are wrapped into one of these.
"""

from __future__ import annotations


class DriverError(Exception):
    """A device could not do what was asked; `port` says which device, the message says why."""

    def __init__(self, port: str, message: str) -> None:
        super().__init__(f"{port}: {message}")
        self.port = port
        self.message = message


class DeviceTimeout(DriverError):
    """The device did not answer within the driver's timeout and retries."""


class FrameError(DriverError):
    """Bytes arrived that do not form a valid frame (checksum, CRC, length, garbage)."""


class DeviceDisconnected(DriverError):
    """The port is gone or cannot be opened."""


class DeviceFault(DriverError):
    """The device answered, with an error status."""

    def __init__(self, port: str, message: str, code: int | None = None) -> None:
        super().__init__(port, message)
        self.code = code


__all__ = ["DeviceDisconnected", "DeviceFault", "DeviceTimeout", "DriverError", "FrameError"]
