"""Milur frames as frozen dataclasses: addresses, requests, replies (protocol notes §2–§4, §7).

Requests are built with the ``*_request`` builders and turned into bytes with ``Request.encode()``.
Replies are produced by the decoders in ``codec.py``; every reply type can also be encoded (the
simulator answers with them). Replies keep raw value bytes; interpreting them (scales, BCD, dates) is
the job of ``values.py`` and of the helper methods here, which raise ``ValueDecodeError``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from bridge.config.model import AddressWidth
from bridge.protocol.milur.crc import with_crc
from bridge.protocol.milur.errors import CodecUsageError
from bridge.protocol.milur.values import RecordTime, decode_bcd32

#: Set in the function byte of an error reply (protocol notes §4).
ERROR_FLAG = 0x80


def _check_u8(what: str, value: int) -> int:
    if not 0 <= value <= 0xFF:
        raise CodecUsageError(f"{what} must be 0..255, got {value}")
    return value


def _check_u16(what: str, value: int) -> int:
    if not 0 <= value <= 0xFFFF:
        raise CodecUsageError(f"{what} must be 0..65535, got {value}")
    return value


# --------------------------------------------------------------------------- addresses
@dataclass(frozen=True, slots=True)
class Address:
    """A meter address on the wire: 1 byte, or 4 bytes little-endian (protocol notes §2)."""

    value: int
    width: int = 1

    def __post_init__(self) -> None:
        if self.width not in (1, 4):
            raise CodecUsageError(f"address width must be 1 or 4, got {self.width}")
        if not 0 <= self.value < 1 << (8 * self.width):
            raise CodecUsageError(f"address {self.value} does not fit in {self.width} byte(s)")

    @classmethod
    def for_meter(cls, value: int, width_setting: AddressWidth | int | str = "auto") -> Address:
        """The wire address of a meter: ``auto`` takes 1 byte up to 255, else 4 ([open] §2)."""
        setting = width_setting.value if isinstance(width_setting, AddressWidth) else width_setting
        if str(setting) == "auto":
            return cls(value, 1 if value <= 0xFF else 4)
        if str(setting) in ("1", "4"):
            return cls(value, int(setting))
        raise CodecUsageError(f"address width setting must be auto, 1 or 4, got {setting!r}")

    def encode(self) -> bytes:
        """The address bytes (little-endian for 4 bytes)."""
        return self.value.to_bytes(self.width, "little")

    def __str__(self) -> str:
        return f"{self.value}/{self.width}"


#: ``FF FF FF FF``: read network address (FUNC 0F) and GSM identification (FUNC C3), §2/§7.
BROADCAST = Address(0xFFFFFFFF, 4)


# --------------------------------------------------------------------------- codes
class Func(enum.IntEnum):
    """Function codes (protocol notes §4)."""

    READ = 0x01
    WRITE = 0x02
    JOURNAL_COUNT = 0x06
    OPEN_SESSION = 0x08
    CLOSE_SESSION = 0x09
    JOURNAL_RECORD = 0x0B
    DAILY_RECORD = 0x0C
    PROFILE_RECORD = 0x0D
    NETWORK_ADDRESS = 0x0F
    ARCHIVE_SEARCH = 0x10
    IDENTIFY = 0xC3


_ERROR_MEANINGS = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "device failure",
    0x05: "acknowledge",
    0x06: "busy",
    0x07: "EEPROM access error",
    0x08: "session closed (reopen)",
    0x09: "access denied",
    0x0A: "CRC error",
    0x0B: "frame incorrect",
    0x0C: "calibration jumper absent",
    0x0D: "password incorrect",
}


class ErrorCode(enum.IntEnum):
    """Error codes of error replies (protocol notes §4)."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_DATA_ADDRESS = 0x02
    ILLEGAL_DATA_VALUE = 0x03
    DEVICE_FAILURE = 0x04
    ACKNOWLEDGE = 0x05
    BUSY = 0x06
    EEPROM_ERROR = 0x07
    SESSION_CLOSED = 0x08
    ACCESS_DENIED = 0x09
    CRC_ERROR = 0x0A
    FRAME_INCORRECT = 0x0B
    CALIBRATION_JUMPER_ABSENT = 0x0C
    PASSWORD_INCORRECT = 0x0D

    @property
    def meaning(self) -> str:
        """Human-readable meaning."""
        return _ERROR_MEANINGS[self.value]


class ArchiveSearchStatus(enum.IntEnum):
    """STATUS of a FUNC 10 reply (protocol notes §4, [one source])."""

    ACCEPTED = 1  # ask again in about 2 s
    SEARCHING = 2
    EARLIER_FOUND = 3
    LATER_FOUND = 4
    OUT_OF_RANGE = 5
    EMPTY = 6
    ERROR = 7


# --------------------------------------------------------------------------- requests
@dataclass(frozen=True, slots=True, repr=False)
class Request:
    """A request frame. ``reply_size``: expected reply DATA length for FUNC 0C/0D (None: by CRC)."""

    address: Address
    func: Func
    data: bytes = b""
    reply_size: int | None = field(default=None, compare=False)

    def encode(self) -> bytes:
        """The frame bytes with CRC."""
        return with_crc(self.address.encode() + bytes([self.func]) + self.data)

    @property
    def register(self) -> int | None:
        """The register number of a read or write request, else None."""
        if self.func in (Func.READ, Func.WRITE) and self.data:
            return self.data[0]
        return None

    def __repr__(self) -> str:
        data = self.data
        if self.func is Func.OPEN_SESSION:  # never show a password (house rule: secrets)
            shown = f"{data[:1].hex()} ******"
        else:
            shown = data.hex(" ")
        return f"Request({self.address}, {self.func.name}, {shown!r})"


def read_request(addr: Address, register: int) -> Request:
    """FUNC 01: read one parameter register (§4, §6)."""
    return Request(addr, Func.READ, bytes([_check_u8("register", register)]))


def write_request(addr: Address, register: int, value: bytes) -> Request:
    """FUNC 02: write a register, e.g. reg 0x54 = load relay (§4, [one source]); echoed back."""
    if not value:
        raise CodecUsageError("write_request needs at least one value byte")
    return Request(addr, Func.WRITE, bytes([_check_u8("register", register)]) + bytes(value))


def open_session_request(addr: Address, level: int, password: bytes) -> Request:
    """FUNC 08: open a session with an access level and a 6-byte raw password (§3)."""
    if len(password) != 6:
        raise CodecUsageError("the session password must be exactly 6 bytes")
    return Request(addr, Func.OPEN_SESSION, bytes([_check_u8("level", level)]) + bytes(password))


def close_session_request(addr: Address) -> Request:
    """FUNC 09 with DATA ``01`` (§3, [one source])."""
    return Request(addr, Func.CLOSE_SESSION, b"\x01")


def journal_count_request(addr: Address, journal: int) -> Request:
    """FUNC 06: number of records in journal ``journal`` (§4, [one source])."""
    return Request(addr, Func.JOURNAL_COUNT, bytes([_check_u8("journal", journal)]))


def journal_record_request(addr: Address, journal: int, index: int) -> Request:
    """FUNC 0B: one journal record (§4, [one source])."""
    data = bytes([_check_u8("journal", journal)]) + _check_u16("index", index).to_bytes(2, "little")
    return Request(addr, Func.JOURNAL_RECORD, data)


#: LIST byte of the daily archive (FUNC 0C) and of the 30-minute profile (FUNC 0D), §4.
DAILY_LIST = 0x42
PROFILE_LIST = 0x10


def daily_record_request(addr: Address, index: int, blocks: int | None = None) -> Request:
    """FUNC 0C: daily archive record; ``blocks`` = number of BCD32 blocks expected (None: by CRC)."""
    size = None if blocks is None else 6 + 4 * blocks
    data = bytes([DAILY_LIST]) + _check_u16("index", index).to_bytes(2, "little")
    return Request(addr, Func.DAILY_RECORD, data, size)


def profile_record_request(addr: Address, index: int, value_bytes: int | None = None) -> Request:
    """FUNC 0D: 30-minute profile record; ``value_bytes`` after the 5-byte time (None: by CRC)."""
    size = None if value_bytes is None else 5 + value_bytes
    data = bytes([PROFILE_LIST]) + _check_u16("index", index).to_bytes(2, "little")
    return Request(addr, Func.PROFILE_RECORD, data, size)


def network_address_request() -> Request:
    """FUNC 0F to ``FF FF FF FF``: read the 1-byte network address (§4, [one source])."""
    return Request(BROADCAST, Func.NETWORK_ADDRESS, b"")


def archive_search_request(
    addr: Address, journal: int, start: datetime, end: datetime, *, bcd: bool = False
) -> Request:
    """FUNC 10: find the archive index range between two times (``min hour day mon yy`` each)."""
    data = (
        bytes([_check_u8("journal", journal)])
        + RecordTime.from_datetime(start, bcd=bcd).encode(seconds=False)
        + RecordTime.from_datetime(end, bcd=bcd).encode(seconds=False)
    )
    return Request(addr, Func.ARCHIVE_SEARCH, data)


def identify_request() -> Request:
    """FUNC C3 ``0C 01`` to ``FF FF FF FF``: GSM terminal identification (§7, [one source])."""
    return Request(BROADCAST, Func.IDENTIFY, b"\x0c\x01")


# --------------------------------------------------------------------------- replies
@dataclass(frozen=True, slots=True)
class Reply:
    """Base of all replies: the frame address; ``func`` is the function byte on the wire."""

    FUNC: ClassVar[Func]
    address: Address

    @property
    def func(self) -> int:
        """The function byte of this reply."""
        return int(self.FUNC)

    def payload(self) -> bytes:
        """The DATA bytes between the function byte and the CRC."""
        raise NotImplementedError

    def encode(self) -> bytes:
        """The frame bytes with CRC."""
        return with_crc(self.address.encode() + bytes([self.func]) + self.payload())


@dataclass(frozen=True, slots=True)
class ReadReply(Reply):
    """FUNC 01 reply: ``REG LEN VALUE(LEN)``; ``value`` is raw, decode it with ``values.py``."""

    FUNC: ClassVar[Func] = Func.READ
    register: int
    value: bytes

    def payload(self) -> bytes:
        """``REG LEN VALUE``."""
        if len(self.value) > 0xFF:
            raise CodecUsageError("a register value is at most 255 bytes")
        return bytes([_check_u8("register", self.register), len(self.value)]) + self.value


@dataclass(frozen=True, slots=True)
class WriteReply(Reply):
    """FUNC 02 reply: the meter echoes ``REG VALUE…`` (§4, [one source])."""

    FUNC: ClassVar[Func] = Func.WRITE
    register: int
    value: bytes

    def payload(self) -> bytes:
        """``REG VALUE…``."""
        return bytes([_check_u8("register", self.register)]) + self.value


@dataclass(frozen=True, slots=True)
class SessionReply(Reply):
    """FUNC 08 reply: echoes the access level (§3)."""

    FUNC: ClassVar[Func] = Func.OPEN_SESSION
    level: int

    def payload(self) -> bytes:
        """``LEVEL``."""
        return bytes([_check_u8("level", self.level)])


@dataclass(frozen=True, slots=True)
class CloseSessionReply(Reply):
    """FUNC 09 reply. Ours: echoes DATA ``01`` like the session reply (§3 gives only the request)."""

    FUNC: ClassVar[Func] = Func.CLOSE_SESSION

    def payload(self) -> bytes:
        """``01``."""
        return b"\x01"


@dataclass(frozen=True, slots=True)
class JournalCountReply(Reply):
    """FUNC 06 reply: number of records, u16 LE (§4, [one source])."""

    FUNC: ClassVar[Func] = Func.JOURNAL_COUNT
    count: int

    def payload(self) -> bytes:
        """``COUNT(u16 LE)``."""
        return _check_u16("count", self.count).to_bytes(2, "little")


# §4 one-source record layouts. Everything about the shape of journal, daily, profile and
# archive-search replies is in the four classes below and in ``codec._reply_from_payload``.
@dataclass(frozen=True, slots=True)
class JournalRecordReply(Reply):
    """FUNC 0B reply: ``sec min hour day mon yy flags`` (§4, [one source])."""

    FUNC: ClassVar[Func] = Func.JOURNAL_RECORD
    time: RecordTime
    flags: int

    def payload(self) -> bytes:
        """Seven bytes."""
        return self.time.encode(seconds=True) + bytes([_check_u8("flags", self.flags)])


@dataclass(frozen=True, slots=True)
class DailyRecordReply(Reply):
    """FUNC 0C reply: ``? min hour day mon yy`` + BCD32 blocks (§4, [one source]).

    The unknown first byte is kept in ``time.second``.
    """

    FUNC: ClassVar[Func] = Func.DAILY_RECORD
    time: RecordTime
    blocks: tuple[bytes, ...]

    def payload(self) -> bytes:
        """Six time bytes, then the 4-byte blocks."""
        if any(len(b) != 4 for b in self.blocks):
            raise CodecUsageError("daily record blocks are 4 bytes each")
        return self.time.encode(seconds=True) + b"".join(self.blocks)

    def energies(self) -> tuple[int, ...]:
        """The blocks as Milur BCD32 integers (raises ``ValueDecodeError`` on a bad digit)."""
        return tuple(decode_bcd32(b) for b in self.blocks)


@dataclass(frozen=True, slots=True)
class ProfileRecordReply(Reply):
    """FUNC 0D reply: ``min hour day mon yy`` + values (§4, [one source]; value layout unknown)."""

    FUNC: ClassVar[Func] = Func.PROFILE_RECORD
    time: RecordTime
    values: bytes

    def payload(self) -> bytes:
        """Five time bytes, then the raw values."""
        return self.time.encode(seconds=False) + self.values

    def words(self) -> tuple[int, ...]:
        """The values read as u16 LE words (one plausible layout; a trailing odd byte is ignored)."""
        v = self.values
        return tuple(int.from_bytes(v[i : i + 2], "little") for i in range(0, len(v) - 1, 2))


@dataclass(frozen=True, slots=True)
class ArchiveSearchReply(Reply):
    """FUNC 10 reply: ``STATUS START(u16 LE) END(u16 LE)`` (§4, [one source])."""

    FUNC: ClassVar[Func] = Func.ARCHIVE_SEARCH
    status: int
    start: int
    end: int

    def payload(self) -> bytes:
        """Five bytes."""
        return (
            bytes([_check_u8("status", self.status)])
            + _check_u16("start", self.start).to_bytes(2, "little")
            + _check_u16("end", self.end).to_bytes(2, "little")
        )

    @property
    def status_name(self) -> str:
        """Name of the status, or ``unknown(N)``."""
        try:
            return ArchiveSearchStatus(self.status).name.lower()
        except ValueError:
            return f"unknown({self.status})"


@dataclass(frozen=True, slots=True)
class NetworkAddressReply(Reply):
    """FUNC 0F reply from ``FF FF FF FF``: byte 9 of the frame is the 1-byte network address.

    Ours (§4 gives only "byte 9"): ``FF FF FF FF 0F`` + 4 unknown bytes (``info``) + address + CRC.
    """

    FUNC: ClassVar[Func] = Func.NETWORK_ADDRESS
    network_address: int
    info: bytes = bytes(4)

    def payload(self) -> bytes:
        """``info(4) ADDRESS``."""
        if len(self.info) != 4:
            raise CodecUsageError("NetworkAddressReply.info is 4 bytes")
        return self.info + bytes([_check_u8("network address", self.network_address)])


@dataclass(frozen=True, slots=True)
class IdentifyReply(Reply):
    """FUNC C3 reply: 26 bytes, ``FF FF FF FF C3`` + 4 unknown bytes + 15-digit IMEI + CRC (§7)."""

    FUNC: ClassVar[Func] = Func.IDENTIFY
    imei: str
    info: bytes = b"\x0c\x01\x00\x00"

    def payload(self) -> bytes:
        """``info(4) IMEI(15 ASCII)``."""
        if len(self.info) != 4 or len(self.imei) != 15 or not self.imei.isascii():
            raise CodecUsageError("IdentifyReply needs 4 info bytes and a 15-character IMEI")
        return self.info + self.imei.encode("ascii")


@dataclass(frozen=True, slots=True)
class ErrorReply(Reply):
    """Error reply ``ADDR FUNC|80 CODE 00`` (§2, §4). ``code`` is an ``ErrorCode`` when known."""

    FUNC: ClassVar[Func] = Func.READ  # unused: ``func`` is derived from ``request_func``
    request_func: int
    code: int

    @property
    def func(self) -> int:
        """``request_func | 0x80``."""
        return self.request_func | ERROR_FLAG

    @property
    def meaning(self) -> str:
        """Human-readable meaning of the code."""
        return _ERROR_MEANINGS.get(self.code, f"unknown error {self.code:#04x}")

    def payload(self) -> bytes:
        """``CODE 00``."""
        return bytes([_check_u8("error code", self.code), 0])


#: reply class by function (error replies excluded)
REPLY_TYPES: dict[Func, type[Reply]] = {
    cls.FUNC: cls
    for cls in (
        ReadReply,
        WriteReply,
        SessionReply,
        CloseSessionReply,
        JournalCountReply,
        JournalRecordReply,
        DailyRecordReply,
        ProfileRecordReply,
        ArchiveSearchReply,
        NetworkAddressReply,
        IdentifyReply,
    )
}
