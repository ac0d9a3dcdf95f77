"""Value → register encoding: golden words per type and word order, saturation, round trips."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config.model import ModbusType, WordOrder
from bridge.publishers.modbus_values import ValueEncoder, decode_registers

F32, F64 = ModbusType.FLOAT32, ModbusType.FLOAT64
ABCD, CDAB, BADC, DCBA = WordOrder.ABCD, WordOrder.CDAB, WordOrder.BADC, WordOrder.DCBA


@pytest.mark.parametrize(
    ("data_type", "order", "value", "words"),
    [
        # 123.456 as float32 is 0x42F6E979
        (F32, ABCD, 123.456, (0x42F6, 0xE979)),
        (F32, CDAB, 123.456, (0xE979, 0x42F6)),
        (F32, BADC, 123.456, (0xF642, 0x79E9)),
        (F32, DCBA, 123.456, (0x79E9, 0xF642)),
        # -2.5 as float64 is 0xC004000000000000
        (F64, ABCD, -2.5, (0xC004, 0x0000, 0x0000, 0x0000)),
        (F64, CDAB, -2.5, (0x0000, 0x0000, 0x0000, 0xC004)),
        (F64, BADC, -2.5, (0x04C0, 0x0000, 0x0000, 0x0000)),
        (F64, DCBA, -2.5, (0x0000, 0x0000, 0x0000, 0x04C0)),
        (ModbusType.UINT32, ABCD, 70000, (0x0001, 0x1170)),
        (ModbusType.UINT32, CDAB, 70000, (0x1170, 0x0001)),
        (ModbusType.INT32, DCBA, -2, (0xFEFF, 0xFFFF)),
        # 16-bit types are plain big-endian registers whatever the word order
        (ModbusType.INT16, DCBA, -2, (0xFFFE,)),
        (ModbusType.UINT16, BADC, 0x1234, (0x1234,)),
    ],
)
def test_golden_words(data_type, order, value, words):
    assert ValueEncoder(data_type, order).encode(value).registers == words


def test_integer_scale_rounds():
    encoder = ValueEncoder(ModbusType.INT16, ABCD, scale=10.0)
    assert encoder.encode(230.46).registers == (2305,)
    assert encoder.encode(-1.24).registers == (0xFFF4,)  # -12
    assert ValueEncoder(ModbusType.UINT32, CDAB, 1000.0).encode(50.0001).registers == (50000, 0)


@pytest.mark.parametrize(
    ("data_type", "value", "words"),
    [
        (ModbusType.INT16, 40000, (0x7FFF,)),
        (ModbusType.INT16, -40000, (0x8000,)),
        (ModbusType.UINT16, -1, (0,)),
        (ModbusType.UINT32, 2.0**33, (0xFFFF, 0xFFFF)),
        (ModbusType.INT32, math.inf, (0x7FFF, 0xFFFF)),
        (F32, 1e39, (0x7F80, 0x0000)),  # +inf
    ],
)
def test_values_out_of_range_saturate_and_say_so(data_type, value, words):
    encoded = ValueEncoder(data_type, ABCD).encode(value)
    assert encoded.registers == words
    assert encoded.clipped


def test_missing_value_is_nan_for_floats_and_zero_for_integers():
    nan32 = ValueEncoder(F32, ABCD).encode(None).registers
    assert math.isnan(struct.unpack(">f", struct.pack(">2H", *nan32))[0])
    assert ValueEncoder(ModbusType.INT32, ABCD).encode(None).registers == (0, 0)
    assert not ValueEncoder(ModbusType.INT32, ABCD).encode(None).clipped
    text = ValueEncoder(F32, ABCD).encode("12345")
    assert text.clipped and math.isnan(decode_registers(text.registers, F32, ABCD))


def test_bool_and_int_values():
    assert ValueEncoder(ModbusType.UINT16, ABCD).encode(True).registers == (1,)
    assert ValueEncoder(F64, ABCD).encode(3).registers == (0x4008, 0, 0, 0)


@given(st.floats(allow_nan=False), st.sampled_from(list(WordOrder)))
def test_float64_round_trip(value, order):
    registers = ValueEncoder(F64, order).encode(value).registers
    assert decode_registers(registers, F64, order) == value


@given(st.integers(-(2**31), 2**31 - 1), st.sampled_from(list(WordOrder)))
def test_int32_round_trip(value, order):
    registers = ValueEncoder(ModbusType.INT32, order).encode(value).registers
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert decode_registers(registers, ModbusType.INT32, order) == value
