"""``milur-bridge read``: read named registers from one meter and print them.

A small synchronous tool for commissioning: pyserial opens the channel (a device path or a
pyserial URL such as ``socket://host:port``), the bridge's sans-I/O codec frames the requests and
replies, and a plain request/reply loop runs on top. The bridge's own polling uses the async
engine instead; this command deliberately shares nothing with it but the codec and the templates.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import textwrap
import time
from datetime import datetime

import serial

from bridge.config.model import RegisterDef, RegisterFormat, Template
from bridge.protocol.milur.codec import FrameDecoder
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

NAME = "read"
HELP = "read named registers from one meter and print them"
DESCRIPTION = (
    "Read registers from one Milur meter and print one line per register, e.g.\n"
    "  voltage_a 234.607 V\n\n"
    "CHANNEL is a serial device (/dev/ttyUSB0) or a pyserial URL (socket://host:port,\n"
    "rfc2217://host:port, loop://). Without NAME every register of the model is read.\n"
    "Without --model the model is read from register 32."
)

EXIT_COMMUNICATION = 1  # no reply, corrupt reply, channel cannot be opened
EXIT_AUTH = 3  # password rejected, access denied, meter locked
EXIT_METER_ERROR = 4  # the meter answered a request with an error
_MODEL_PATTERN = re.compile(r"(104|105|107|305|307)")
_POLL_SLICE = 0.05  # seconds per blocking read, so the deadline is honoured


class ReadFailure(Exception):
    """Ends the command with a one-line reason and an exit code."""

    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.exit_code = exit_code


class NoReply(ReadFailure):
    """Nothing (valid or not) came back within the timeout."""


class CorruptReply(ReadFailure):
    """Only frames with a bad CRC came back: noise, or two meters answering at once."""


def _templates() -> dict[str, Template]:
    from bridge.config.templates import builtin_templates

    return builtin_templates()


def _template_for(model: str) -> Template:
    from bridge.config.templates import template_for_model

    return _templates()[template_for_model(model)]


def _register_epilog() -> str:
    lines = [
        "exit codes: 0 ok, 1 no reply / corrupt reply / channel error, 2 usage,",
        "            3 password rejected or meter locked, 4 meter error reply",
        "",
        "register names by model:",
    ]
    try:
        templates = _templates()
    except Exception as exc:  # help must still work when a template file is broken
        return "\n".join([*lines, f"  (templates unavailable: {exc})"])
    for template in templates.values():
        names = ", ".join(sorted(template.registers, key=lambda n: template.registers[n].number))
        lines.append(f"  {', '.join(template.models)} ({template.name}):")
        lines.extend(textwrap.wrap(names, 76, initial_indent="    ", subsequent_indent="    "))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``read``."""
    parser.epilog = _register_epilog()
    parser.add_argument("--channel", required=True, metavar="URL", help="device path or URL")
    parser.add_argument("--address", required=True, type=int, help="meter address")
    parser.add_argument("--model", choices=("104", "105", "107", "305", "307"))
    parser.add_argument("--level", type=int, default=1, help="access level byte (default 1)")
    parser.add_argument("--password", default="FFFFFFFFFFFF", help="6-byte password as 12 hex digits")
    parser.add_argument("--timeout", type=float, default=2.0, help="reply timeout, seconds")
    parser.add_argument("--baudrate", type=int, default=9600)
    parser.add_argument("--address-width", choices=("auto", "1", "4"), default="auto")
    parser.add_argument("--energy-scale", type=float, help="override the energy scale (§6)")
    parser.add_argument("--bcd-clock", action="store_true", help="register 14 is BCD")
    parser.add_argument(
        "--wake-byte",
        action=argparse.BooleanOptionalAction,
        help="send FF before each request (Milur 104 quirk; default on for 104)",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="register names")


class MeterSession:
    """Synchronous request/reply on an open pyserial port, with the Milur session rules (§3)."""

    def __init__(self, port: serial.Serial, address: Address, timeout: float) -> None:
        self.port = port
        self.address = address
        self.timeout = timeout
        self.wake_byte = False
        self._baudrate = max(1, int(getattr(port, "baudrate", 9600) or 9600))
        # 3.5 character times (§1), but generously: a busy host must not merge the wake byte
        # with the request that follows it
        self.gap = max(0.03, 35.0 / self._baudrate)
        self._open: tuple[int, bytes] | None = None

    def transact(self, request: Request) -> Reply:
        """Send one request and return its reply (raises ``ReadFailure``)."""
        if self.wake_byte:
            # Milur 104 (protocol notes §1): a lone FF, a frame gap, then discard the input.
            self.port.write(b"\xff")
            self.port.flush()
            time.sleep(self.gap)
        self.port.reset_input_buffer()
        self.port.write(request.encode())
        self.port.flush()
        decoder = FrameDecoder()
        decoder.expect(request)
        deadline = time.monotonic() + self.timeout
        while (remaining := deadline - time.monotonic()) > 0:
            self.port.timeout = min(remaining, _POLL_SLICE)
            data = self.port.read(max(1, self.port.in_waiting))
            if data:
                decoder.feed(data)
                reply = decoder.next_frame()
                if reply is not None:
                    return reply
        if decoder.stats.crc_errors:
            raise CorruptReply(f"corrupt reply from meter {self.address} (CRC error)", 1)
        raise NoReply(f"no reply from meter {self.address} within {self.timeout:g} s", 1)

    def open_session(self, level: int, password: bytes) -> None:
        """FUNC 08; a rejected password is never retried (lockout, §3)."""
        reply = self.transact(open_session_request(self.address, level, password))
        if isinstance(reply, ErrorReply):
            if reply.code in (ErrorCode.PASSWORD_INCORRECT, ErrorCode.ACCESS_DENIED):
                raise ReadFailure(
                    f"meter {self.address} refused the session: {reply.meaning} "
                    f"(error {reply.code:02X}; not retried, 3 wrong passwords lock the meter)",
                    EXIT_AUTH,
                )
            raise ReadFailure(f"meter {self.address} error {reply.code:02X}: {reply.meaning}", 4)
        if not isinstance(reply, SessionReply):
            raise ReadFailure(f"unexpected reply to open session: {reply!r}", 1)
        self._open = (level, password)

    def read(self, register: int) -> bytes:
        """FUNC 01; on error 08 the session is reopened and the read repeated once (§3)."""
        reply = self.transact(read_request(self.address, register))
        if isinstance(reply, ErrorReply) and reply.code == ErrorCode.SESSION_CLOSED and self._open:
            self.open_session(*self._open)
            reply = self.transact(read_request(self.address, register))
        if isinstance(reply, ErrorReply):
            raise ReadFailure(
                f"meter {self.address} error {reply.code:02X} reading register {register}: {reply.meaning}",
                EXIT_METER_ERROR,
            )
        if not isinstance(reply, ReadReply):
            raise ReadFailure(f"unexpected reply to read: {reply!r}", 1)
        return reply.value

    def close(self) -> None:
        """FUNC 09, best effort: sent without waiting for the reply.

        The reply ``ADDR 09 01`` is byte-identical to the request, so a decoder that drops echoes
        of our own request cannot tell them apart; nothing depends on it anyway.
        """
        if self._open is None:
            return
        self._open = None
        request = close_session_request(self.address)
        self.port.write(request.encode())
        self.port.flush()
        time.sleep(self.gap + len(request.encode()) * 10.0 / self._baudrate)


def format_value(reg: RegisterDef, raw: bytes, scale: float, bcd_clock: bool) -> str:
    """``234.607 V`` / ``Milur 307`` / ``2026-11-23 19:55:00``: the printed value of a register."""
    try:
        value = decode_value(reg.fmt, raw, bcd_time=bcd_clock)
    except ValueDecodeError as exc:
        raise ReadFailure(f"{reg.name}: bad value from the meter: {exc}", 1) from None
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, str):
        return value
    if reg.fmt is RegisterFormat.ASCII:
        return str(value)
    decimals = max(0, -math.floor(math.log10(scale) + 1e-9)) if 0 < scale < 1 else 0
    text = f"{value * scale:.{decimals}f}"
    return f"{text} {reg.unit}" if reg.unit else text


def _detect_model(session: MeterSession) -> str:
    text = session.read(32).rstrip(b"\0").decode("ascii", "replace")
    found = _MODEL_PATTERN.search(text)
    if not found:
        raise ReadFailure(f"cannot tell the model from register 32 ({text!r}); give --model", 1)
    return found.group(1)


def _registers(model: str, names: list[str]) -> list[RegisterDef]:
    """The registers to read, in order (all of the model's when ``names`` is empty)."""
    template = _template_for(model)
    if not names:
        return sorted(template.registers.values(), key=lambda r: r.number)
    unknown = [n for n in names if n not in template.registers]
    if unknown:
        raise ReadFailure(f"unknown register(s) for model {model}: {', '.join(unknown)} (see --help)", 2)
    return [template.registers[n] for n in names]


def _read_all(session: MeterSession, args: argparse.Namespace) -> None:
    registers = _registers(args.model or _detect_model(session), args.names)
    for reg in registers:
        scale = reg.scale
        if reg.energy and args.energy_scale is not None:
            scale = args.energy_scale
        raw = session.read(reg.number)
        print(f"{reg.name} {format_value(reg, raw, scale, args.bcd_clock)}", flush=True)


def run(args: argparse.Namespace) -> int:
    """Run ``read``; returns the exit code."""
    try:
        password = bytes.fromhex(args.password)
    except ValueError:
        password = b""
    if len(password) != 6:
        print("error: --password must be 12 hex digits (6 bytes)", file=sys.stderr)
        return 2
    try:
        address = Address.for_meter(args.address, args.address_width)
    except Exception as exc:
        print(f"error: --address: {exc}", file=sys.stderr)
        return 2
    if args.model:  # check the names before talking to the meter
        try:
            _registers(args.model, args.names)
        except ReadFailure as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
    try:
        port = serial.serial_for_url(args.channel, baudrate=args.baudrate, timeout=_POLL_SLICE)
    except (serial.SerialException, ValueError) as exc:
        print(f"error: cannot open {args.channel}: {exc}", file=sys.stderr)
        return EXIT_COMMUNICATION
    session = MeterSession(port, address, args.timeout)
    session.wake_byte = args.wake_byte if args.wake_byte is not None else args.model == "104"
    try:
        session.open_session(args.level, password)
        _read_all(session, args)
        session.close()
    except ReadFailure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (serial.SerialException, OSError) as exc:
        print(f"error: channel {args.channel}: {exc}", file=sys.stderr)
        return EXIT_COMMUNICATION
    finally:
        port.close()
    return 0
