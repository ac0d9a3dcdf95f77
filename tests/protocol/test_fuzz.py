"""Hypothesis: encode→decode identity for requests, replies and values; random bytes never hurt."""

from __future__ import annotations

from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.protocol.milur import (
    BROADCAST,
    Address,
    ArchiveSearchReply,
    CloseSessionReply,
    DailyRecordReply,
    ErrorReply,
    FrameDecoder,
    Func,
    IdentifyReply,
    JournalCountReply,
    JournalRecordReply,
    NetworkAddressReply,
    ProfileRecordReply,
    ReadReply,
    RecordTime,
    Reply,
    Request,
    RequestDecoder,
    SessionReply,
    WriteReply,
    archive_search_request,
    close_session_request,
    daily_record_request,
    identify_request,
    journal_count_request,
    journal_record_request,
    network_address_request,
    open_session_request,
    profile_record_request,
    read_request,
    write_request,
)
from bridge.protocol.milur.codec import MAX_BUFFER
from bridge.protocol.milur.framing import MAX_HUNTED_DATA

from .golden import EXCHANGES

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
addresses = st.one_of(
    st.builds(Address, u8, st.just(1)), st.builds(Address, st.integers(0, 2**32 - 1), st.just(4))
)
times = st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31))
record_times = st.builds(RecordTime, u8, u8, u8, u8, u8, u8)
short_times = st.builds(RecordTime, u8, u8, u8, u8, u8)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    a = draw(addresses)
    return draw(
        st.one_of(
            st.builds(read_request, st.just(a), u8),
            st.builds(write_request, st.just(a), u8, st.binary(min_size=1, max_size=8)),
            st.builds(open_session_request, st.just(a), u8, st.binary(min_size=6, max_size=6)),
            st.just(close_session_request(a)),
            st.builds(journal_count_request, st.just(a), u8),
            st.builds(journal_record_request, st.just(a), u8, u16),
            st.builds(daily_record_request, st.just(a), u16),
            st.builds(profile_record_request, st.just(a), u16),
            st.just(network_address_request()),
            st.builds(archive_search_request, st.just(a), u8, times, times, bcd=st.booleans()),
            st.just(identify_request()),
        )
    )


@st.composite
def exchanges(draw: st.DrawFn) -> tuple[Request, Reply]:
    """A request and a reply to it."""
    a = draw(addresses)
    kind = draw(st.integers(0, 11))
    if kind == 0:
        reg = draw(u8)
        return read_request(a, reg), ReadReply(a, reg, draw(st.binary(max_size=255)))
    if kind == 1:
        reg, value = draw(u8), draw(st.binary(min_size=1, max_size=8))
        return write_request(a, reg, value), WriteReply(a, reg, value)
    if kind == 2:
        level = draw(u8)
        return open_session_request(a, level, b"\xff" * 6), SessionReply(a, level)
    if kind == 3:
        return close_session_request(a), CloseSessionReply(a)
    if kind == 4:
        return journal_count_request(a, 1), JournalCountReply(a, draw(u16))
    if kind == 5:
        return journal_record_request(a, 1, 0), JournalRecordReply(a, draw(record_times), draw(u8))
    if kind == 6:
        blocks = draw(st.lists(st.binary(min_size=4, max_size=4), max_size=10))
        reply = DailyRecordReply(a, draw(record_times), tuple(blocks))
        return daily_record_request(a, 0, blocks=len(blocks)), reply
    if kind == 7:
        values = draw(st.binary(max_size=40))
        reply = ProfileRecordReply(a, draw(short_times), values)
        return profile_record_request(a, 0, value_bytes=len(values)), reply
    if kind == 8:
        reply = ArchiveSearchReply(a, draw(u8), draw(u16), draw(u16))
        return archive_search_request(a, 1, datetime(2026, 1, 1), datetime(2026, 2, 1)), reply
    if kind == 9:
        info = draw(st.binary(min_size=4, max_size=4))
        return network_address_request(), NetworkAddressReply(BROADCAST, draw(u8), info)
    if kind == 10:
        imei = draw(st.text(st.characters(min_codepoint=0, max_codepoint=127), min_size=15, max_size=15))
        info = draw(st.binary(min_size=4, max_size=4))
        return identify_request(), IdentifyReply(BROADCAST, imei, info)
    func = draw(st.sampled_from([f for f in Func if f is not Func.IDENTIFY]))
    request = Request(a, func, b"\x01")
    return request, ErrorReply(a, func, draw(u8))


@given(requests())
def test_request_round_trip(request: Request) -> None:
    # the meter side knows its addresses (both widths can frame the same bytes) and the value
    # size of its writable registers (a CRC-hunted write may be cut short; test_request_decoder)
    sizes = {request.data[0]: len(request.data) - 1} if request.func is Func.WRITE else {}
    decoder = RequestDecoder(addresses={request.address, Address(0, 1)}, write_sizes=sizes)
    decoder.feed(request.encode())
    assert decoder.next_request() == request
    assert decoder.buffered == 0


@given(exchanges(), st.integers(1, 50))
def test_reply_round_trip(exchange: tuple[Request, Reply], chunk: int) -> None:
    request, reply = exchange
    frame = reply.encode()
    decoder = FrameDecoder()
    decoder.expect(request)
    got = []
    for i in range(0, len(frame), chunk):
        decoder.feed(frame[i : i + chunk])
        got += [r] if (r := decoder.next_frame()) else []
    assert got == [reply]
    assert decoder.buffered == 0 and decoder.stats.discarded_bytes == 0


@settings(max_examples=300)
@given(st.binary(max_size=600), st.sampled_from(EXCHANGES), st.integers(1, 64))
def test_random_bytes_never_raise_and_the_buffer_stays_bounded(noise: bytes, exchange, chunk: int) -> None:
    decoder = FrameDecoder()
    decoder.expect(exchange.request)
    for i in range(0, len(noise), chunk):
        decoder.feed(noise[i : i + chunk])
        assert decoder.buffered <= MAX_BUFFER
        reply = decoder.next_frame()
        if reply is None:
            # waiting: what is held back can be at most one frame still incomplete
            assert decoder.buffered <= 4 + 5 + 255
        else:
            decoder.expect(exchange.request)
    requests_ = RequestDecoder()
    for i in range(0, len(noise), chunk):
        requests_.feed(noise[i : i + chunk])
        while requests_.next_request() is not None:
            pass
        assert requests_.buffered <= 4 + 1 + 250 + 2


@settings(max_examples=300)
@given(st.binary(max_size=200), st.binary(max_size=50), st.sampled_from(EXCHANGES), st.integers(1, 16))
def test_a_reply_is_found_after_any_noise(before: bytes, after: bytes, exchange, chunk: int) -> None:
    stream = before + exchange.reply_bytes + after
    decoder = FrameDecoder()
    decoder.expect(exchange.request)
    got = []
    for i in range(0, len(stream), chunk):
        decoder.feed(stream[i : i + chunk])
        if not got and (reply := decoder.next_frame()) is not None:
            got.append(reply)
    assert got == [exchange.reply]


def test_hostile_streams_cost_bounded_work(monkeypatch) -> None:
    """Plausible headers everywhere, byte by byte: each byte is hashed about once per position.

    Counted, not timed: hashing every candidate length from scratch would be ~100x more calls.
    """
    from bridge.protocol.milur import framing

    calls = 0
    real = framing.crc16_update

    def counting(crc: int, data: bytes) -> int:
        nonlocal calls
        calls += 1
        return real(crc, data)

    monkeypatch.setattr(framing, "crc16_update", counting)
    a = Address(255)
    cases = [
        (profile_record_request(a, 1), b"\xff\x0d"),
        (daily_record_request(a, 1), b"\xff\x0c"),
    ]
    for request, pattern in cases:
        stream = (pattern * 400)[:800]
        decoder = FrameDecoder()
        decoder.expect(request)
        for i in range(len(stream)):
            decoder.feed(stream[i : i + 1])
            assert decoder.next_frame() is None
        assert decoder.buffered <= 4 + 1 + MAX_HUNTED_DATA + 2
    requests_ = RequestDecoder()
    stream = b"\xff\x02" * 400
    for i in range(len(stream)):
        requests_.feed(stream[i : i + 1])
        requests_.next_request()
    assert 0 < calls <= 3 * 3 * len(stream) * (MAX_HUNTED_DATA + 8)
