"""The Milur driver: sessions, retries and register decoding for one meter (§3–§6).

Rules it keeps (protocol notes):

- a session (FUNC 08, access level + 6-byte password) is opened on demand and kept; error 08
  "session closed" on a request reopens it once and repeats the request once (§3);
- a rejected password (error 0D, or 09, on session open) is never retried: three wrong passwords
  lock the meter's channel for 30 minutes (§3). The driver raises ``AuthenticationFailed`` from
  then on without sending anything, until ``reset_auth()``; it logs that loudly once, without the
  password. A session open that got no reply at all is retried like any request, but not one that
  got a corrupt reply (it may have been a rejection);
- transient failures (timeout, corrupt reply) are retried ``channel.retries`` times;
- a Milur 104 (``MeterConfig.wake_byte``) ignores the request after any 8-byte packet on the bus,
  so a wake byte goes before every request to it (§1);
- an error reply to one register (02, 07, …) and a value that cannot be decoded fail that
  register only: it is reported in its ``RegisterReading`` (transient, never disabled for good).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from bridge.config.model import MeterConfig, RegisterDef, RegisterFormat, Template
from bridge.drivers.errors import (
    AuthenticationFailed,
    BadValue,
    CorruptReply,
    MeterErrorReply,
    ResponseTimeout,
    SessionRefused,
)
from bridge.drivers.link import Link
from bridge.protocol.milur.errors import ValueDecodeError
from bridge.protocol.milur.frames import (
    Address,
    ErrorCode,
    ErrorReply,
    ReadReply,
    Reply,
    Request,
    SessionReply,
    close_session_request,
    open_session_request,
    read_request,
)
from bridge.protocol.milur.values import decode_value

log = logging.getLogger(__name__)

EngineeringValue = float | int | str | datetime

#: identification registers (§6), used when the template does not name them
_IDENTITY_REGISTERS = {
    "model": RegisterDef("model", 32, RegisterFormat.ASCII),
    "firmware": RegisterDef("firmware", 33, RegisterFormat.ASCII),
    "serial_number": RegisterDef("serial_number", 68, RegisterFormat.ASCII),
}
_REJECTED_PASSWORD = (ErrorCode.PASSWORD_INCORRECT, ErrorCode.ACCESS_DENIED)


@dataclass(frozen=True, slots=True)
class RegisterReading:
    """One register's outcome: the raw bytes, the engineering value and the read time.

    ``error`` is set (and ``value`` is None) when this register failed on its own: the meter
    answered it with an error code (``MeterErrorReply``) or sent an undecodable value (``BadValue``).
    """

    name: str
    raw: bytes
    value: EngineeringValue | None
    read_time: datetime
    error: MeterErrorReply | BadValue | None = None

    @property
    def ok(self) -> bool:
        """True when the register has a value."""
        return self.error is None


@dataclass(frozen=True, slots=True)
class MeterIdentity:
    """What the meter says it is (registers 32, 33, 68); ``""`` for a register it refused."""

    model: str
    firmware: str
    serial: str


@dataclass(slots=True)
class DriverStats:
    """Counters of one meter's driver."""

    requests: int = 0
    retries: int = 0
    session_opens: int = 0
    session_reopens: int = 0
    meter_errors: int = 0
    bad_values: int = 0


class MilurDriver:
    """Talks to one Milur meter through whatever ``Link`` it is given (primary or backup)."""

    def __init__(self, meter: MeterConfig, template: Template, *, bcd_time: bool = False) -> None:
        self.meter = meter
        self.template = template
        self.address = Address(meter.address, meter.wire_address_width)
        self.bcd_time = bcd_time  # date/time record in BCD ([open] §6)
        self.session_open = False
        self.stats = DriverStats()
        self._auth_failed = False

    def __repr__(self) -> str:
        return f"MilurDriver({self.meter.name!r}, address={self.address})"

    # -- public --------------------------------------------------------------------------------
    @property
    def auth_failed(self) -> bool:
        """True after a rejected password, until ``reset_auth()``."""
        return self._auth_failed

    def reset_auth(self) -> None:
        """Allow session attempts again (operator reset or a changed configuration)."""
        self._auth_failed = False
        self.session_open = False

    def forget_session(self) -> None:
        """Assume no session (e.g. after the channel reconnected); the next request opens one."""
        self.session_open = False

    def scale_of(self, register: RegisterDef) -> float:
        """The meter's effective scale: override, then energy scale, then the template's (§6)."""
        if register.name in self.meter.scale_overrides:
            return self.meter.scale_overrides[register.name]
        if register.energy and self.meter.energy_scale is not None:
            return self.meter.energy_scale
        return register.scale

    async def read_registers(self, link: Link, names: Iterable[str]) -> dict[str, RegisterReading]:
        """Read registers by name; per-register failures are in the readings.

        Raises ``ResponseTimeout``/``CorruptReply`` (after retries), ``LinkDown``,
        ``AuthenticationFailed`` or ``SessionRefused`` (session refused for another reason):
        those fail the whole poll, so that a dead meter does not cost one timeout per register.
        """
        registers = [self._register(name) for name in names]
        readings: dict[str, RegisterReading] = {}
        for register in registers:
            readings[register.name] = await self._read_one(link, register)
        return readings

    async def identify(self, link: Link) -> MeterIdentity:
        """Model, firmware and serial number (registers 32, 33, 68)."""
        found: dict[str, str] = {}
        for name, default in _IDENTITY_REGISTERS.items():
            register = self.template.registers.get(name, default)
            reading = await self._read_one(link, register)
            found[name] = reading.value if isinstance(reading.value, str) else ""
        return MeterIdentity(found["model"], found["firmware"], found["serial_number"])

    async def close_session(self, link: Link) -> None:
        """Close the session if one is open (FUNC 09); failures are ignored."""
        if not self.session_open:
            return
        self.session_open = False
        try:
            await self._exchange(link, close_session_request(self.address), retries=0)
        except Exception as exc:  # closing is best effort
            log.debug("meter %s: close session failed: %s", self.meter.name, exc)

    async def request(self, link: Link, request: Request) -> Reply:
        """Any request inside the meter's session (archives, clock): same session and retry rules.

        An error reply raises ``MeterErrorReply``; used by ``bridge/drivers/archives.py``.
        """
        return await self._request(link, request)

    # -- internals -----------------------------------------------------------------------------
    def _register(self, name: str) -> RegisterDef:
        try:
            return self.template.registers[name]
        except KeyError:
            raise ValueError(
                f"meter {self.meter.name}: template {self.template.name} has no register {name!r}"
            ) from None

    async def _read_one(self, link: Link, register: RegisterDef) -> RegisterReading:
        try:
            reply = await self._request(link, read_request(self.address, register.number))
        except SessionRefused:
            raise
        except MeterErrorReply as exc:
            exc.register = register.name
            self.stats.meter_errors += 1
            return RegisterReading(register.name, b"", None, _now(), exc)
        assert isinstance(reply, ReadReply)  # the link only returns replies to this request
        read_time = _now()
        try:
            raw = decode_value(register.fmt, reply.value, bcd_time=self.bcd_time)
            value = self._engineering(register, raw)
        except ValueDecodeError as exc:
            self.stats.bad_values += 1
            bad = BadValue(register.name, reply.value, str(exc))
            return RegisterReading(register.name, reply.value, None, read_time, bad)
        return RegisterReading(register.name, reply.value, value, read_time)

    def _engineering(self, register: RegisterDef, raw: int | str | datetime) -> EngineeringValue:
        if isinstance(raw, int) and register.is_numeric:
            scale = self.scale_of(register)
            if scale == 1.0 and not register.unit:
                return raw  # counters and states stay integers
            return raw * scale
        return raw

    async def _request(self, link: Link, request: Request) -> Reply:
        """One request inside a session: opens it on demand, reopens once on error 08."""
        reopened = False
        while True:
            await self._ensure_session(link)
            reply = await self._exchange(link, request)
            if isinstance(reply, ErrorReply):
                if reply.code == ErrorCode.SESSION_CLOSED and not reopened:
                    # §3: "session closed" → open the session again and repeat the request once.
                    reopened = True
                    self.session_open = False
                    self.stats.session_reopens += 1
                    continue
                raise MeterErrorReply(reply.code, reply.meaning)
            return reply

    async def _ensure_session(self, link: Link) -> None:
        if self._auth_failed:
            raise AuthenticationFailed(
                f"meter {self.meter.name}: password was rejected; no session until reset"
            )
        if self.session_open:
            return
        request = open_session_request(
            self.address, self.meter.access_level, self.meter.password.reveal()
        )
        reply = await self._exchange(link, request, retry_corrupt=False)
        if isinstance(reply, ErrorReply):
            if reply.code in _REJECTED_PASSWORD:
                self._auth_failed = True
                log.error(
                    "meter %s (address %s): password REJECTED at access level %d "
                    "(error %02X %s); no more session attempts until the configuration changes "
                    "or an operator resets it (three wrong passwords lock the meter, §3)",
                    self.meter.name,
                    self.address,
                    self.meter.access_level,
                    reply.code,
                    reply.meaning,
                )
                raise AuthenticationFailed(
                    f"meter {self.meter.name}: password rejected ({reply.meaning})"
                )
            raise SessionRefused(reply.code, reply.meaning)
        if not isinstance(reply, SessionReply):
            raise CorruptReply(f"meter {self.meter.name}: unexpected reply {reply!r} to session")
        self.session_open = True
        self.stats.session_opens += 1

    async def _exchange(
        self,
        link: Link,
        request: Request,
        *,
        retries: int | None = None,
        retry_corrupt: bool = True,
    ) -> Reply:
        """One request with the wake byte and the channel's retries of transient failures."""
        attempts = 1 + (link.channel.retries if retries is None else retries)
        for attempt in range(1, attempts + 1):
            if self.meter.wake_byte:
                await link.send_wake_byte()
            self.stats.requests += 1
            try:
                return await link.transact(request)
            except ResponseTimeout as exc:
                if attempt >= attempts or (isinstance(exc, CorruptReply) and not retry_corrupt):
                    raise
                self.stats.retries += 1
        raise AssertionError("unreachable")


def _now() -> datetime:
    return datetime.now(UTC)
