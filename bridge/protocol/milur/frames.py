"""Milur frames as frozen dataclasses: addresses, requests, replies (protocol notes §2–§4, §7).

Requests are built with the ``*_request`` builders and turned into bytes with ``Request.encode()``.
Replies are produced by the decoders in ``codec.py``; every reply type can also be encoded (the
simulator answers with them). Replies keep raw value bytes; interpreting them (scales, BCD, dates) is
the job of ``values.py`` and of the helper methods here, which raise ``ValueDecodeError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bridge.protocol.milur.codes import (
    BROADCAST,
    ERROR_FLAG,
    Address,
    ArchiveSearchStatus,
    ErrorCode,
    Func,
    check_u8,
    check_u16,
)
from bridge.protocol.milur.crc import with_crc
from bridge.protocol.milur.errors import CodecUsageError
from bridge.protocol.milur.replies import (
    REPLY_TYPES,
    ArchiveSearchReply,
    CloseSessionReply,
    DailyRecordReply,
    ErrorReply,
    IdentifyReply,
    JournalCountReply,
    JournalRecordReply,
    NetworkAddressReply,
    ProfileRecordReply,
    ReadReply,
    Reply,
    SessionReply,
    WriteReply,
)
from bridge.protocol.milur.values import RecordTime

__all__ = [
    "Address",
    "ArchiveSearchReply",
    "ArchiveSearchStatus",
    "BROADCAST",
    "CloseSessionReply",
    "DAILY_LIST",
    "DailyRecordReply",
    "ERROR_FLAG",
    "ErrorCode",
    "ErrorReply",
    "Func",
    "IdentifyReply",
    "JournalCountReply",
    "JournalRecordReply",
    "NetworkAddressReply",
    "PROFILE_LIST",
    "ProfileRecordReply",
    "REPLY_TYPES",
    "ReadReply",
    "Reply",
    "Request",
    "SessionReply",
    "WriteReply",
    "archive_search_request",
    "close_session_request",
    "daily_record_request",
    "identify_request",
    "journal_count_request",
    "journal_record_request",
    "network_address_request",
    "open_session_request",
    "profile_record_request",
    "read_request",
    "write_request",
]


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
    return Request(addr, Func.READ, bytes([check_u8("register", register)]))


def write_request(addr: Address, register: int, value: bytes) -> Request:
    """FUNC 02: write a register, e.g. reg 0x54 = load relay (§4, [one source]); echoed back."""
    if not value:
        raise CodecUsageError("write_request needs at least one value byte")
    return Request(addr, Func.WRITE, bytes([check_u8("register", register)]) + bytes(value))


def open_session_request(addr: Address, level: int, password: bytes) -> Request:
    """FUNC 08: open a session with an access level and a 6-byte raw password (§3)."""
    if len(password) != 6:
        raise CodecUsageError("the session password must be exactly 6 bytes")
    return Request(addr, Func.OPEN_SESSION, bytes([check_u8("level", level)]) + bytes(password))


def close_session_request(addr: Address) -> Request:
    """FUNC 09 with DATA ``01`` (§3, [one source])."""
    return Request(addr, Func.CLOSE_SESSION, b"\x01")


def journal_count_request(addr: Address, journal: int) -> Request:
    """FUNC 06: number of records in journal ``journal`` (§4, [one source])."""
    return Request(addr, Func.JOURNAL_COUNT, bytes([check_u8("journal", journal)]))


def journal_record_request(addr: Address, journal: int, index: int) -> Request:
    """FUNC 0B: one journal record (§4, [one source])."""
    data = bytes([check_u8("journal", journal)]) + check_u16("index", index).to_bytes(2, "little")
    return Request(addr, Func.JOURNAL_RECORD, data)


#: LIST byte of the daily archive (FUNC 0C) and of the 30-minute profile (FUNC 0D), §4.
DAILY_LIST = 0x42
PROFILE_LIST = 0x10


def daily_record_request(addr: Address, index: int, blocks: int | None = None) -> Request:
    """FUNC 0C: daily archive record; ``blocks`` = number of BCD32 blocks expected (None: by CRC)."""
    size = None if blocks is None else 6 + 4 * blocks
    data = bytes([DAILY_LIST]) + check_u16("index", index).to_bytes(2, "little")
    return Request(addr, Func.DAILY_RECORD, data, size)


def profile_record_request(addr: Address, index: int, value_bytes: int | None = None) -> Request:
    """FUNC 0D: 30-minute profile record; ``value_bytes`` after the 5-byte time (None: by CRC)."""
    size = None if value_bytes is None else 5 + value_bytes
    data = bytes([PROFILE_LIST]) + check_u16("index", index).to_bytes(2, "little")
    return Request(addr, Func.PROFILE_RECORD, data, size)


def network_address_request() -> Request:
    """FUNC 0F to ``FF FF FF FF``: read the 1-byte network address (§4, [one source])."""
    return Request(BROADCAST, Func.NETWORK_ADDRESS, b"")


def archive_search_request(
    addr: Address, journal: int, start: datetime, end: datetime, *, bcd: bool = False
) -> Request:
    """FUNC 10: find the archive index range between two times (``min hour day mon yy`` each)."""
    data = (
        bytes([check_u8("journal", journal)])
        + RecordTime.from_datetime(start, bcd=bcd).encode(seconds=False)
        + RecordTime.from_datetime(end, bcd=bcd).encode(seconds=False)
    )
    return Request(addr, Func.ARCHIVE_SEARCH, data)


def identify_request() -> Request:
    """FUNC C3 ``0C 01`` to ``FF FF FF FF``: GSM terminal identification (§7, [one source])."""
    return Request(BROADCAST, Func.IDENTIFY, b"\x0c\x01")
