"""One simulated Milur meter: registers that move, sessions, password lockout, fault switches.

The meter answers request *contents* (function code and data); framing, routing by address and
the serving forms live in :mod:`bridge.simulator.bus` and :mod:`bridge.simulator.serving`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.config.model import RegisterDef, RegisterFormat, Template
from bridge.simulator import encoding
from bridge.simulator.archives import ARCHIVE_FUNCS, MeterArchives, decode_clock
from bridge.simulator.physics import LoadModel

SINGLE_PHASE_MODELS = ("104", "105", "107")
THREE_PHASE_MODELS = ("305", "307")
MODELS = SINGLE_PHASE_MODELS + THREE_PHASE_MODELS
FACTORY_PASSWORD = b"\xff" * 6
CLOCK_REGISTER = 14
_TARIFF = re.compile(r"energy_active_import_t\d")
RELAY_REGISTER = 84

# function codes and error codes (protocol notes §4)
F_READ, F_WRITE, F_OPEN, F_CLOSE, F_NETADDR, F_IDENTIFY = 0x01, 0x02, 0x08, 0x09, 0x0F, 0xC3
E_ILLEGAL_FUNCTION, E_ILLEGAL_ADDRESS, E_ILLEGAL_VALUE = 0x01, 0x02, 0x03
E_SESSION_CLOSED, E_ACCESS_DENIED, E_BAD_PASSWORD = 0x08, 0x09, 0x0D


@dataclass
class Faults:
    """Fault switches of one meter; change them at any time, they act on the next request."""

    silent: bool = False  # never answer
    delay: float = 0.0  # seconds added before the answer (a late answer)
    bad_crc: bool = False  # answers carry a wrong CRC
    garbage: bool = False  # line noise (``garbage_bytes``) is sent before every answer
    garbage_bytes: bytes = b"\x00\x13\x5a\xa5\x0a\x0d"
    wrong_address: bool = False  # answers carry another address (the meter's address + 1)


@dataclass
class MeterCounters:
    """What the meter saw; tests assert on these."""

    requests: int = 0  # requests addressed to this meter (valid CRC), answered or not
    sessions_opened: int = 0
    wrong_passwords: int = 0
    ignored: int = 0  # requests ignored because of the 104 quirk
    errors_sent: int = 0
    clock_writes: int = 0  # FUNC 02 writes of register 14 accepted


def _default_template(model: str) -> Template:
    from bridge.config.templates import builtin_templates, template_for_model

    return builtin_templates()[template_for_model(model)]


class SimulatedMeter:
    """A Milur meter answering FUNC 01/02/06/08/09/0B/0C/0D/0F/10 like a real one (notes §3–§6).

    ``address_width`` is 1, 4 or None (auto: 1 byte up to 255). ``energy_scale`` overrides the
    template's energy scale (0.01 or 0.001 kWh, §6 [open]). ``clock_bcd`` selects the BCD form of
    register 14. ``wake_quirk`` (default: on for model 104) enables the §1 quirk, applied by the
    bus. ``clock`` is the monotonic time source; :meth:`advance` moves simulated time forward.
    ``search_delay``: seconds a FUNC 10 search takes (STATUS 1/2 meanwhile); ``clock_writable``:
    FUNC 02 on register 14 sets the clock. Archives: ``meter.archives`` (``MeterArchives``).
    """

    def __init__(
        self,
        model: str,
        address: int,
        *,
        serial_number: str | None = None,
        password: bytes = FACTORY_PASSWORD,
        access_levels: tuple[int, ...] = (0, 1),
        address_width: int | None = None,
        energy_scale: float | None = None,
        clock_bcd: bool = False,
        wake_quirk: bool | None = None,
        firmware: str = "2.21",
        model_text: str | None = None,
        session_timeout: float | None = None,
        lockout_attempts: int = 3,
        lockout_seconds: float = 1800.0,
        locked_error: int = E_ACCESS_DENIED,
        template: Template | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        search_delay: float = 2.0,
        clock_writable: bool = True,
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"unknown Milur model {model!r} (known: {', '.join(MODELS)})")
        if len(password) != 6:
            raise ValueError("a Milur password is 6 raw bytes")
        if address_width not in (None, 1, 4):
            raise ValueError("address_width must be 1, 4 or None (auto)")
        width = address_width or (1 if address <= 255 else 4)
        if not 0 <= address < (1 << (8 * width)) or (width == 4 and address == 0xFFFFFFFF):
            raise ValueError(f"address {address} does not fit a {width}-byte address")
        if locked_error not in (E_ACCESS_DENIED, E_BAD_PASSWORD):
            raise ValueError("locked_error must be 0x09 or 0x0D")
        self.model = model
        self.address = address
        self.address_width = width
        self.serial_number = serial_number or f"012{address % 1_000_000:06d}"
        self.firmware = firmware
        self.model_text = model_text or f"Milur {model}"
        self.energy_scale = energy_scale
        self.clock_bcd = clock_bcd
        self.wake_quirk = (model == "104") if wake_quirk is None else wake_quirk
        self.access_levels = access_levels
        self.session_timeout = session_timeout
        self.lockout_attempts = lockout_attempts
        self.lockout_seconds = lockout_seconds
        self.locked_error = locked_error
        self.template = template or _default_template(model)
        self.faults = Faults()
        self.counters = MeterCounters()
        self._password = password
        self._clock = clock
        self._offset = 0.0
        self.clock_error = 0.0  # seconds the meter's own clock is ahead (drift); tests set it
        self.clock_writable = clock_writable  # FUNC 02 on register 14 ([open], §4)
        self._session_level: int | None = None
        self._last_activity = 0.0
        self._wrong_in_row = 0
        self._locked_until: float | None = None
        self._load = LoadModel(
            phases=1 if model in SINGLE_PHASE_MODELS else 3,
            seed=address if seed is None else seed,
        )
        self._by_number: dict[int, RegisterDef] = {r.number: r for r in self.template.registers.values()}
        self._load.update(self.now(), self.wall_time())
        self.archives = MeterArchives(
            address if seed is None else seed,
            self.wall_time,
            self.now,
            bcd=clock_bcd,
            search_delay=search_delay,
        )

    def __repr__(self) -> str:
        return f"SimulatedMeter(model={self.model!r}, address={self.address})"

    # ------------------------------------------------------------------ time
    def now(self) -> float:
        """Simulated monotonic time in seconds."""
        return self._clock() + self._offset

    def wall_time(self) -> datetime:
        """Simulated wall-clock time (register 14, tariffs)."""
        moment = datetime.now() + timedelta(seconds=self._offset + self.clock_error)
        return moment.replace(microsecond=0)

    def advance(self, seconds: float) -> None:
        """Move simulated time forward: energy accumulates, sessions and lockouts may expire."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._offset += seconds
        self._load.update(self.now(), self.wall_time())

    # ------------------------------------------------------------------ state
    @property
    def session_level(self) -> int | None:
        """The open session's access level, or None."""
        if self._session_level is not None and self.session_timeout is not None:
            if self.now() - self._last_activity > self.session_timeout:
                self._session_level = None
        return self._session_level

    @property
    def locked(self) -> bool:
        """True while the password lockout is in force."""
        return self._locked_until is not None and self.now() < self._locked_until

    def expire_session(self) -> None:
        """Close the session as a real meter does after idling (the next read gets error 08)."""
        self._session_level = None

    def unlock(self) -> None:
        """Lift a password lockout (the operator's reset)."""
        self._locked_until = None
        self._wrong_in_row = 0

    def set_password(self, password: bytes) -> None:
        """Change the meter's password (6 raw bytes)."""
        if len(password) != 6:
            raise ValueError("a Milur password is 6 raw bytes")
        self._password = password

    @property
    def relay_off(self) -> bool:
        """Load relay state (register 84: 1 = off)."""
        return self._load.relay_off

    def values(self) -> dict[str, float]:
        """Current engineering values by register name (after moving to the present)."""
        self._load.update(self.now(), self.wall_time())
        return self._load.values()

    def scale_of(self, reg: RegisterDef) -> float:
        """The scale this meter uses for a register (energy scale override, §6 [open])."""
        if reg.energy and self.energy_scale is not None:
            return self.energy_scale
        return reg.scale

    # ------------------------------------------------------------------ registers
    def register_value(self, number: int) -> bytes | None:
        """Raw bytes of register ``number`` as the meter would send them, None if unknown."""
        if number == CLOCK_REGISTER:
            return encoding.encode_clock(self.wall_time(), self.clock_bcd)
        reg = self._by_number.get(number)
        if reg is None:
            return None
        if reg.fmt is RegisterFormat.ASCII:
            return encoding.encode_text(self._text(reg.name))
        if reg.fmt is RegisterFormat.DATETIME:
            return encoding.encode_clock(self.wall_time(), self.clock_bcd)
        values = self.values()
        scale = self.scale_of(reg)
        if reg.energy or reg.fmt is RegisterFormat.BCD32:
            return encoding.milur_bcd32(self._energy_raw(reg, values, scale))
        return encoding.encode_number(reg.fmt, values.get(reg.name, 0.0), scale)

    def _text(self, name: str) -> str:
        return {
            "model": self.model_text,
            "firmware": self.firmware,
            "serial_number": self.serial_number,
        }.get(name, "")

    def _energy_raw(self, reg: RegisterDef, values: dict[str, float], scale: float) -> int:
        # The total is the sum of the tariff counters so that tariffs always add up exactly.
        if reg.name == "energy_active_import_total":
            tariffs = [r for r in self.template.registers.values() if _TARIFF.fullmatch(r.name)]
            if tariffs:
                return sum(encoding.energy_raw(values.get(t.name, 0.0), self.scale_of(t)) for t in tariffs)
        return encoding.energy_raw(values.get(reg.name, 0.0), scale)

    # ------------------------------------------------------------------ requests
    def handle(self, func: int, data: bytes, width: int) -> bytes | None:
        """Answer one request addressed to this meter; None when the meter stays silent.

        ``width`` is the address width the request used; the answer uses the same. Faults are
        applied here except ``delay``, which the serving form honours.
        """
        self.counters.requests += 1
        if self.faults.silent:
            return None
        reply = self._answer(func, data, width)
        if reply[width] & 0x80:
            self.counters.errors_sent += 1
        return self._apply_faults(reply, width)

    def _apply_faults(self, reply: bytes, width: int) -> bytes:
        if self.faults.wrong_address:
            other = (self.address + 1) % (1 << (8 * width))
            reply = encoding.frame(other, width, reply[width], reply[width + 1 : -2])
        if self.faults.bad_crc:
            reply = reply[:-1] + bytes([reply[-1] ^ 0x5A])
        if self.faults.garbage:
            reply = self.faults.garbage_bytes + reply
        return reply

    def _answer(self, func: int, data: bytes, width: int) -> bytes:
        def error(code: int) -> bytes:
            return encoding.error_frame(self.address, width, func, code)

        if func == F_OPEN:
            return self._open_session(data, width)
        if func == F_CLOSE:
            self._session_level = None
            return encoding.frame(self.address, width, func, data[:1] or b"\x01")
        if func not in (F_READ, F_WRITE, *ARCHIVE_FUNCS):
            return error(E_ILLEGAL_FUNCTION)
        if self.session_level is None:
            return error(E_SESSION_CLOSED)
        self._last_activity = self.now()
        if func in ARCHIVE_FUNCS:
            answer = self.archives.answer(func, data)
            if isinstance(answer, int):
                return error(answer)
            return encoding.frame(self.address, width, func, answer)
        if not data:
            return error(E_ILLEGAL_VALUE)
        if func == F_READ:
            value = self.register_value(data[0])
            if value is None:
                return error(E_ILLEGAL_ADDRESS)
            return encoding.frame(self.address, width, func, bytes([data[0], len(value)]) + value)
        return self._write(data, width)

    def _open_session(self, data: bytes, width: int) -> bytes:
        # Lockout (protocol notes §3): three wrong passwords lock the meter for 30 minutes; while
        # locked every attempt, right or wrong, is refused.
        def error(code: int) -> bytes:
            return encoding.error_frame(self.address, width, F_OPEN, code)

        if len(data) != 7:
            return error(E_ILLEGAL_VALUE)
        if self.locked:
            return error(self.locked_error)
        self._locked_until = None
        level, password = data[0], data[1:]
        if level not in self.access_levels:
            return error(E_ILLEGAL_VALUE)
        if password != self._password:
            self._session_level = None
            self.counters.wrong_passwords += 1
            self._wrong_in_row += 1
            if self._wrong_in_row >= self.lockout_attempts:
                self._wrong_in_row = 0
                self._locked_until = self.now() + self.lockout_seconds
            return error(E_BAD_PASSWORD)
        self._wrong_in_row = 0
        self._session_level = level
        self._last_activity = self.now()
        self.counters.sessions_opened += 1
        return encoding.frame(self.address, width, F_OPEN, bytes([level]))

    def _write(self, data: bytes, width: int) -> bytes:
        number, value = data[0], data[1:]
        if number == CLOCK_REGISTER and self.clock_writable:
            return self._write_clock(data, width)
        reg = self._by_number.get(number)
        if reg is None:
            return encoding.error_frame(self.address, width, F_WRITE, E_ILLEGAL_ADDRESS)
        if number != RELAY_REGISTER and not reg.writable:
            return encoding.error_frame(self.address, width, F_WRITE, E_ACCESS_DENIED)
        if number != RELAY_REGISTER or len(value) != 1 or value[0] > 1:
            return encoding.error_frame(self.address, width, F_WRITE, E_ILLEGAL_VALUE)
        self._load.relay_off = value[0] == 1
        self._load.resample()
        return encoding.frame(self.address, width, F_WRITE, data)

    def _write_clock(self, data: bytes, width: int) -> bytes:
        # FUNC 02 on register 14 with the read layout (§4 "write parameter", [one source]; how a
        # real meter takes a clock write is [open]): the meter's clock jumps to the value
        try:
            target = decode_clock(data[1:], self.clock_bcd)
        except ValueError:
            return encoding.error_frame(self.address, width, F_WRITE, E_ILLEGAL_VALUE)
        self.clock_error += (target - self.wall_time()).total_seconds()
        self.counters.clock_writes += 1
        return encoding.frame(self.address, width, F_WRITE, data)

    def network_address_reply(self) -> bytes:
        """Answer to FUNC 0F at ``FF FF FF FF``: byte 9 carries the 1-byte address (§4)."""
        body = self.address.to_bytes(4, "little") + bytes([self.address & 0xFF])
        return encoding.frame(0xFFFFFFFF, 4, F_NETADDR, body)
