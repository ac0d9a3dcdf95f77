"""Reply frames as frozen dataclasses (protocol notes §2–§4, §7); each one can also be encoded.

Each class holds its DATA layout in both directions (``payload()`` and ``from_payload()``).
Replies keep raw value bytes; interpreting them (scales, BCD, dates) is the job of ``values.py`` and
of the helper methods here, which raise ``ValueDecodeError``. Import them from ``frames.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bridge.protocol.milur.codes import (
    ERROR_FLAG,
    ERROR_MEANINGS,
    Address,
    ArchiveSearchStatus,
    ErrorCode,
    Func,
    check_u8,
    check_u16,
)
from bridge.protocol.milur.crc import with_crc
from bridge.protocol.milur.errors import CodecUsageError, FrameError
from bridge.protocol.milur.values import RecordTime, decode_bcd32


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

    @classmethod
    def from_payload(cls, address: Address, p: bytes) -> Reply:
        """The reply from its DATA bytes (already framed to the right length by the codec)."""
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
        return bytes([check_u8("register", self.register), len(self.value)]) + self.value

    @classmethod
    def from_payload(cls, address: Address, p: bytes) -> ReadReply:
        """``REG LEN VALUE``."""
        return cls(address, p[0], p[2:])


@dataclass(frozen=True, slots=True)
class WriteReply(Reply):
    """FUNC 02 reply: the meter echoes ``REG VALUE…`` (§4, [one source])."""

    FUNC: ClassVar[Func] = Func.WRITE
    register: int
    value: bytes

    def payload(self) -> bytes:
        """``REG VALUE…``."""
        return bytes([check_u8("register", self.register)]) + self.value

    @classmethod
    def from_payload(cls, address: Address, p: bytes) -> WriteReply:
        """``REG VALUE…``."""
        return cls(address, p[0], p[1:])


@dataclass(frozen=True, slots=True)
class SessionReply(Reply):
    """FUNC 08 reply: echoes the access level (§3)."""

    FUNC: ClassVar[Func] = Func.OPEN_SESSION
    level: int

    def payload(self) -> bytes:
        """``LEVEL``."""
        return bytes([check_u8("level", self.level)])

    @classmethod
    def from_payload(cls, address: Address, p: bytes) -> SessionReply:
        """``LEVEL``."""
        return cls(address, p[0])


@dataclass(frozen=True, slots=True)
class CloseSessionReply(Reply):
    """FUNC 09 reply. Ours: echoes DATA ``01`` like the session reply (§3 gives only the request)."""

    FUNC: ClassVar[Func] = Func.CLOSE_SESSION

    def payload(self) -> bytes:
        """``01``."""
        return b"\x01"

    @classmethod
    def from_payload(cls, address: Address, p: bytes) -> CloseSessionReply:
        """``01``."""
        return cls(address)


@dataclass(frozen=True, slots=True)
class JournalCountReply(Reply):
    """FUNC 06 reply: number of records, u16 LE (§4, [one source])."""

    FUNC: ClassVar[Func] = Func.JOURNAL_COUNT
    count: int

    def payload(self) -> bytes:
        """``COUNT(u16 LE)``."""
        return check_u16("count", self.count).to_bytes(2, "little")

    @classmethod
    def from_payload(cls, address: Address, p: bytes) -> JournalCountReply:
        """``COUNT(u16 LE)``."""
        return cls(address, int.from_bytes(p[:2], "little"))


# §4 one-source record layouts: everything about the shape of journal, daily, profile and
# archive-search replies (both directions) is in the four classes below.
@dataclass(frozen=True, slots=True)
class JournalRecordReply(Reply):
    """FUNC 0B reply: ``sec min hour day mon yy flags`` (§4, [one source])."""

    FUNC: ClassVar[Func] = Func.JOURNAL_RECORD
    time: RecordTime
    flags: int

    def payload(self) -> bytes:
        """Seven bytes."""
        return self.time.encode(seconds=True) + bytes([check_u8("flags", self.flags)])

    @classmethod
    def from_payload(cls, address: Address, p: bytes) -> JournalRecordReply:
        """``sec min hour day mon yy flags``."""
        return cls(address, RecordTime.decode(p[:6], seconds=True), p[6])


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

    @classmethod
    def from_payload(cls, address: Address, p: bytes) -> DailyRecordReply:
        """``? min hour day mon yy`` + 4-byte blocks."""
        if len(p) < 6 or (len(p) - 6) % 4:
            raise FrameError("a daily record is 6 bytes + 4-byte blocks")
        blocks = tuple(p[i : i + 4] for i in range(6, len(p), 4))
        return cls(address, RecordTime.decode(p[:6], seconds=True), blocks)

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

    @classmethod
    def from_payload(cls, address: Address, p: bytes) -> ProfileRecordReply:
        """``min hour day mon yy`` + values."""
        return cls(address, RecordTime.decode(p[:5], seconds=False), p[5:])

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
            bytes([check_u8("status", self.status)])
            + check_u16("start", self.start).to_bytes(2, "little")
            + check_u16("end", self.end).to_bytes(2, "little")
        )

    @classmethod
    def from_payload(cls, address: Address, p: bytes) -> ArchiveSearchReply:
        """``STATUS START END``."""
        u16 = int.from_bytes
        return cls(address, p[0], u16(p[1:3], "little"), u16(p[3:5], "little"))

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
        return self.info + bytes([check_u8("network address", self.network_address)])

    @classmethod
    def from_payload(cls, address: Address, p: bytes) -> NetworkAddressReply:
        """``info(4) ADDRESS``: the address is byte 9 of a 4-byte-addressed frame."""
        return cls(address, p[4], p[:4])


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

    @classmethod
    def from_payload(cls, address: Address, p: bytes) -> IdentifyReply:
        """``info(4) IMEI(15)``: the IMEI is bytes 9..23 of the frame (§7)."""
        imei = p[4:19]
        if not imei.isascii():
            raise FrameError("the IMEI is not ASCII")
        return cls(address, imei.decode("ascii"), p[:4])


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
        return ERROR_MEANINGS.get(self.code, f"unknown error {self.code:#04x}")

    def payload(self) -> bytes:
        """``CODE 00``."""
        return bytes([check_u8("error code", self.code), 0])

    @classmethod
    def for_func(cls, address: Address, func_byte: int, p: bytes) -> ErrorReply:
        """From the function byte (``FUNC|80``) and ``CODE 00``; a known code becomes ``ErrorCode``."""
        code = p[0]
        known = code in ErrorCode._value2member_map_
        return cls(address, func_byte & ~ERROR_FLAG, ErrorCode(code) if known else code)


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
