"""A turnstile controller simulator: a pymodbus server laid out by the same profile as the driver.

It behaves like a turnstile: an open command unlocks the arm; after `pass_delay_s` the visitor
either passes (the counter for that direction goes up, the arm locks again) or walks away (the arm
locks again after `walk_away_s`, counters unchanged). Alarms can be raised and cleared, the
controller can be made `silent` (it stops answering) or made to send `corrupt_responses` frames
with a broken CRC (RTU).

Transport "tcp" listens on 127.0.0.1 (`.tcp_address`); transport "rtu" runs pymodbus' serial
server on one end of a `PtyLink` and gives the driver the other end (`.serial_path`).

The datastore is our own object behind pymodbus' context interface (`async_getValues` /
`async_setValues`), so the state is a turnstile, not a block of registers; it uses the
`ModbusServerContext` path that pymodbus 3.16 still supports (pinned in pyproject.toml).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, TypedDict, cast

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusBaseServer, ModbusSerialServer, ModbusTcpServer

from drivers.sim.serial_sim import PtyLink
from drivers.turnstile import BIT_TABLES, ControllerProfile, Direction, Mode, PointSet, Table

log = logging.getLogger(__name__)

WriteTable = Literal["coil", "holding"]
READ_TABLE: dict[int, Table] = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}
WRITE_TABLE: dict[int, WriteTable] = {5: "coil", 15: "coil", 6: "holding", 16: "holding", 23: "holding"}
ArmState = Literal["locked", "open_in", "open_out"]
Behaviour = Literal["pass", "walk_away"]


class _ServerOptions(TypedDict):
    """What both pymodbus servers (TCP and serial) are given."""

    trace_packet: Callable[[bool, bytes], bytes]
    trace_pdu: Callable[[bool, ModbusPDU], ModbusPDU]
    ignore_missing_devices: bool


class _TurnstileContext(ModbusServerContext):
    """pymodbus' view of the simulator's state."""

    def __init__(self, sim: TurnstileSimulator) -> None:  # no super().__init__: no register blocks
        self.sim = sim
        self.old_simulator = True
        self.simdevices = []
        self._devices = {}

    def device_ids(self) -> list[int]:
        return [self.sim.unit_id]

    def _check(self, device_id: int) -> None:
        if device_id != self.sim.unit_id:
            raise NoSuchIdException(f"device_id {device_id}")

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        self._check(device_id)
        table = READ_TABLE.get(func_code) or WRITE_TABLE.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        with self.sim._lock:
            snapshot = self.sim._table(table)
        if table in BIT_TABLES:
            return [bool(snapshot.get(a, False)) for a in range(address, address + count)]
        return [snapshot.get(a, 0) for a in range(address, address + count)]

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: Sequence[int] | Sequence[bool]
    ) -> ExcCodes | None:
        self._check(device_id)
        table = WRITE_TABLE.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        return self.sim._write(table, address, list(values))


class TurnstileSimulator:
    """A Modbus turnstile controller in a background thread, over TCP or RTU on a pty."""

    def __init__(
        self,
        profile: ControllerProfile | str | Path,
        *,
        transport: Literal["tcp", "rtu"] = "tcp",
        unit_id: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        baudrate: int = 9600,
    ) -> None:
        if transport not in ("tcp", "rtu"):
            raise ValueError("transport must be 'tcp' or 'rtu'")
        self.profile = profile if isinstance(profile, ControllerProfile) else ControllerProfile.load(profile)
        self.transport = transport
        self.unit_id = unit_id
        self.host, self.port, self.baudrate = host, port, baudrate
        # behaviour controls
        self.behaviour: Behaviour = "pass"
        self.pass_delay_s = 0.05
        self.walk_away_s = 0.2
        self.silent = False
        self.corrupt_responses = 0  # number of next responses to send with a broken CRC / checksum
        self.refuse_commands = False  # answer writes with a Modbus exception (device busy)
        # state
        self.mode: Mode = "normal"
        self.arm_state: ArmState = "locked"
        self.entries = 0
        self.exits = 0
        self.alarms: set[str] = set()
        self.requests = 0
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ModbusBaseServer | None = None
        self._thread: threading.Thread | None = None
        self._link: PtyLink | None = None
        self._pending: asyncio.TimerHandle | None = None
        self.tcp_address: tuple[str, int] | None = None
        self.serial_path: str | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> TurnstileSimulator:
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to start()
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        if self.transport == "rtu":
            self._link = PtyLink()
            self.serial_path = self._link.driver_path
        self._thread = threading.Thread(target=run, name=f"turnstile-sim-{self.profile.model}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise RuntimeError(f"turnstile simulator did not start: {errors[0]}") from errors[0]
        return self

    async def _serve(self) -> None:
        ctx = _TurnstileContext(self)
        common = _ServerOptions(
            trace_packet=self._trace_packet,
            # pymodbus types trace_pdu as returning a PDU, but its request handler drops a request on None.
            trace_pdu=self._trace_pdu,  # type: ignore[typeddict-item]
            ignore_missing_devices=True,
        )
        if self.transport == "tcp":
            tcp = ModbusTcpServer(ctx, address=(self.host, self.port), **common)
            self._server = tcp
            await tcp.serve_forever(background=True)
            # pymodbus keeps its listening asyncio.Server in `transport`, typed as a transport.
            listener = cast(asyncio.Server, tcp.transport)
            self.tcp_address = listener.sockets[0].getsockname()[:2]
        else:
            assert self._link is not None  # start() made it for "rtu"
            self._server = ModbusSerialServer(
                ctx, framer=FramerType.RTU, port=self._link.device_path, baudrate=self.baudrate, **common
            )
            await self._server.serve_forever(background=True)

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop and loop.is_running() and server is not None:  # the loop runs on once _serve() made the server
            fut = asyncio.run_coroutine_threadsafe(server.shutdown(), loop)
            try:
                fut.result(5)
            except Exception:
                log.debug("simulator shutdown", exc_info=True)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread:
            self._thread.join(5)
        if self._link:
            self._link.close()
            self._link = None

    def __enter__(self) -> TurnstileSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour controls --------------------------------------------------------------------

    def raise_alarm(self, name: str) -> None:
        if name not in self.profile.alarms.points:
            raise KeyError(f"profile {self.profile.model} has no alarm {name!r}")
        with self._lock:
            self.alarms.add(name)

    def clear_alarms(self) -> None:
        with self._lock:
            self.alarms.clear()

    def walk_through(self, direction: Direction) -> None:
        """A visitor passes (in free mode, or an open arm), counting the passage."""
        with self._lock:
            if direction == "in":
                self.entries = (self.entries + 1) % self.profile.counter_modulus
            else:
                self.exits = (self.exits + 1) % self.profile.counter_modulus
            if self.arm_state != "locked" and self.mode != "free":
                self.arm_state = "locked"

    @property
    def counters(self) -> tuple[int, int]:
        return self.entries, self.exits

    # -- protocol hooks ------------------------------------------------------------------------

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU | None:
        if not sending:
            self.requests += 1
            if self.silent:
                return None  # request swallowed: no answer, like a controller that hung
        return pdu

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if sending and self.corrupt_responses > 0:
            self.corrupt_responses -= 1
            return data[:-1] + bytes([data[-1] ^ 0xFF])  # last byte of an RTU frame is the CRC
        return data

    # -- register view -------------------------------------------------------------------------

    def _bits(self, points: PointSet | None, active: set[str], table: Table, out: dict[int, int]) -> None:
        if points is None or points.table != table:
            return
        if points.is_bitfield:
            address = points.address or 0  # as the driver's PointSet.span() reads it
            word = out.get(address, 0)
            for name, bit in points.points.items():
                if name in active:
                    word |= 1 << bit
            out[address] = word
        else:
            for name, addr in points.points.items():
                out[addr] = name in active

    def _sensor_bits(self) -> set[str]:
        active: set[str] = set()
        if self.arm_state != "locked" or self.mode == "free":
            active.add("arm_unlocked")
        if self.arm_state == "open_in":
            active.add("passage_in")
        if self.arm_state == "open_out":
            active.add("passage_out")
        return active

    def _table(self, table: Table) -> dict[int, int]:
        """The table's values by address (coils and discrete inputs as bools)."""
        p = self.profile
        out: dict[int, int] = {}
        if table == "coil" and p.open_type == "coil":
            out[p.open_in] = self.arm_state == "open_in"
            out[p.open_out] = self.arm_state == "open_out"
        if table == "holding" and p.open_type == "register" and p.open_address is not None:
            out[p.open_address] = 0  # command register reads back 0 once taken
        if table == p.mode_table:
            out[p.mode_address] = p.mode_values[self.mode]
        if table == p.counter_table:
            for addr, value in ((p.entries_address, self.entries), (p.exits_address, self.exits)):
                for i, reg in enumerate(p.counter_registers(value)):
                    out[addr + i] = reg
        self._bits(p.alarms, self.alarms, table, out)
        self._bits(p.sensors, self._sensor_bits(), table, out)
        return out

    def _write(self, table: WriteTable, address: int, values: Sequence[int]) -> ExcCodes | None:
        p = self.profile
        with self._lock:
            if self.refuse_commands:
                return ExcCodes.DEVICE_BUSY
            for offset, value in enumerate(values):
                addr = address + offset
                if table == "coil" and p.open_type == "coil" and addr in (p.open_in, p.open_out):
                    if value:
                        self._open("in" if addr == p.open_in else "out")
                elif table == "holding" and p.open_type == "register" and addr == p.open_address:
                    if value == p.open_in:
                        self._open("in")
                    elif value == p.open_out:
                        self._open("out")
                    elif value != 0:
                        return ExcCodes.ILLEGAL_VALUE
                elif table == "holding" and addr == p.mode_address:
                    names = [m for m, v in p.mode_values.items() if v == value]
                    if not names:
                        return ExcCodes.ILLEGAL_VALUE
                    self.mode = names[0]
                    if self.mode != "normal":
                        self._cancel_pending()
                        self.arm_state = "locked"
                else:
                    return ExcCodes.ILLEGAL_ADDRESS
        return None

    def _cancel_pending(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _open(self, direction: Direction) -> None:
        """An open command: runs on the server's loop thread, with the lock held."""
        if self.mode != "normal":
            return  # locked: the arm stays locked; free: it is already free
        self._cancel_pending()
        self.arm_state = "open_in" if direction == "in" else "open_out"
        loop = asyncio.get_running_loop()  # the server's
        if self.behaviour == "pass":
            self._pending = loop.call_later(self.pass_delay_s, self._visitor_passes, direction)
        else:
            self._pending = loop.call_later(self.walk_away_s, self._relock)

    def _visitor_passes(self, direction: Direction) -> None:
        with self._lock:
            self._pending = None
            self.walk_through(direction)
            self.arm_state = "locked"

    def _relock(self) -> None:
        with self._lock:
            self._pending = None
            self.arm_state = "locked"


__all__ = ["TurnstileSimulator"]
