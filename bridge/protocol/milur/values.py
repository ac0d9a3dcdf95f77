"""Register value encodings (protocol notes §5, §6) and the date/time records of §4.

All multi-byte integers are little-endian. Decoding returns raw (unscaled) values: ``int`` for the
integer and BCD formats, ``str`` for ASCII, ``datetime`` (naive, meter local time) for the clock.
A value the meter sent that cannot be trusted raises ``ValueDecodeError``; a value we were asked to
encode that does not fit raises ``CodecUsageError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridge.config.model import RegisterFormat
from bridge.protocol.milur.errors import CodecUsageError, ValueDecodeError

#: a decoded register value
Value = int | str | datetime

#: (size in bytes, signed) of the integer formats
_INTEGERS: dict[RegisterFormat, tuple[int, bool]] = {
    RegisterFormat.U8: (1, False),
    RegisterFormat.U16: (2, False),
    RegisterFormat.S16: (2, True),
    RegisterFormat.U24: (3, False),
    RegisterFormat.S24: (3, True),
    RegisterFormat.U32: (4, False),
    RegisterFormat.S32: (4, True),
}

#: length of the date/time record of register 14 (§6)
DATETIME_SIZE = 7
BCD32_MAX = 99_999_999


def value_size(fmt: RegisterFormat) -> int | None:
    """Byte size of a format, or None for ASCII (any length)."""
    if fmt in _INTEGERS:
        return _INTEGERS[fmt][0]
    if fmt is RegisterFormat.BCD32:
        return 4
    if fmt is RegisterFormat.DATETIME:
        return DATETIME_SIZE
    return None


# --------------------------------------------------------------------------- BCD
def _bcd_byte(byte: int) -> int:
    """A plain BCD byte (high nibble = tens), as used by BCD date/time records."""
    hi, lo = byte >> 4, byte & 0x0F
    if hi > 9 or lo > 9:
        raise ValueDecodeError(f"invalid BCD byte {byte:02X}")
    return hi * 10 + lo


def _to_bcd_byte(value: int) -> int:
    if not 0 <= value <= 99:
        raise CodecUsageError(f"{value} does not fit in one BCD byte")
    return (value // 10) << 4 | value % 10


def decode_bcd32(raw: bytes) -> int:
    """Milur BCD32 (§5): least significant digit pair first, low nibble = tens.

    ``44 11 10 00`` → 11144. A nibble above 9 raises ``ValueDecodeError``.
    """
    if len(raw) != 4:
        raise ValueDecodeError(f"BCD32 needs 4 bytes, got {len(raw)}")
    total = 0
    for i, byte in enumerate(raw):
        tens, units = byte & 0x0F, byte >> 4
        if tens > 9 or units > 9:
            raise ValueDecodeError(f"invalid Milur BCD32 digits in {raw.hex(' ').upper()}")
        total += (tens * 10 + units) * 100**i
    return total


def encode_bcd32(value: int) -> bytes:
    """Inverse of ``decode_bcd32``: 0..99 999 999 → 4 bytes."""
    if not 0 <= value <= BCD32_MAX:
        raise CodecUsageError(f"BCD32 value must be 0..{BCD32_MAX}, got {value}")
    out = bytearray()
    for _ in range(4):
        pair = value % 100
        value //= 100
        out.append((pair % 10) << 4 | pair // 10)
    return bytes(out)


# --------------------------------------------------------------------------- date/time
def _field(byte: int, bcd: bool) -> int:
    return _bcd_byte(byte) if bcd else byte


def _make_datetime(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime:
    try:
        return datetime(2000 + year, month, day, hour, minute, second)
    except ValueError as exc:
        raise ValueDecodeError(
            f"invalid meter time 20{year:02d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"
        ) from exc


def decode_datetime(raw: bytes, *, bcd: bool = False) -> datetime:
    """Register 14: ``sec min hour ? day month year-2000``, binary or BCD (§6, [open]).

    The fourth byte (probably the weekday) is ignored.
    """
    if len(raw) != DATETIME_SIZE:
        raise ValueDecodeError(f"date/time record needs {DATETIME_SIZE} bytes, got {len(raw)}")
    sec, minute, hour, _weekday, day, month, year = (_field(b, bcd) for b in raw)
    return _make_datetime(year, month, day, hour, minute, sec)


def encode_datetime(value: datetime, *, bcd: bool = False) -> bytes:
    """Inverse of ``decode_datetime``; the fourth byte is the ISO weekday (1 = Monday)."""
    if not 2000 <= value.year <= 2099:
        raise CodecUsageError(f"meter clock years are 2000..2099, got {value.year}")
    fields = (
        value.second,
        value.minute,
        value.hour,
        value.isoweekday(),
        value.day,
        value.month,
        value.year - 2000,
    )
    return bytes(_to_bcd_byte(f) if bcd else f for f in fields)


@dataclass(frozen=True, slots=True)
class RecordTime:
    """Time stamp of journal/daily/profile records and archive searches (§4, [one source]).

    Fields hold the raw wire bytes (binary or BCD is not known until interpreted), so a record
    decodes and re-encodes losslessly. ``year`` is the two-digit year (year - 2000).
    """

    minute: int
    hour: int
    day: int
    month: int
    year: int
    second: int = 0

    @classmethod
    def decode(cls, raw: bytes, *, seconds: bool) -> RecordTime:
        """From ``sec min hour day mon yy`` (``seconds``) or ``min hour day mon yy``."""
        if seconds:
            sec, minute, hour, day, month, year = raw[:6]
        else:
            sec = 0
            minute, hour, day, month, year = raw[:5]
        return cls(minute, hour, day, month, year, sec)

    def encode(self, *, seconds: bool) -> bytes:
        """To 6 bytes (with seconds) or 5 bytes."""
        fields: tuple[int, ...] = (self.minute, self.hour, self.day, self.month, self.year)
        if seconds:
            fields = (self.second, *fields)
        if any(not 0 <= f <= 0xFF for f in fields):
            raise CodecUsageError(f"record time fields must be bytes: {self}")
        return bytes(fields)

    def to_datetime(self, *, bcd: bool = False) -> datetime:
        """Interpret the bytes; raises ``ValueDecodeError`` for an impossible time."""
        f = (_field(b, bcd) for b in (self.year, self.month, self.day, self.hour, self.minute))
        year, month, day, hour, minute = f
        return _make_datetime(year, month, day, hour, minute, _field(self.second, bcd))

    @classmethod
    def from_datetime(cls, value: datetime, *, bcd: bool = False) -> RecordTime:
        """The record time of ``value`` (2000..2099)."""
        if not 2000 <= value.year <= 2099:
            raise CodecUsageError(f"meter years are 2000..2099, got {value.year}")

        def conv(v: int) -> int:
            return _to_bcd_byte(v) if bcd else v

        return cls(
            conv(value.minute),
            conv(value.hour),
            conv(value.day),
            conv(value.month),
            conv(value.year - 2000),
            conv(value.second),
        )


# --------------------------------------------------------------------------- registers
def decode_value(fmt: RegisterFormat, raw: bytes, *, bcd_time: bool = False) -> Value:
    """Decode a register value (``ReadReply.value``) of format ``fmt`` (§5).

    ``bcd_time`` chooses BCD for the date/time record ([open] §6). Wrong sizes, bad BCD digits,
    impossible dates and non-ASCII text raise ``ValueDecodeError``.
    """
    raw = bytes(raw)
    if fmt in _INTEGERS:
        size, signed = _INTEGERS[fmt]
        if len(raw) != size:
            raise ValueDecodeError(f"{fmt.value} needs {size} byte(s), got {len(raw)}")
        return int.from_bytes(raw, "little", signed=signed)
    if fmt is RegisterFormat.BCD32:
        return decode_bcd32(raw)
    if fmt is RegisterFormat.DATETIME:
        return decode_datetime(raw, bcd=bcd_time)
    try:
        return raw.rstrip(b"\x00").decode("ascii")
    except UnicodeDecodeError as exc:
        raise ValueDecodeError(f"text value is not ASCII: {raw.hex(' ').upper()}") from exc


def encode_value(fmt: RegisterFormat, value: Value, *, bcd_time: bool = False) -> bytes:
    """Encode a raw value as the meter sends it (the simulator uses this).

    Integers and BCD32 take ``int``, ASCII takes ``str``, the date/time record takes ``datetime``.
    A value of the wrong type or out of range raises ``CodecUsageError``.
    """
    if fmt in _INTEGERS or fmt is RegisterFormat.BCD32:
        if not isinstance(value, int) or isinstance(value, bool):
            raise CodecUsageError(f"{fmt.value} needs an int, got {type(value).__name__}")
        if fmt is RegisterFormat.BCD32:
            return encode_bcd32(value)
        size, signed = _INTEGERS[fmt]
        try:
            return value.to_bytes(size, "little", signed=signed)
        except OverflowError as exc:
            raise CodecUsageError(f"{value} does not fit in {fmt.value}") from exc
    if fmt is RegisterFormat.DATETIME:
        if not isinstance(value, datetime):
            raise CodecUsageError(f"datetime needs a datetime, got {type(value).__name__}")
        return encode_datetime(value, bcd=bcd_time)
    if not isinstance(value, str) or not value.isascii() or len(value) > 0xFF:
        raise CodecUsageError("ascii needs a str of at most 255 ASCII characters")
    return value.encode("ascii")
