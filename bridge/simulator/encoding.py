"""The simulated meter's own value and frame encoders (the meter's "firmware" side).

They are written independently of the bridge's codec on purpose: a bug in the codec then shows up
as a disagreement with the simulator instead of being mirrored by it. Only the CRC is shared (a
library computes it, ``bridge.protocol.milur.crc``).
"""

from __future__ import annotations

import math
from datetime import datetime

from bridge.config.model import RegisterFormat
from bridge.protocol.milur.crc import with_crc

_INT_FORMATS: dict[RegisterFormat, tuple[int, bool]] = {
    RegisterFormat.U8: (1, False),
    RegisterFormat.U16: (2, False),
    RegisterFormat.S16: (2, True),
    RegisterFormat.U24: (3, False),
    RegisterFormat.S24: (3, True),
    RegisterFormat.U32: (4, False),
    RegisterFormat.S32: (4, True),
}


def address_bytes(value: int, width: int) -> bytes:
    """A meter address on the wire: 1 byte, or 4 bytes little-endian (protocol notes §2)."""
    return value.to_bytes(width, "little")


def frame(address: int, width: int, func: int, data: bytes) -> bytes:
    """A complete reply frame ``ADDR FUNC DATA CRC``."""
    return with_crc(address_bytes(address, width) + bytes([func]) + data)


def error_frame(address: int, width: int, func: int, code: int) -> bytes:
    """An error reply ``ADDR FUNC|80 CODE 00 CRC`` (protocol notes §2, §4)."""
    return frame(address, width, func | 0x80, bytes([code, 0]))


def milur_bcd32(raw: int) -> bytes:
    """Milur BCD32 (protocol notes §5): digit pairs least significant first, tens in the low nibble."""
    raw = max(0, min(raw, 99_999_999))
    digits = f"{raw:08d}"
    out = bytearray()
    for i in range(6, -2, -2):  # pairs from the least significant end
        tens, units = int(digits[i]), int(digits[i + 1])
        out.append((units << 4) | tens)
    return bytes(out)


def clamp_int(raw: int, size: int, signed: bool) -> int:
    """Clamp to what fits in ``size`` bytes (a real meter saturates rather than wraps)."""
    bits = size * 8
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return max(low, min(high, raw))


def encode_number(fmt: RegisterFormat, value: float, scale: float) -> bytes:
    """An engineering value as the raw bytes of a numeric register (value / scale, rounded)."""
    raw = round(value / scale) if scale else round(value)
    if fmt is RegisterFormat.BCD32:
        return milur_bcd32(raw)
    size, signed = _INT_FORMATS[fmt]
    return clamp_int(raw, size, signed).to_bytes(size, "little", signed=signed)


def energy_raw(value: float, scale: float) -> int:
    """Energy counts are truncated, never rounded up: a meter shows only what it has measured."""
    return math.floor(value / scale + 1e-9)


def encode_text(text: str, length: int | None = None) -> bytes:
    """ASCII text, NUL-padded to ``length`` when given."""
    raw = text.encode("ascii")
    return raw if length is None else raw[:length].ljust(length, b"\0")


def _bcd_byte(n: int) -> int:
    return ((n // 10) << 4) | (n % 10)


def encode_clock(moment: datetime, bcd: bool) -> bytes:
    """Register 14: ``sec min hour weekday day month year-2000`` (protocol notes §6).

    Binary or BCD is [open] (§6); BCD here is the usual RTC form (tens in the high nibble). The
    fourth byte is the ISO weekday (1 = Monday).
    """
    fields = (
        moment.second,
        moment.minute,
        moment.hour,
        moment.isoweekday(),
        moment.day,
        moment.month,
        moment.year - 2000,
    )
    return bytes(_bcd_byte(f) if bcd else f for f in fields)
