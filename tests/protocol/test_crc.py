"""CRC-16/MODBUS (§2) against an independent bitwise reference and the §9 frames."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.protocol.milur import crc16, crc_ok, with_crc

from .golden import CLOSE_SESSION_HEX, EXCHANGES, h


def reference_crc(data: bytes) -> int:
    """Bitwise CRC-16/MODBUS: reflected poly 0xA001, init 0xFFFF, no final xor (test oracle only)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def test_check_value_of_section_2() -> None:
    assert crc16(h("FF 01 76")) == 0x86C1
    assert with_crc(h("FF 01 76")) == h("FF 01 76 C1 86")


FRAMES = [e.request_hex for e in EXCHANGES] + [e.reply_hex for e in EXCHANGES] + [CLOSE_SESSION_HEX]


@pytest.mark.parametrize("frame_hex", FRAMES)
def test_golden_frames_carry_the_reference_crc_low_byte_first(frame_hex: str) -> None:
    frame = h(frame_hex)
    assert reference_crc(frame[:-2]).to_bytes(2, "little") == frame[-2:]
    assert crc_ok(frame)


@pytest.mark.parametrize("frame_hex", FRAMES)
def test_any_single_bit_flip_is_detected(frame_hex: str) -> None:
    frame = bytearray(h(frame_hex))
    for i in range(len(frame) * 8):
        flipped = bytearray(frame)
        flipped[i // 8] ^= 1 << (i % 8)
        assert not crc_ok(bytes(flipped))


@given(st.binary(max_size=300))
def test_crc16_matches_reference(data: bytes) -> None:
    assert crc16(data) == reference_crc(data)
    assert crc_ok(with_crc(data)) == (len(data) >= 1)


def test_too_short_frames_are_not_ok() -> None:
    assert not crc_ok(b"")
    assert not crc_ok(b"\xff\xff")
