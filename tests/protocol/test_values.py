"""Value encodings of §5 and the date/time records of §4/§6."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config.model import RegisterFormat as F
from bridge.protocol.milur import (
    CodecUsageError,
    RecordTime,
    ValueDecodeError,
    decode_bcd32,
    decode_value,
    encode_bcd32,
    encode_value,
    value_size,
)

from .golden import EXCHANGES, h

READS = [e for e in EXCHANGES if e.fmt is not None]


@pytest.mark.parametrize("exchange", READS, ids=lambda e: e.name)
def test_golden_values(exchange) -> None:
    raw = exchange.reply.value
    assert decode_value(exchange.fmt, raw) == exchange.value
    assert encode_value(exchange.fmt, exchange.value) == raw


@pytest.mark.parametrize(
    ("fmt", "raw", "value"),
    [
        (F.U8, "FE", 254),
        (F.U16, "A0 C3", 50080),
        (F.S16, "18 FC", -1000),
        (F.S16, "E8 03", 1000),
        (F.U24, "6F 94 03", 234607),
        (F.S24, "F0 D8 FF", -10000),
        (F.S24, "FF FF 7F", 0x7FFFFF),
        (F.U32, "01 00 00 80", 0x80000001),
        (F.S32, "FF FF FF FF", -1),
        (F.S32, "00 00 00 80", -(2**31)),
        (F.BCD32, "44 11 10 00", 11144),
        (F.BCD32, "99 99 99 99", 9999_9999),
        (F.BCD32, "90 90 90 90", 9090909),
        (F.BCD32, "00 00 00 00", 0),
        (F.BCD32, "21 43 65 87", 78563412),
        (F.ASCII, "31 30 37 00 00", "107"),
        (F.ASCII, "", ""),
    ],
)
def test_known_vectors(fmt: F, raw: str, value: object) -> None:
    assert decode_value(fmt, h(raw)) == value
    if fmt is not F.ASCII or not h(raw).endswith(b"\0"):
        assert encode_value(fmt, value) == h(raw)


def test_bcd32_is_the_reversed_hex_string() -> None:
    # §5: write the 4 bytes as 8 hex characters and reverse the string
    assert int("44111000"[::-1]) == decode_bcd32(h("44 11 10 00")) == 11144


@pytest.mark.parametrize("raw", ["4A 11 10 00", "44 11 10 F0", "A0 00 00 00", "FF FF FF FF"])
def test_bcd32_rejects_nibbles_above_9(raw: str) -> None:
    with pytest.raises(ValueDecodeError, match="BCD32"):
        decode_value(F.BCD32, h(raw))


@pytest.mark.parametrize(
    ("fmt", "raw"),
    [
        (F.U8, ""),
        (F.U16, "01"),
        (F.U24, "01 02"),
        (F.S32, "01 02 03"),
        (F.BCD32, "44 11 10"),
        (F.U16, "01 02 03"),
        (F.DATETIME, "00 00 00 00 00 00"),
    ],
)
def test_wrong_sizes_raise(fmt: F, raw: str) -> None:
    with pytest.raises(ValueDecodeError):
        decode_value(fmt, h(raw))


def test_non_ascii_text_raises() -> None:
    with pytest.raises(ValueDecodeError):
        decode_value(F.ASCII, h("31 C0"))


def test_datetime_binary_and_bcd() -> None:
    # sec min hour ? day month year-2000 (§6)
    assert decode_value(F.DATETIME, h("3B 1E 17 01 1F 0C 19")) == datetime(2025, 12, 31, 23, 30, 59)
    bcd = decode_value(F.DATETIME, h("59 30 23 03 31 12 25"), bcd_time=True)
    assert bcd == datetime(2025, 12, 31, 23, 30, 59)
    dt = datetime(2026, 11, 23, 19, 5, 7)  # a Monday
    assert encode_value(F.DATETIME, dt) == h("07 05 13 01 17 0B 1A")
    assert encode_value(F.DATETIME, dt, bcd_time=True) == h("07 05 19 01 23 11 26")


@pytest.mark.parametrize(
    ("raw", "bcd"),
    [
        ("00 00 00 01 00 01 19", False),
        ("3C 00 00 01 01 01 19", False),
        ("00 00 00 01 1F 02 19", False),
        ("00 00 00 01 01 0D 19", False),
        ("5A 00 00 01 01 01 19", True),
        ("00 00 24 01 01 01 19", True),
    ],
)
def test_impossible_dates_raise(raw: str, bcd: bool) -> None:
    with pytest.raises(ValueDecodeError):
        decode_value(F.DATETIME, h(raw), bcd_time=bcd)


@pytest.mark.parametrize(
    ("fmt", "value"),
    [
        (F.U8, 256),
        (F.U8, -1),
        (F.S16, 40000),
        (F.U24, 1 << 24),
        (F.S24, -(1 << 23) - 1),
        (F.BCD32, 100_000_000),
        (F.BCD32, -1),
        (F.U16, "7"),
        (F.ASCII, 7),
        (F.ASCII, "ж"),
        (F.DATETIME, 5),
        (F.DATETIME, datetime(1999, 1, 1)),
        (F.U8, True),
    ],
)
def test_encoding_what_does_not_fit_is_a_usage_error(fmt: F, value: object) -> None:
    with pytest.raises(CodecUsageError):
        encode_value(fmt, value)  # type: ignore[arg-type]


def test_value_sizes() -> None:
    assert [value_size(f) for f in F] == [1, 2, 2, 3, 3, 4, 4, 4, None, 7]


def test_record_time_lossless_and_interpreted() -> None:
    t = RecordTime.decode(h("05 1E 0C 17 0B 1A"), seconds=True)
    assert t.encode(seconds=True) == h("05 1E 0C 17 0B 1A")
    assert t.to_datetime() == datetime(2026, 11, 23, 12, 30, 5)
    p = RecordTime.decode(h("30 12 23 11 26"), seconds=False)
    assert p.to_datetime(bcd=True) == datetime(2026, 11, 23, 12, 30)
    assert p.encode(seconds=False) == h("30 12 23 11 26")
    with pytest.raises(ValueDecodeError):
        RecordTime.decode(h("00 00 32 01 01"), seconds=False).to_datetime()


# ----------------------------------------------------------------------------- round trips
INT_RANGES = {
    F.U8: (0, 0xFF),
    F.U16: (0, 0xFFFF),
    F.S16: (-(2**15), 2**15 - 1),
    F.U24: (0, 2**24 - 1),
    F.S24: (-(2**23), 2**23 - 1),
    F.U32: (0, 2**32 - 1),
    F.S32: (-(2**31), 2**31 - 1),
    F.BCD32: (0, 99_999_999),
}


@given(st.data())
def test_integer_round_trip(data: st.DataObject) -> None:
    fmt = data.draw(st.sampled_from(list(INT_RANGES)))
    lo, hi = INT_RANGES[fmt]
    value = data.draw(st.integers(lo, hi))
    raw = encode_value(fmt, value)
    assert len(raw) == value_size(fmt)
    assert decode_value(fmt, raw) == value


@given(st.binary(min_size=4, max_size=4))
def test_bcd32_bytes_round_trip_or_raise(raw: bytes) -> None:
    digits_ok = all(n <= 9 for b in raw for n in (b >> 4, b & 0x0F))
    if digits_ok:
        assert encode_bcd32(decode_bcd32(raw)) == raw
        assert decode_bcd32(raw) == int(raw.hex()[::-1])
    else:
        with pytest.raises(ValueDecodeError):
            decode_bcd32(raw)


@given(st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=64))
def test_ascii_round_trip(text: str) -> None:
    assert decode_value(F.ASCII, encode_value(F.ASCII, text) + b"\0\0") == text


@given(st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31, 23, 59, 59)), st.booleans())
def test_datetime_round_trip(dt: datetime, bcd: bool) -> None:
    dt = dt.replace(microsecond=0)
    raw = encode_value(F.DATETIME, dt, bcd_time=bcd)
    assert decode_value(F.DATETIME, raw, bcd_time=bcd) == dt
    t = RecordTime.from_datetime(dt, bcd=bcd)
    assert RecordTime.decode(t.encode(seconds=True), seconds=True).to_datetime(bcd=bcd) == dt
