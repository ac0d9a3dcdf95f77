"""RequestDecoder (meter side, the simulator): framing requests of both address widths."""

from __future__ import annotations

import pytest

from bridge.protocol.milur import (
    Address,
    CodecUsageError,
    Func,
    Request,
    RequestDecoder,
    close_session_request,
    read_request,
    write_request,
)

from .golden import ADDR, ADDR4, EXCHANGES, h

REQUESTS = [e.request for e in EXCHANGES] + [
    close_session_request(ADDR),
    write_request(ADDR, 0x54, b"\x01"),
    write_request(ADDR4, 0x54, b"\x00\x01\x02"),
]


def drain(decoder: RequestDecoder, chunks: list[bytes]) -> list[Request]:
    out = []
    for chunk in chunks:
        decoder.feed(chunk)
        while (request := decoder.next_request()) is not None:
            out.append(request)
    return out


@pytest.mark.parametrize("noise", [b"", h("0A 0D"), h("00"), h("FF")], ids=["clean", "0a0d", "00", "ff"])
@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytes"])
def test_a_stream_of_requests(noise: bytes, bytewise: bool) -> None:
    stream = b"".join(noise + r.encode() for r in REQUESTS)
    chunks = [stream[i : i + 1] for i in range(len(stream))] if bytewise else [stream]
    decoder = RequestDecoder()
    assert drain(decoder, chunks) == REQUESTS
    assert decoder.stats.discarded_bytes == len(noise) * len(REQUESTS)


def test_wake_byte_before_a_request_is_skipped() -> None:
    # Milur 104 quirk (§1): the master sends a single FF first
    decoder = RequestDecoder()
    assert drain(decoder, [h("FF"), read_request(ADDR, 1).encode()]) == [read_request(ADDR, 1)]


def test_bad_crc_then_good() -> None:
    good = read_request(ADDR, 9).encode()
    decoder = RequestDecoder()
    assert drain(decoder, [good[:-1] + b"\x00" + good]) == [read_request(ADDR, 9)]
    assert decoder.stats.crc_errors >= 1


def test_widths_restrict_what_is_accepted() -> None:
    one, four = read_request(ADDR, 9).encode(), read_request(ADDR4, 9).encode()
    assert drain(RequestDecoder(widths=(1,)), [four + one]) == [read_request(ADDR, 9)]
    assert drain(RequestDecoder(widths=(4,)), [one + four]) == [read_request(ADDR4, 9)]
    with pytest.raises(CodecUsageError):
        RequestDecoder(widths=(2,))
    with pytest.raises(CodecUsageError):
        RequestDecoder(widths=())


def test_incomplete_request_waits() -> None:
    frame = EXCHANGES[0].request_bytes
    decoder = RequestDecoder()
    assert drain(decoder, [frame[:5]]) == []
    assert decoder.buffered == 5
    assert drain(decoder, [frame[5:]]) == [EXCHANGES[0].request]


def test_known_addresses_settle_frames_valid_under_both_widths() -> None:
    # found by Hypothesis: a write to 4-byte address 512 is also a valid write to 1-byte address 0
    four = write_request(Address(512, 4), 0, b"\x00")
    one = Request(Address(0, 1), Func.WRITE, four.encode()[2:-2])
    assert one.encode() == four.encode()
    assert drain(RequestDecoder(addresses={Address(512, 4)}), [four.encode()]) == [four]
    assert drain(RequestDecoder(addresses={Address(0, 1)}), [four.encode()]) == [one]
    # and a fixed-length reading beats a CRC-framed write: a read of 4-byte address 512
    read4 = read_request(Address(512, 4), 0)
    assert drain(RequestDecoder(), [read4.encode()]) == [read4]


def test_write_sizes_frame_writes_exactly() -> None:
    # found by Hypothesis: this write has a shorter prefix with a valid CRC, so a write framed by
    # CRC alone loses its last value byte; knowing the register's value size avoids that
    write = Request(Address(636694759, 4), Func.WRITE, h("2c 60 cb 38 04 47"))
    hunted = drain(RequestDecoder(), [write.encode()])
    assert hunted[0].data == write.data[:-1]
    assert drain(RequestDecoder(write_sizes={0x2C: 5}), [write.encode()]) == [write]
    relay = write_request(ADDR, 84, b"\x01")
    chunks = [relay.encode()[:4], relay.encode()[4:]]
    assert drain(RequestDecoder(write_sizes={84: 1}), chunks) == [relay]
