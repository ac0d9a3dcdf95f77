"""FrameDecoder (master side): framing §2 replies out of a noisy stream, resynchronising (§7)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from bridge.protocol.milur import (
    Address,
    CodecUsageError,
    DailyRecordReply,
    FrameDecoder,
    ProfileRecordReply,
    ReadReply,
    RecordTime,
    Reply,
    Request,
    SessionReply,
    daily_record_request,
    open_session_request,
    profile_record_request,
    read_request,
)
from bridge.protocol.milur.codec import MAX_BUFFER

from .golden import ADDR, ADDR4, DEFAULT_PASSWORD, EXCHANGES, Exchange, h

IDS = [e.name for e in EXCHANGES]
GARBAGE = [
    h("00"),
    h("0A 0D"),  # GSM wrapper (§7)
    h("00 00"),  # a 2-byte keep-alive
    h("12 34 56 78 9A BC DE F0 13 37"),
    h("FF"),  # a lone address byte
    h("FF 01"),  # looks like a header, is not
    h("FF FF FF FF FF"),
]


def run(decoder: FrameDecoder, chunks: Iterable[bytes]) -> list[Reply]:
    """Feed chunk by chunk, calling next_frame() after each, as a link does."""
    replies = []
    for chunk in chunks:
        decoder.feed(chunk)
        reply = decoder.next_frame()
        if reply is not None:
            replies.append(reply)
    return replies


def decoder_for(request: Request) -> FrameDecoder:
    decoder = FrameDecoder()
    decoder.expect(request)
    return decoder


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


@pytest.mark.parametrize("exchange", EXCHANGES, ids=IDS)
def test_whole(exchange: Exchange) -> None:
    decoder = decoder_for(exchange.request)
    assert run(decoder, [exchange.reply_bytes]) == [exchange.reply]
    assert decoder.stats.discarded_bytes == 0 and decoder.buffered == 0


@pytest.mark.parametrize("exchange", EXCHANGES, ids=IDS)
def test_split_in_two_at_every_point(exchange: Exchange) -> None:
    frame = exchange.reply_bytes
    for cut in range(1, len(frame)):
        decoder = decoder_for(exchange.request)
        assert run(decoder, [frame[:cut], frame[cut:]]) == [exchange.reply], cut


@pytest.mark.parametrize("exchange", EXCHANGES, ids=IDS)
def test_byte_by_byte(exchange: Exchange) -> None:
    decoder = decoder_for(exchange.request)
    frame = exchange.reply_bytes
    replies = []
    for i, chunk in enumerate(bytewise(frame)):
        decoder.feed(chunk)
        reply = decoder.next_frame()
        assert (reply is None) == (i < len(frame) - 1)
        replies += [reply] if reply else []
    assert replies == [exchange.reply]


@pytest.mark.parametrize("exchange", EXCHANGES, ids=IDS)
@pytest.mark.parametrize("garbage", GARBAGE, ids=lambda g: g.hex())
@pytest.mark.parametrize("bytewise_feed", [False, True], ids=["whole", "bytes"])
def test_garbage_before_and_after(exchange: Exchange, garbage: bytes, bytewise_feed: bool) -> None:
    stream = garbage + exchange.reply_bytes + garbage
    decoder = decoder_for(exchange.request)
    chunks = bytewise(stream) if bytewise_feed else [stream]
    assert run(decoder, chunks) == [exchange.reply]
    assert decoder.stats.discarded_bytes == len(garbage)
    assert decoder.buffered == len(garbage)  # the trailing noise waits for the next request


@pytest.mark.parametrize("exchange", EXCHANGES, ids=IDS)
def test_bad_crc_then_good_frame(exchange: Exchange) -> None:
    good = exchange.reply_bytes
    bad = good[:-1] + bytes([good[-1] ^ 0x55])
    for chunks in ([bad + good], bytewise(bad + good), [bad, good]):
        decoder = decoder_for(exchange.request)
        assert run(decoder, chunks) == [exchange.reply]
        assert decoder.stats.crc_errors >= 1
        assert decoder.buffered == 0


@pytest.mark.parametrize("exchange", EXCHANGES[:5], ids=IDS[:5])
def test_corrupted_payload_byte_then_good_frame(exchange: Exchange) -> None:
    good = exchange.reply_bytes
    bad = bytearray(good)
    bad[-3] ^= 0x01
    decoder = decoder_for(exchange.request)
    assert run(decoder, bytewise(bytes(bad) + good)) == [exchange.reply]
    assert decoder.stats.crc_errors >= 1


def test_frame_for_another_address_is_skipped_and_counted() -> None:
    request = read_request(ADDR, 102)
    other = ReadReply(Address(0x10), 102, h("01 02 03")).encode()
    ours = ReadReply(ADDR, 102, h("6F 94 03"))
    for chunks in ([other + ours.encode()], bytewise(other + ours.encode())):
        decoder = decoder_for(request)
        assert run(decoder, chunks) == [ours]
        assert decoder.stats.foreign_frames == 1
        assert decoder.stats.crc_errors == 0


def test_four_byte_address_ignores_other_meters() -> None:
    request = read_request(ADDR4, 118)
    other = ReadReply(Address(49933, 4), 118, h("44 11 10 00")).encode()
    ours = ReadReply(ADDR4, 118, h("44 11 10 00"))
    decoder = decoder_for(request)
    assert run(decoder, bytewise(other + h("0A 0D") + ours.encode())) == [ours]
    assert decoder.stats.foreign_frames == 1


def test_stale_reply_for_another_register_is_skipped() -> None:
    request = read_request(ADDR, 102)
    stale = ReadReply(ADDR, 101, h("01 02 03")).encode()
    ours = ReadReply(ADDR, 102, h("6F 94 03"))
    decoder = decoder_for(request)
    assert run(decoder, bytewise(stale + ours.encode())) == [ours]
    assert decoder.stats.foreign_frames == 1


@pytest.mark.parametrize("exchange", EXCHANGES, ids=IDS)
def test_echo_of_our_request_is_skipped(exchange: Exchange) -> None:
    decoder = decoder_for(exchange.request)
    stream = exchange.request_bytes + exchange.reply_bytes
    assert run(decoder, bytewise(stream)) == [exchange.reply]
    assert decoder.stats.foreign_frames == 1
    assert decoder.stats.crc_errors == 0


def test_truncated_frame_waits_then_completes() -> None:
    exchange = EXCHANGES[3]
    decoder = decoder_for(exchange.request)
    frame = exchange.reply_bytes
    assert run(decoder, [frame[:6]]) == []
    assert decoder.buffered == 6
    assert run(decoder, [frame[6:]]) == [exchange.reply]


def test_truncated_frame_followed_by_a_whole_one() -> None:
    exchange = EXCHANGES[1]
    frame = exchange.reply_bytes
    for cut in range(1, len(frame)):
        decoder = decoder_for(exchange.request)
        assert run(decoder, bytewise(frame[:cut] + frame)) == [exchange.reply], cut
        assert decoder.buffered == 0


def test_keep_alives_between_every_byte_are_not_enough_to_confuse_it() -> None:
    exchange = EXCHANGES[0]
    decoder = decoder_for(exchange.request)
    noisy = h("0A 0D 00 00 0A 0D") + exchange.reply_bytes
    assert run(decoder, bytewise(noisy)) == [exchange.reply]


def test_next_frame_before_expect_is_a_usage_error() -> None:
    decoder = FrameDecoder()
    decoder.feed(EXCHANGES[0].reply_bytes)
    with pytest.raises(CodecUsageError):
        decoder.next_frame()


def test_one_reply_per_request() -> None:
    exchange = EXCHANGES[1]
    decoder = decoder_for(exchange.request)
    decoder.feed(exchange.reply_bytes * 2)
    assert decoder.next_frame() == exchange.reply
    assert decoder.in_flight is None
    assert decoder.next_frame() is None  # answered: nothing more until the next expect()
    assert decoder.buffered == len(exchange.reply_bytes)
    decoder.expect(exchange.request)
    assert decoder.next_frame() == exchange.reply
    assert decoder.stats.frames == 2


def test_clear_drops_and_counts() -> None:
    decoder = decoder_for(EXCHANGES[1].request)
    decoder.feed(h("FF 01 66 03"))
    assert decoder.next_frame() is None
    assert decoder.clear() == 4
    assert decoder.buffered == 0 and decoder.stats.discarded_bytes == 4


def test_buffer_is_bounded() -> None:
    decoder = decoder_for(EXCHANGES[1].request)
    decoder.feed(b"\x00" * (3 * MAX_BUFFER))
    assert decoder.buffered <= MAX_BUFFER
    assert decoder.next_frame() is None
    assert decoder.buffered <= 1  # a lone byte may still start a frame
    assert decoder.stats.discarded_bytes + decoder.buffered == 3 * MAX_BUFFER


def test_session_reply_after_reply_with_bad_crc_and_partial_echo() -> None:
    request = open_session_request(ADDR, 1, DEFAULT_PASSWORD)
    echo = request.encode()
    decoder = decoder_for(request)
    assert run(decoder, bytewise(echo[:7])) == []
    assert decoder.stats.crc_errors == 0  # a partial echo is not a corrupt reply
    assert run(decoder, bytewise(echo[7:] + h("FF 08 01 87 F0"))) == [SessionReply(ADDR, 1)]


DAILY = DailyRecordReply(
    ADDR,
    RecordTime(0, 0, 23, 11, 26, 1),
    tuple(h(x) for x in ("44 11 10 00", "01 00 00 00", "02 00 00 00", "00 00 00 00")),
)
PROFILE = ProfileRecordReply(ADDR, RecordTime(30, 12, 23, 11, 26), h("10 00 20 00 00 00 05 00"))


@pytest.mark.parametrize(
    ("request_", "reply"),
    [
        (daily_record_request(ADDR, 3), DAILY),  # size found by CRC
        (daily_record_request(ADDR, 3, blocks=4), DAILY),
        (profile_record_request(ADDR, 7), PROFILE),
        (profile_record_request(ADDR, 7, value_bytes=8), PROFILE),
    ],
)
def test_record_replies_with_and_without_size_hint(request_: Request, reply: Reply) -> None:
    for chunks in ([reply.encode()], bytewise(h("0A 0D") + reply.encode())):
        decoder = decoder_for(request_)
        assert run(decoder, chunks) == [reply]


def test_wrong_size_hint_means_no_reply_not_a_crash() -> None:
    decoder = decoder_for(daily_record_request(ADDR, 3, blocks=5))
    # (not 00 padding: a valid frame followed by 00 00 has a valid CRC again, zero residue)
    assert run(decoder, [DAILY.encode() + b"\xaa" * 4]) == []
    assert decoder.stats.crc_errors == 1
