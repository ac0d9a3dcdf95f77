"""Engineering values → 16-bit Modbus registers, per data type, scale and word order.

Word orders name the bytes of a 32-bit value ABCD from most to least significant; 64-bit values
follow the same rule per 16-bit word (docs/modbus.md):

- ``ABCD`` big-endian words and bytes (Modbus default);
- ``CDAB`` words swapped (the last word first), bytes big-endian inside each word;
- ``BADC`` words in order, the two bytes of each word swapped;
- ``DCBA`` fully little-endian.

16-bit types are always served as a plain big-endian register: the word order does not apply.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from bridge.config.model import ModbusType, WordOrder
from bridge.tags.model import Scalar

_STRUCT = {
    ModbusType.INT16: struct.Struct(">h"),
    ModbusType.UINT16: struct.Struct(">H"),
    ModbusType.INT32: struct.Struct(">i"),
    ModbusType.UINT32: struct.Struct(">I"),
    ModbusType.FLOAT32: struct.Struct(">f"),
    ModbusType.FLOAT64: struct.Struct(">d"),
}
_INT_RANGE = {
    ModbusType.INT16: (-0x8000, 0x7FFF),
    ModbusType.UINT16: (0, 0xFFFF),
    ModbusType.INT32: (-0x8000_0000, 0x7FFF_FFFF),
    ModbusType.UINT32: (0, 0xFFFF_FFFF),
}
_FLOAT32_MAX = 3.4028234663852886e38


def order_bytes(big_endian: bytes, order: WordOrder) -> bytes:
    """Rearrange a big-endian value of one or more 16-bit words into ``order``."""
    if len(big_endian) <= 2 or order is WordOrder.ABCD:
        return big_endian
    if order is WordOrder.DCBA:
        return big_endian[::-1]
    words = [big_endian[i : i + 2] for i in range(0, len(big_endian), 2)]
    if order is WordOrder.CDAB:
        return b"".join(reversed(words))
    return b"".join(w[::-1] for w in words)  # BADC


@dataclass(frozen=True, slots=True)
class Encoded:
    """Registers for one value; ``clipped`` when the value did not fit and was saturated."""

    registers: tuple[int, ...]
    clipped: bool = False


class ValueEncoder:
    """Encodes engineering values of one placement (type, word order, scale)."""

    __slots__ = ("_data_type", "_order", "_scale", "_struct", "_words_fmt")

    def __init__(self, data_type: ModbusType, order: WordOrder, scale: float = 1.0) -> None:
        self._data_type = data_type
        self._order = order
        self._scale = scale
        self._struct = _STRUCT[data_type]
        self._words_fmt = struct.Struct(f">{data_type.words}H")

    def encode(self, value: Scalar) -> Encoded:
        """Registers for ``value``; None (no value yet) gives NaN for floats and 0 for integers.

        Text is never encoded (text tags are not served, see ``bridge/config/modbus_map.py``);
        a text value that slips through is treated like a missing value and marked clipped.
        """
        clipped = isinstance(value, str)
        number = float(value) if value is not None and not clipped else math.nan
        if self._data_type in _INT_RANGE:
            packed, clipped_int = self._pack_int(number)
            clipped = clipped or clipped_int
        else:
            packed, clipped_float = self._pack_float(number)
            clipped = clipped or clipped_float
        ordered = order_bytes(packed, self._order)
        return Encoded(self._words_fmt.unpack(ordered), clipped)

    def _pack_int(self, number: float) -> tuple[bytes, bool]:
        low, high = _INT_RANGE[self._data_type]
        if math.isnan(number):
            return self._struct.pack(0), False
        scaled = number * self._scale
        if scaled < low or scaled > high:
            return self._struct.pack(low if scaled < low else high), True
        return self._struct.pack(min(max(round(scaled), low), high)), False

    def _pack_float(self, number: float) -> tuple[bytes, bool]:
        if self._data_type is ModbusType.FLOAT32 and math.isfinite(number):
            if abs(number) > _FLOAT32_MAX:
                return self._struct.pack(math.copysign(math.inf, number)), True
        return self._struct.pack(number), False


def decode_registers(registers: tuple[int, ...] | list[int], data_type: ModbusType,
                     order: WordOrder, scale: float = 1.0) -> float:
    """Inverse of ``ValueEncoder.encode`` (used by tests and the bench to check what is served)."""
    raw = struct.pack(f">{len(registers)}H", *registers)
    # every order is its own inverse: swapping words or bytes twice restores the value
    value = _STRUCT[data_type].unpack(order_bytes(raw, order))[0]
    if data_type in _INT_RANGE:
        return float(value) / scale
    return float(value)
