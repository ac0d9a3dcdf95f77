"""CRC-16/MODBUS of Milur frames (protocol notes §2), computed by anycrc.

The CRC covers ADDR..DATA and is sent low byte first. Check value: the CRC of
``FF 01 76`` is 0x86C1, so the frame is ``FF 01 76 C1 86``.
"""

from __future__ import annotations

import anycrc

_MODEL = anycrc.Model("CRC16-MODBUS")


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (reflected poly 0xA001, init 0xFFFF, no final xor) of ``data``."""
    return int(_MODEL.calc(bytes(data)))


def crc16_update(crc: int, data: bytes) -> int:
    """Continue a CRC-16/MODBUS over more ``data`` (start from 0xFFFF)."""
    return int(_MODEL.calc(bytes(data), crc))


def with_crc(data: bytes) -> bytes:
    """``data`` followed by its CRC, low byte first."""
    return bytes(data) + crc16(data).to_bytes(2, "little")


def crc_ok(frame: bytes) -> bool:
    """True when the last two bytes of ``frame`` are the CRC of the bytes before them."""
    if len(frame) < 3:
        return False
    return crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")
