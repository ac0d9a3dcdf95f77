"""Requests, replies and addresses (§2–§4, §7): golden encodings and one-shot decoding."""

from __future__ import annotations

from datetime import datetime

import pytest

from bridge.config.model import AddressWidth
from bridge.protocol.milur import (
    BROADCAST,
    Address,
    ArchiveSearchReply,
    CloseSessionReply,
    CodecUsageError,
    DailyRecordReply,
    ErrorCode,
    ErrorReply,
    FrameError,
    Func,
    JournalCountReply,
    JournalRecordReply,
    NetworkAddressReply,
    ProfileRecordReply,
    RecordTime,
    ValueDecodeError,
    WriteReply,
    archive_search_request,
    close_session_request,
    daily_record_request,
    decode_reply,
    decode_request,
    journal_count_request,
    journal_record_request,
    network_address_request,
    open_session_request,
    profile_record_request,
    read_request,
    write_request,
)

from .golden import ADDR, CLOSE_SESSION_HEX, EXCHANGES, h


@pytest.mark.parametrize("exchange", EXCHANGES, ids=lambda e: e.name)
def test_builders_encode_the_golden_request(exchange) -> None:
    assert exchange.request.encode() == exchange.request_bytes


@pytest.mark.parametrize("exchange", EXCHANGES, ids=lambda e: e.name)
def test_replies_encode_to_the_golden_reply(exchange) -> None:
    assert exchange.reply.encode() == exchange.reply_bytes


@pytest.mark.parametrize("exchange", EXCHANGES, ids=lambda e: e.name)
def test_golden_reply_decodes(exchange) -> None:
    assert decode_reply(exchange.reply_bytes, exchange.request) == exchange.reply


@pytest.mark.parametrize("exchange", EXCHANGES, ids=lambda e: e.name)
def test_golden_request_decodes_on_the_meter_side(exchange) -> None:
    assert decode_request(exchange.request_bytes) == exchange.request


def test_close_session_request() -> None:
    assert close_session_request(ADDR).encode() == h(CLOSE_SESSION_HEX)
    assert CloseSessionReply(ADDR).encode() == h("FF 09 01") + h(CLOSE_SESSION_HEX)[-2:]


def test_error_reply_meaning_and_func() -> None:
    reply = decode_reply(h("FF 81 08 00 67 D8"), read_request(ADDR, 102))
    assert isinstance(reply, ErrorReply)
    assert reply.code is ErrorCode.SESSION_CLOSED
    assert reply.func == 0x81 and reply.request_func == Func.READ
    assert reply.meaning == "session closed (reopen)"
    assert ErrorCode.PASSWORD_INCORRECT.meaning == "password incorrect"
    assert all(code.meaning for code in ErrorCode)


def test_unknown_error_code_is_kept_not_raised() -> None:
    frame = ErrorReply(ADDR, Func.READ, 0x42).encode()
    reply = decode_reply(frame, read_request(ADDR, 1))
    assert isinstance(reply, ErrorReply) and reply.code == 0x42
    assert reply.meaning == "unknown error 0x42"


def test_password_never_in_repr() -> None:
    request = open_session_request(ADDR, 1, b"\x12\x34\x56\x78\x9a\xbc")
    for text in (repr(request), str(request)):
        assert "12" not in text.replace("255/1", "") and "9a" not in text and "bc" not in text
        assert "******" in text


def test_address_forms() -> None:
    assert Address.for_meter(255, AddressWidth.AUTO) == Address(255, 1)
    assert Address.for_meter(256, "auto") == Address(256, 4)
    assert Address.for_meter(5, AddressWidth.FOUR).encode() == h("05 00 00 00")
    assert Address.for_meter(49932, 4).encode() == h("0C C3 00 00")
    assert BROADCAST.encode() == h("FF FF FF FF")
    with pytest.raises(CodecUsageError):
        Address.for_meter(300, AddressWidth.ONE)
    with pytest.raises(CodecUsageError):
        Address(1, 2)
    with pytest.raises(CodecUsageError):
        Address.for_meter(1, "8")


@pytest.mark.parametrize(
    "build",
    [
        lambda: read_request(ADDR, 256),
        lambda: write_request(ADDR, 84, b""),
        lambda: open_session_request(ADDR, 1, b"\xff" * 5),
        lambda: open_session_request(ADDR, 256, b"\xff" * 6),
        lambda: journal_record_request(ADDR, 1, 70000),
        lambda: archive_search_request(ADDR, 1, datetime(1999, 1, 1), datetime(2001, 1, 1)),
    ],
)
def test_builders_reject_bad_arguments(build) -> None:
    with pytest.raises(CodecUsageError):
        build()


def test_request_layouts_of_section_4() -> None:
    assert write_request(ADDR, 0x54, b"\x01").encode()[:-2] == h("FF 02 54 01")
    assert journal_count_request(ADDR, 3).encode()[:-2] == h("FF 06 03")
    assert journal_record_request(ADDR, 3, 0x0102).encode()[:-2] == h("FF 0B 03 02 01")
    assert daily_record_request(ADDR, 5).encode()[:-2] == h("FF 0C 42 05 00")
    assert profile_record_request(ADDR, 0x1234).encode()[:-2] == h("FF 0D 10 34 12")
    assert network_address_request().encode()[:-2] == h("FF FF FF FF 0F")
    search = archive_search_request(ADDR, 0x10, datetime(2026, 11, 1, 0, 30), datetime(2026, 11, 2, 12, 0))
    assert search.encode()[:-2] == h("FF 10 10 1E 00 01 0B 1A 00 0C 02 0B 1A")
    bcd = archive_search_request(ADDR, 0x10, datetime(2026, 11, 1), datetime(2026, 11, 23), bcd=True)
    assert bcd.data[1:] == h("00 00 01 11 26 00 00 23 11 26")


def test_record_replies_and_their_interpretation() -> None:
    t = RecordTime(30, 12, 23, 11, 26, 5)
    journal = JournalRecordReply(ADDR, t, 0x81)
    assert journal.encode()[1:-2] == h("0B 05 1E 0C 17 0B 1A 81")
    assert decode_reply(journal.encode(), journal_record_request(ADDR, 1, 0)) == journal
    assert journal.time.to_datetime() == datetime(2026, 11, 23, 12, 30, 5)

    daily = DailyRecordReply(ADDR, t, (h("44 11 10 00"), h("00 00 00 00")))
    assert daily.energies() == (11144, 0)
    assert DailyRecordReply(ADDR, t, (h("4A 11 10 00"),)).encode()  # encodes; interpreting fails
    with pytest.raises(ValueDecodeError):
        DailyRecordReply(ADDR, t, (h("4A 11 10 00"),)).energies()

    profile = ProfileRecordReply(ADDR, RecordTime(30, 12, 23, 11, 26), h("10 00 20 00 01"))
    assert profile.words() == (16, 32)
    assert profile.encode()[1:7] == h("0D 1E 0C 17 0B 1A")

    search = ArchiveSearchReply(ADDR, 3, 10, 700)
    assert search.status_name == "earlier_found"
    assert ArchiveSearchReply(ADDR, 99, 0, 0).status_name == "unknown(99)"
    assert (
        decode_reply(
            search.encode(), archive_search_request(ADDR, 1, datetime(2026, 1, 1), datetime(2026, 1, 2))
        )
        == search
    )

    count = JournalCountReply(ADDR, 513)
    assert count.encode()[1:-2] == h("06 01 02")

    network = NetworkAddressReply(BROADCAST, 17)
    frame = network.encode()
    assert len(frame) == 12 and frame[9] == 17  # "reply byte 9 = 1-byte address" (§4)
    assert decode_reply(frame, network_address_request()) == network

    write = WriteReply(ADDR, 0x54, b"\x01")
    assert decode_reply(write.encode(), write_request(ADDR, 0x54, b"\x01")) == write


def test_decode_reply_rejects_what_is_not_one_reply() -> None:
    request = read_request(ADDR, 102)
    good = h("FF 01 66 03 6F 94 03 03 4E")
    for bad in (good[:-1], good[:-1] + b"\x00", good + b"\x00", b"\x00" + good, h("FE") + good[1:]):
        with pytest.raises(FrameError):
            decode_reply(bad, request)
    with pytest.raises(FrameError):
        decode_request(h("FF 01 66 C0 4B"))


def test_reply_size_hint_is_not_part_of_equality() -> None:
    assert daily_record_request(ADDR, 1, blocks=5) == daily_record_request(ADDR, 1)
    assert daily_record_request(ADDR, 1, blocks=5).reply_size == 26
    assert profile_record_request(ADDR, 1, value_bytes=8).reply_size == 13
