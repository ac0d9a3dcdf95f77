"""``milur-bridge scan``: find the meters on a line and print their model, serial and firmware.

For commissioning: every address of a range (1-byte addresses) or of a list of serial numbers
(4-byte addresses, ``--wide``) is asked for register 32 (model) with a short timeout; an address
that answers is then asked for registers 68 (serial number) and 33 (firmware). The request/reply
code is ``milur-bridge read``'s (:class:`bridge.commands.read.MeterSession`).

Sessions (protocol notes §3): a meter may answer without a session, so none is opened until the
meter asks for one (error 08 or 09). Then exactly one session is opened with the given (or the
factory) password, and never a second one for that address: three wrong passwords lock a meter
for 30 minutes, and a scan must not be the thing that locks it.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import serial

from bridge.commands.read import CorruptReply, MeterSession, NoReply, ReadFailure
from bridge.config.model import RegisterFormat
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

NAME = "scan"
HELP = "find the meters on a line: address, model, serial number, firmware"
DESCRIPTION = """\
Ask every address of a line for its model (register 32), serial number (68) and firmware (33),
and print one line per meter that answers, e.g.

  ADDRESS  WIDTH  MODEL      SERIAL     FIRMWARE  SESSION
  1        1      Milur 307  012000001  2.21      level 1

CHANNEL is a serial device (/dev/ttyUSB0) or a pyserial URL (socket://host:port for an
RS-485/Ethernet converter or a GSM module in server mode).

1-byte addresses come from --range (default 1-255; 255 is the factory address). With --wide the
scan asks 4-byte addresses instead, made from serial numbers (last 6 digits, protocol notes §2):
--serials takes a file (one serial a line, # comments) or a comma-separated list. Give --range
as well to scan both.

A session is opened only when a meter asks for one, and at most once per address: a refused
password is reported and never retried (3 wrong passwords lock a meter for 30 minutes).
A scan of 255 addresses at the default 0.3 s timeout takes about 80 s on a quiet line.
"""

EXIT_FOUND = 0
EXIT_NONE = 1  # nothing answered, or the channel could not be used
EXIT_USAGE = 2
DEFAULT_RANGE = "1-255"
SERIAL_TIMEOUT = 0.3  # seconds: a meter on RS-485 answers well within it (§1)
NETWORK_TIMEOUT = 3.0  # seconds: GPRS and converters need more (§1)
_NETWORK_SCHEMES = ("socket://", "rfc2217://")
_REG_MODEL, _REG_SERIAL, _REG_FIRMWARE = 32, 68, 33
# Milur 104 quirk (protocol notes §1): after any 8-byte packet a 104 ignores the next request.
_QUIRK_PACKET_LENGTH = 8
_ASKS_FOR_SESSION = (ErrorCode.SESSION_CLOSED, ErrorCode.ACCESS_DENIED)
COLUMNS = ("address", "width", "model", "serial", "firmware", "session")
_TEXT_WIDTHS = (8, 6, 10, 10, 9)  # every column but the last


class UsageError(ValueError):
    """A bad option value; the message says which and why."""


@dataclass
class ScanResult:
    """What one address answered."""

    address: Address
    model: str = ""
    serial: str = ""
    firmware: str = ""
    session: str = "not needed"
    notes: list[str] = field(default_factory=list)

    def row(self) -> tuple[str, ...]:
        """The printed columns (``COLUMNS``)."""
        session = "; ".join(text for text in (self.session, *self.notes) if text)
        return (
            str(self.address.value),
            str(self.address.width),
            self.model or "?",
            self.serial or "?",
            self.firmware or "?",
            session,
        )


# --------------------------------------------------------------------------- options
def parse_range(text: str) -> list[int]:
    """``1-254``, ``255``, ``1-10,20,30-40`` → addresses in order, each once (0..255)."""
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            first, last = int(low), int(high if sep else low)
        except ValueError:
            raise UsageError(f"--range: {part!r} is not a number or a range like 1-254") from None
        if not 0 <= first <= last <= 255:
            raise UsageError(f"--range: {part!r} must lie within 0-255, low end first")
        out.extend(a for a in range(first, last + 1) if a not in out)
    if not out:
        raise UsageError("--range is empty")
    return out


def wide_address(serial_number: str) -> int:
    """The 4-byte address of a serial number: its last 6 digits (protocol notes §2)."""
    digits = serial_number.strip()
    if not digits.isdigit():
        raise UsageError(f"--serials: {serial_number!r} is not a serial number (digits only)")
    return int(digits[-6:])


def parse_serials(text: str) -> list[int]:
    """4-byte addresses from a file of serial numbers or a comma-separated list."""
    path = Path(text)
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--serials: cannot read {path}: {exc}") from None
        items = [line.split("#", 1)[0].strip() for line in lines]
    elif "," in text or text.strip().isdigit():
        items = text.split(",")
    else:
        raise UsageError(f"--serials: {text!r} is neither a file nor a list of serial numbers")
    out: list[int] = []
    for item in (i.strip() for i in items):
        if item and (address := wide_address(item)) not in out:
            out.append(address)
    if not out:
        raise UsageError("--serials names no serial number")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``scan``."""
    parser.add_argument("--channel", required=True, metavar="URL", help="device path or URL")
    parser.add_argument(
        "--range", dest="ranges", metavar="RANGE",
        help="1-byte addresses, e.g. 1-254 or 1-10,20 (default 1-255 without --wide)",
    )
    parser.add_argument("--wide", action="store_true", help="scan 4-byte addresses from --serials")
    parser.add_argument("--serials", metavar="FILE|LIST", help="serial numbers for --wide")
    parser.add_argument("--baudrate", type=int, default=9600)
    parser.add_argument(
        "--timeout", type=float,
        help=f"reply timeout per request, seconds (default {SERIAL_TIMEOUT:g} on serial, "
        f"{NETWORK_TIMEOUT:g} on socket:// and rfc2217://)",
    )
    parser.add_argument("--level", type=int, default=1, help="access level byte (default 1)")
    parser.add_argument("--password", default="FFFFFFFFFFFF", help="6-byte password as 12 hex digits")
    parser.add_argument(
        "--wake-byte", action=argparse.BooleanOptionalAction,
        help="send FF before every request (Milur 104 quirk, §1); default: only after an "
        "8-byte packet on the line",
    )
    parser.add_argument("--format", choices=("text", "csv"), default="text", help="default text")


def _addresses(args: argparse.Namespace) -> list[Address]:
    if args.serials and not args.wide:
        raise UsageError("--serials needs --wide")
    if args.wide and not args.serials:
        raise UsageError("--wide needs --serials FILE|LIST (4-byte addresses come from serial numbers)")
    narrow = parse_range(args.ranges or DEFAULT_RANGE) if args.ranges or not args.wide else []
    wide = parse_serials(args.serials) if args.wide else []
    return [Address(a, 1) for a in narrow] + [Address(a, 4) for a in wide]


def _password(text: str) -> bytes:
    try:
        password = bytes.fromhex(text)
    except ValueError:
        password = b""
    if len(password) != 6:
        raise UsageError("--password must be 12 hex digits (6 bytes)")
    return password


# --------------------------------------------------------------------------- the scan
class LineScanner:
    """Scans addresses one after another on an open pyserial port."""

    def __init__(
        self, port: serial.Serial, timeout: float, level: int, password: bytes, wake: bool | None
    ) -> None:
        self.port = port
        self.timeout = timeout
        self.level = level
        self._password = password
        self._wake = wake
        self._last_packet = 0  # length of the last packet on the line (ours or a meter's)
        self._session_open = False

    def _transact(self, session: MeterSession, request: Request) -> Reply:
        """One request/reply, with the 104 wake byte after an 8-byte packet (§1) unless told."""
        wake = self._wake
        session.wake_byte = wake if wake is not None else self._last_packet == _QUIRK_PACKET_LENGTH
        self._last_packet = len(request.encode())
        reply = session.transact(request)
        self._last_packet = len(reply.encode())
        return reply

    def _transact_read(self, session: MeterSession, register: int) -> ReadReply | ErrorReply:
        reply = self._transact(session, read_request(session.address, register))
        if not isinstance(reply, ReadReply | ErrorReply):
            raise CorruptReply(f"unexpected reply to read from {session.address}: {reply!r}", 1)
        return reply

    def probe(self, address: Address) -> ScanResult | None:
        """One address: None when nothing answers."""
        session = MeterSession(self.port, address, self.timeout)
        try:
            first = self._transact_read(session, _REG_MODEL)
        except NoReply:
            return None
        except CorruptReply:
            result = ScanResult(address, session="")
            result.notes.append("corrupt reply (CRC): noise, or two meters share this address")
            return result
        result = ScanResult(address)
        try:
            self._identify(session, result, first)
        except ReadFailure as exc:
            result.notes.append(str(exc))
        finally:
            self._close(session)
        return result

    def _identify(self, session: MeterSession, result: ScanResult, first: ReadReply | ErrorReply) -> None:
        replies: dict[int, ReadReply | ErrorReply] = {_REG_MODEL: first}
        if not _asks_for_session(first):
            for register in (_REG_SERIAL, _REG_FIRMWARE):
                replies[register] = self._transact_read(session, register)
                if _asks_for_session(replies[register]):
                    break
        if any(_asks_for_session(r) for r in replies.values()):
            if not self._open_session_once(session, result):
                return
            replies = {r: self._transact_read(session, r) for r in (_REG_MODEL, _REG_SERIAL, _REG_FIRMWARE)}
        result.model = _text(replies.get(_REG_MODEL), result)
        result.serial = _text(replies.get(_REG_SERIAL), result)
        result.firmware = _text(replies.get(_REG_FIRMWARE), result)

    def _open_session_once(self, session: MeterSession, result: ScanResult) -> bool:
        # Protocol notes §3: one attempt only, whatever the outcome. (MeterSession.read would
        # reopen on error 08, so the scan reads through transact() alone.)
        request = open_session_request(session.address, self.level, self._password)
        try:
            reply = self._transact(session, request)
        except NoReply:
            result.session = "no reply to open session"
            return False
        if isinstance(reply, ErrorReply):
            result.session = f"refused: {reply.meaning} (error {reply.code:02X})"
            if reply.code in (ErrorCode.PASSWORD_INCORRECT, ErrorCode.ACCESS_DENIED):
                result.session += ", not retried: 3 wrong passwords lock the meter for 30 min"
            return False
        if not isinstance(reply, SessionReply):
            result.session = f"unexpected reply to open session: {reply!r}"
            return False
        self._session_open = True
        result.session = f"level {self.level}"
        return True

    def _close(self, session: MeterSession) -> None:
        """Close an opened session (FUNC 09) and let the meter's reply pass."""
        if not self._session_open:
            return
        self._session_open = False
        request = close_session_request(session.address).encode()
        self.port.write(request)
        self.port.flush()
        # The reply is byte-identical to the request (read's MeterSession.close), so it is not
        # awaited as a reply; but on RS-485 (half duplex) the next request must not talk over it.
        deadline = time.monotonic() + min(self.timeout, 0.2)
        while time.monotonic() < deadline:
            self.port.timeout = 0.02
            if self.port.read(max(1, self.port.in_waiting)):
                deadline = min(deadline, time.monotonic() + session.gap)
        self.port.reset_input_buffer()
        self._last_packet = len(request)


def _asks_for_session(reply: ReadReply | ErrorReply | None) -> bool:
    return isinstance(reply, ErrorReply) and reply.code in _ASKS_FOR_SESSION


def _text(reply: ReadReply | ErrorReply | None, result: ScanResult) -> str:
    if isinstance(reply, ErrorReply):
        result.notes.append(f"register error {reply.code:02X} ({reply.meaning})")
        return ""
    if reply is None:
        return ""
    try:
        return str(decode_value(RegisterFormat.ASCII, reply.value)).strip()
    except ValueDecodeError as exc:
        result.notes.append(f"register {reply.register}: {exc}")
        return ""


# --------------------------------------------------------------------------- output
def _render(rows: Iterable[tuple[str, ...]], fmt: str, header: bool) -> str:
    """Rows as CSV or as aligned text (the last column unpadded); the header when asked."""
    table = [COLUMNS, *rows] if header else list(rows)
    if fmt == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(table)
        return out.getvalue()
    lines = []
    for i, row in enumerate(table):
        cells = [c.upper() if header and i == 0 else c for c in row]
        padded = [c.ljust(w) for c, w in zip(cells[:-1], _TEXT_WIDTHS, strict=True)]
        lines.append(" ".join([*padded, cells[-1]]).rstrip() + "\n")
    return "".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``scan``; 0 when at least one meter answered."""
    try:
        addresses = _addresses(args)
        password = _password(args.password)
        if args.timeout is not None and not 0 < args.timeout <= 60:
            raise UsageError("--timeout must be above 0 and at most 60 seconds")
        if not 0 <= args.level <= 255:
            raise UsageError("--level must be 0..255")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    network = str(args.channel).startswith(_NETWORK_SCHEMES)
    timeout = args.timeout or (NETWORK_TIMEOUT if network else SERIAL_TIMEOUT)
    try:
        port = serial.serial_for_url(args.channel, baudrate=args.baudrate, timeout=0.05)
    except (serial.SerialException, ValueError) as exc:
        print(f"error: cannot open {args.channel}: {exc}", file=sys.stderr)
        return EXIT_NONE
    print(
        f"scanning {len(addresses)} address(es) on {args.channel}, {timeout:g} s each",
        file=sys.stderr,
        flush=True,
    )
    scanner = LineScanner(port, timeout, args.level, password, args.wake_byte)
    found: list[ScanResult] = []
    started = time.monotonic()
    try:
        for address in addresses:
            result = scanner.probe(address)
            if result is not None:
                print(_render([result.row()], args.format, header=not found), end="", flush=True)
                found.append(result)
    except (serial.SerialException, OSError) as exc:
        print(f"error: channel {args.channel}: {exc}", file=sys.stderr)
        return EXIT_NONE
    finally:
        port.close()
    elapsed = time.monotonic() - started
    summary = f"{len(found)} meter(s) answered; {len(addresses)} address(es) in {elapsed:.1f} s"
    print(summary, file=sys.stderr)
    return EXIT_FOUND if found else EXIT_NONE
