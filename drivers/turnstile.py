"""Turnstile controller over Modbus (RTU on a serial line, or TCP), driven by a controller profile.

The register and coil layout of a controller model lives in a TOML profile
(`drivers/controllers/<model>.toml`, shipped inside the package, like an EdgeX device profile; a site
adds its own models as files in a folder of its own, `profile_dirs`); where the controller is (port or
host, unit id) is given to `Turnstile`. A new controller model needs a file, not code.

All calls are synchronous and thread-safe (one lock per controller). Transport failures come out as
`drivers.errors` exceptions carrying the port: `DeviceTimeout` (no answer after the retries),
`FrameError` (bytes came back but no valid frame: CRC error, garbage), `DeviceDisconnected` (port or
socket cannot be opened), `DeviceFault` (the controller answered with a Modbus exception). After any
of them the next call tries again from scratch (reopening the port or socket if needed), so a
controller that stops answering and comes back never wedges the gate.
"""

from __future__ import annotations

import logging
import threading
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, NoReturn, TypedDict, TypeVar, overload

from drivers.errors import DeviceDisconnected, DeviceFault, DeviceTimeout, DriverError, FrameError

if TYPE_CHECKING:  # pymodbus is imported on first use: `import drivers` stays light
    from pymodbus.client import ModbusBaseSyncClient
    from pymodbus.pdu import ModbusPDU

log = logging.getLogger(__name__)

# The profiles shipped with the package (package data: a wheel install carries them).
PROFILE_DIR = Path(__file__).resolve().parent / "controllers"
Direction = Literal["in", "out"]
Mode = Literal["normal", "free", "locked"]
ModeCommand = Mode | Literal["emergency"]  # emergency drives the controller to free passage
MODES: tuple[Mode, ...] = ("normal", "free", "locked")
BitTable = Literal["coil", "discrete"]
RegisterTable = Literal["holding", "input"]
Table = BitTable | RegisterTable
BIT_TABLES: tuple[BitTable, ...] = ("coil", "discrete")
REGISTER_TABLES: tuple[RegisterTable, ...] = ("holding", "input")
OpenType = Literal["coil", "register"]
WordOrder = Literal["big", "little"]

_Choice = TypeVar("_Choice", bound=str)
_REQUIRED = object()  # a profile key with no default


class _ClientOptions(TypedDict):
    """What both pymodbus clients (TCP and serial) are given."""

    timeout: float
    retries: int
    trace_packet: Callable[[bool, bytes], bytes]
    reconnect_delay: float


class ProfileError(ValueError):
    """A controller profile is missing a key or has a wrong value; the message names file and key."""


def _dirs(profile_dirs: tuple[str | Path, ...]) -> list[Path]:
    return [Path(d) for d in profile_dirs] + [PROFILE_DIR]


def _find_profile(name: str, profile_dirs: tuple[str | Path, ...]) -> Path | None:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None  # a model name, never a path into another folder
    for folder in _dirs(profile_dirs):
        candidate = folder / f"{name}.toml"
        if candidate.is_file():
            return candidate
    return None


def known_profiles(profile_dirs: tuple[str | Path, ...] = ()) -> list[str]:
    """The model names that `ControllerProfile.load` finds: a site's folders and the shipped ones."""
    names: set[str] = set()
    for folder in _dirs(profile_dirs):
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.toml"))
    return sorted(names)


@dataclass(frozen=True)
class PointSet:
    """Named bits: one coil/discrete input per name, or bit n of one register (a bitfield)."""

    table: Table
    points: Mapping[str, int]
    address: int | None = None  # the register, for a bitfield in "holding" or "input"

    @property
    def is_bitfield(self) -> bool:
        return self.table in REGISTER_TABLES

    def decode(self, values: Sequence[int], base: int) -> frozenset[str]:
        """Names whose bit is set, from values read starting at address `base`."""
        if self.is_bitfield:
            word = int(values[0])
            return frozenset(n for n, bit in self.points.items() if word >> bit & 1)
        return frozenset(n for n, addr in self.points.items() if values[addr - base])

    def span(self) -> tuple[int, int]:
        """(first address, count) to read in one request."""
        if self.is_bitfield:
            return int(self.address or 0), 1
        lo, hi = min(self.points.values()), max(self.points.values())
        return lo, hi - lo + 1


@dataclass(frozen=True)
class ControllerProfile:
    """The register and coil layout of one turnstile controller model."""

    model: str
    description: str
    source: str
    open_type: OpenType
    open_in: int  # coil address ("coil") or command value ("register")
    open_out: int
    open_address: int | None  # command register for "register"
    mode_table: Literal["holding"]
    mode_address: int
    mode_values: Mapping[Mode, int]
    counter_table: RegisterTable
    entries_address: int
    exits_address: int
    counter_words: int = 1
    word_order: WordOrder = "big"
    alarms: PointSet = field(default_factory=lambda: PointSet("discrete", MappingProxyType({})))
    sensors: PointSet | None = None

    @classmethod
    def load(cls, name_or_path: str | Path, profile_dirs: tuple[str | Path, ...] = ()) -> ControllerProfile:
        """Load a profile by model name or by file path. A name is looked up in `profile_dirs` (a
        site's own models, first) and then among the shipped ones (`drivers/controllers/`)."""
        given = Path(name_or_path)
        path = given if given.suffix == ".toml" or given.exists() else _find_profile(str(name_or_path), profile_dirs)
        if path is None or not path.is_file():
            known = ", ".join(known_profiles(profile_dirs)) or "none"
            raise ProfileError(f"controller profile {name_or_path!r} not found (known models: {known})")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ProfileError(f"{path}: not valid TOML: {exc}") from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, object], source: str = "<dict>") -> ControllerProfile:
        """Validate a parsed profile; every error names the file and the key."""

        def lookup(section: str, key: str, default: object) -> object:
            sect = data.get(section)
            if not isinstance(sect, Mapping):
                if default is not _REQUIRED:
                    return default
                raise ProfileError(f"{source}: missing section [{section}]")
            if key not in sect:
                if default is not _REQUIRED:
                    return default
                raise ProfileError(f"{source}: missing key {section}.{key}")
            return sect[key]

        def integer(section: str, key: str, default: int | None = None) -> int:
            value = lookup(section, key, _REQUIRED if default is None else default)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF:
                raise ProfileError(f"{source}: {section}.{key} must be an integer 0..65535, not {value!r}")
            return value

        def text(section: str, key: str, default: str | None = None) -> str:
            value = lookup(section, key, _REQUIRED if default is None else default)
            if not isinstance(value, str):
                raise ProfileError(f"{source}: {section}.{key} must be a str, not {value!r}")
            return value

        def table(section: str, key: str) -> Mapping[str, object]:
            value = lookup(section, key, _REQUIRED)
            if not isinstance(value, dict):
                raise ProfileError(f"{source}: {section}.{key} must be a dict, not {value!r}")
            return value

        def choice(section: str, key: str, allowed: tuple[_Choice, ...], default: _Choice | None = None) -> _Choice:
            value = text(section, key, default)
            for option in allowed:
                if value == option:
                    return option
            raise ProfileError(f"{source}: {section}.{key} must be one of {allowed}, not {value!r}")

        def points(section: str) -> PointSet | None:
            if section not in data:
                return None
            kind = choice(section, "table", BIT_TABLES + REGISTER_TABLES)
            limit = 15 if kind in REGISTER_TABLES else 0xFFFF
            named: dict[str, int] = {}
            for name, value in table(section, "points").items():
                if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
                    raise ProfileError(f"{source}: {section}.points.{name} must be an integer 0..{limit}")
                named[name] = value
            if kind in BIT_TABLES and named and max(named.values()) - min(named.values()) > 1000:
                raise ProfileError(f"{source}: {section}.points spread over more than 1000 addresses")
            address = integer(section, "address") if kind in REGISTER_TABLES else None
            return PointSet(kind, MappingProxyType(named), address)

        open_type: OpenType = choice("open", "type", ("coil", "register"))
        raw_modes = table("mode", "values")
        mode_values: dict[Mode, int] = {}
        for mode in MODES:
            v = raw_modes.get(mode)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 0xFFFF:
                raise ProfileError(f"{source}: mode.values.{mode} must be an integer 0..65535, not {v!r}")
            mode_values[mode] = v
        if len(set(mode_values.values())) != len(MODES):
            raise ProfileError(f"{source}: mode.values must give each mode its own value")
        words = integer("counters", "words", 1)
        if words not in (1, 2):
            raise ProfileError(f"{source}: counters.words must be 1 or 2, not {words!r}")
        alarms = points("alarms") or PointSet("discrete", MappingProxyType({}))
        return cls(
            model=text("controller", "model"),
            description=text("controller", "description", ""),
            source=source,
            open_type=open_type,
            open_in=integer("open", "in"),
            open_out=integer("open", "out"),
            open_address=integer("open", "address") if open_type == "register" else None,
            mode_table=choice("mode", "table", ("holding",)),
            mode_address=integer("mode", "address"),
            mode_values=MappingProxyType(mode_values),
            counter_table=choice("counters", "table", REGISTER_TABLES),
            entries_address=integer("counters", "entries"),
            exits_address=integer("counters", "exits"),
            counter_words=words,
            word_order=choice("counters", "word_order", ("big", "little"), "big"),
            alarms=alarms,
            sensors=points("sensors"),
        )

    def counter_value(self, regs: list[int]) -> int:
        """One counter from its registers."""
        if self.counter_words == 1:
            return regs[0]
        hi, lo = (regs[0], regs[1]) if self.word_order == "big" else (regs[1], regs[0])
        return hi << 16 | lo

    def counter_registers(self, value: int) -> list[int]:
        """The registers holding `value` (used by the simulator)."""
        if self.counter_words == 1:
            return [value & 0xFFFF]
        hi, lo = value >> 16 & 0xFFFF, value & 0xFFFF
        return [hi, lo] if self.word_order == "big" else [lo, hi]

    @property
    def counter_modulus(self) -> int:
        return 1 << (16 * self.counter_words)


@dataclass(frozen=True)
class Counters:
    """Passage counters as the controller reports them (they wrap at 2**16 or 2**32)."""

    entries: int
    exits: int

    def get(self, direction: Direction) -> int:
        return self.entries if direction == "in" else self.exits


class Turnstile:
    """One turnstile controller: open once per direction, set the mode, read counters, alarms, sensors."""

    def __init__(
        self,
        profile: ControllerProfile | str | Path,
        *,
        tcp: tuple[str, int] | None = None,
        serial: str | None = None,
        baudrate: int = 9600,
        parity: str = "N",
        unit_id: int = 1,
        timeout: float = 0.3,
        retries: int = 2,
        poll_interval_s: float = 0.05,
        profile_dirs: tuple[str | Path, ...] = (),
    ) -> None:
        if (tcp is None) == (serial is None):
            raise ValueError("give exactly one of tcp=(host, port) or serial='/dev/...'")
        self.profile = (profile if isinstance(profile, ControllerProfile)
                        else ControllerProfile.load(profile, profile_dirs))
        self.tcp = tcp
        self.serial = serial
        self.baudrate = baudrate
        self.parity = parity
        self.unit_id = unit_id
        self.timeout = timeout
        self.retries = retries
        self.poll_interval_s = poll_interval_s
        self.port = f"tcp:{tcp[0]}:{tcp[1]}" if tcp else str(serial)
        self._client: ModbusBaseSyncClient | None = None
        self._lock = threading.RLock()
        self._rx_bytes = 0
        self._healthy = False
        self.last_error: DriverError | None = None

    # -- connection ----------------------------------------------------------------------------

    def _make_client(self) -> ModbusBaseSyncClient:
        from pymodbus.client import ModbusSerialClient, ModbusTcpClient
        from pymodbus.framer import FramerType

        common = _ClientOptions(timeout=self.timeout, retries=self.retries, trace_packet=self._trace_packet,
                                reconnect_delay=0)
        if self.tcp:
            return ModbusTcpClient(self.tcp[0], port=self.tcp[1], **common)
        assert self.serial is not None  # __init__ takes exactly one of tcp and serial
        return ModbusSerialClient(
            self.serial, framer=FramerType.RTU, baudrate=self.baudrate, parity=self.parity, **common,
        )

    def _connect(self) -> ModbusBaseSyncClient:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            client = self._client
            why: Exception | str
            try:
                ok = client.connect()
            except Exception as exc:  # pyserial raises from open(); pymodbus usually returns False
                ok, why = False, exc
            else:
                why = "connection refused or port missing"
            if not ok:
                self._fail(DeviceDisconnected(self.port, f"cannot open: {why}"))
            return client

    def connect(self) -> None:
        """Open the port or socket; raises DeviceDisconnected if it cannot be opened."""
        self._connect()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                try:
                    self._client.close()
                except Exception:  # closing a dead port must not fail the caller
                    log.debug("%s: error on close", self.port, exc_info=True)
                self._client = None
            self._healthy = False

    def __enter__(self) -> Turnstile:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def healthy(self) -> bool:
        """True while the last exchange with the controller succeeded."""
        return self._healthy

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._rx_bytes += len(data)
        return data

    def _fail(self, err: DriverError) -> NoReturn:
        self._healthy = False
        self.last_error = err
        raise err

    def _call(self, what: str, request: Callable[[ModbusBaseSyncClient], ModbusPDU]) -> ModbusPDU:
        """One request to the controller (`request(client)`), its failures mapped to `drivers.errors`."""
        from pymodbus.exceptions import ConnectionException, ModbusException

        with self._lock:
            client = self._client if self._client is not None else self._connect()
            self._rx_bytes = 0
            try:
                response = request(client)
            except ConnectionException as exc:
                self.close()
                self._fail(DeviceDisconnected(self.port, f"{what}: connection lost ({exc})"))
            except ModbusException:
                if self._rx_bytes:
                    self._fail(FrameError(self.port, f"{what}: no valid response frame (bad CRC or garbage, "
                                                     f"{self._rx_bytes} bytes dropped)"))
                self._fail(DeviceTimeout(self.port, f"{what}: no answer from unit {self.unit_id} "
                                                    f"after {self.retries + 1} tries of {self.timeout}s"))
            except (OSError, ValueError) as exc:  # pyserial errors are OSError subclasses
                self.close()
                self._fail(DeviceDisconnected(self.port, f"{what}: {exc}"))
            if response.isError():
                code = getattr(response, "exception_code", None)
                msg = f"{what}: controller answered Modbus exception {code}"
                self._fail(DeviceFault(self.port, msg, code))
            self._healthy = True
            self.last_error = None
            return response

    @overload
    def _read(self, table: BitTable, address: int, count: int, what: str) -> list[bool]: ...
    @overload
    def _read(self, table: RegisterTable, address: int, count: int, what: str) -> list[int]: ...
    @overload
    def _read(self, table: Table, address: int, count: int, what: str) -> list[bool] | list[int]: ...
    def _read(self, table: Table, address: int, count: int, what: str) -> list[bool] | list[int]:
        from pymodbus.client import ModbusBaseSyncClient as Client

        method = {
            "coil": Client.read_coils,
            "discrete": Client.read_discrete_inputs,
            "holding": Client.read_holding_registers,
            "input": Client.read_input_registers,
        }[table]
        response = self._call(what, lambda client: method(client, address, count=count, device_id=self.unit_id))
        values: Sequence[bool] | Sequence[int] = response.bits if table in BIT_TABLES else response.registers
        if len(values) < count:
            self._fail(FrameError(self.port, f"{what}: short answer ({len(values)} of {count} values)"))
        return list(values[:count])

    # -- commands ------------------------------------------------------------------------------

    def open_once(self, direction: Direction) -> None:
        """Release the arm for one passage in `direction` ("in" or "out")."""
        if direction not in ("in", "out"):
            raise ValueError(f"direction must be 'in' or 'out', not {direction!r}")
        p = self.profile
        value = p.open_in if direction == "in" else p.open_out
        if p.open_type == "coil":
            self._call(f"open {direction}", lambda client: client.write_coil(value, True, device_id=self.unit_id))
            return
        address = p.open_address
        if address is None:
            raise ProfileError(f"{p.source}: open.type 'register' needs open.address")
        self._call(f"open {direction}", lambda client: client.write_register(address, value, device_id=self.unit_id))

    def set_mode(self, mode: ModeCommand) -> None:
        """Switch the controller to "normal", "free" (also the emergency mode) or "locked"."""
        if mode == "emergency":
            mode = "free"
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        p = self.profile
        value = p.mode_values[mode]
        self._call(f"set mode {mode}", lambda client: client.write_register(p.mode_address, value,
                                                                            device_id=self.unit_id))

    def read_mode(self) -> str:
        """The mode the controller reports ("unknown:<n>" for a value the profile does not name)."""
        p = self.profile
        (value,) = self._read(p.mode_table, p.mode_address, 1, "read mode")
        for name, v in p.mode_values.items():
            if v == value:
                return name
        return f"unknown:{value}"

    def read_counters(self) -> Counters:
        """The passage counters (entries, exits)."""
        p = self.profile
        w = p.counter_words
        lo = min(p.entries_address, p.exits_address)
        hi = max(p.entries_address, p.exits_address) + w
        if hi - lo <= 16:  # one request when the counters sit together
            regs = self._read(p.counter_table, lo, hi - lo, "read counters")
            e = regs[p.entries_address - lo : p.entries_address - lo + w]
            x = regs[p.exits_address - lo : p.exits_address - lo + w]
        else:
            e = self._read(p.counter_table, p.entries_address, w, "read entries")
            x = self._read(p.counter_table, p.exits_address, w, "read exits")
        return Counters(p.counter_value(e), p.counter_value(x))

    def _read_points(self, points: PointSet | None, what: str) -> frozenset[str]:
        if points is None or not points.points:
            return frozenset()
        base, count = points.span()
        return points.decode(self._read(points.table, base, count, what), base)

    def read_alarms(self) -> frozenset[str]:
        """Names of the alarms the controller has raised (as named in the profile)."""
        return self._read_points(self.profile.alarms, "read alarms")

    def read_sensors(self) -> frozenset[str]:
        """Names of the sensor bits that are set (e.g. "arm_unlocked", "passage_in")."""
        return self._read_points(self.profile.sensors, "read sensors")

    def wait_passage(self, direction: Direction, timeout_s: float, since: Counters) -> bool:
        """True once the `direction` counter moves past `since`; False at timeout (the visitor walked away).

        Transient errors while polling are retried until the deadline; if the controller never
        answered during the whole wait, the last error is raised.
        """
        deadline = time.monotonic() + timeout_s
        before = since.get(direction)
        answered = False
        last: DriverError | None = None
        while True:
            try:
                now = self.read_counters().get(direction)
                answered = True
                if now != before:  # != rather than >: counters wrap
                    return True
            except DriverError as exc:
                last = exc
                log.warning("%s: polling passage counter: %s", self.port, exc.message)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if not answered and last is not None:
                    raise last
                return False
            time.sleep(min(self.poll_interval_s, remaining))  # Modbus is polled: the master must ask


__all__ = ["ControllerProfile", "Counters", "PointSet", "ProfileError", "Turnstile"]
