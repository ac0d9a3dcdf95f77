"""Fuzz targets: one function per attack surface, each taking arbitrary bytes.

A target returns normally for every input the peer may send and raises ``AssertionError`` (or any
other exception) only for a bug. The first bytes of an input choose parameters (which request is
in flight, how the stream is cut into reads), the rest is what the peer sent.

- ``frame_decoder``: the master-side ``FrameDecoder`` (what a meter or a stranger sends us);
- ``request_decoder``: the meter-side ``RequestDecoder`` (what the simulator is sent);
- ``identification``: a dial-in connection's identification (§7: IMEI reply, or register 68 by
  the serial-number method) driven through ``identify_connection`` on an in-memory connection.

Used by ``fuzz/run.py`` (atheris when installed, else Hypothesis) and by the regression tests in
``tests/security/`` over every input kept in ``tests/security/fuzz_regressions/<target>/``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bridge.config.model import IdentifyMethod, ListenerConfig
from bridge.protocol.milur import (
    BROADCAST,
    Address,
    FrameDecoder,
    Request,
    RequestDecoder,
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
from bridge.transport.errors import TransportError
from bridge.transport.identification import IdentificationRefused, identify_connection
from bridge.transport.stream import ByteConnection

#: longest frame a reply may be (4-byte address, function, 255 data bytes, CRC) — what a decoder
#: waiting for more data may hold back
LONGEST_FRAME = 4 + 1 + 255 + 2


def _requests() -> list[Request]:
    """Requests the bridge sends: every function, 1- and 4-byte addresses."""
    t = datetime(2026, 11, 23, 12, 30)
    out: list[Request] = [identify_request(), network_address_request()]
    for a in (Address(255, 1), Address(1, 1), Address(49932, 4)):
        out += [
            read_request(a, 1),
            read_request(a, 14),
            read_request(a, 68),
            read_request(a, 118),
            write_request(a, 84, b"\x01"),
            open_session_request(a, 1, b"\xff" * 6),
            close_session_request(a),
            journal_count_request(a, 1),
            journal_record_request(a, 1, 3),
            daily_record_request(a, 2),
            profile_record_request(a, 5),
            archive_search_request(a, 0x10, t, t),
        ]
    return out


REQUESTS = _requests()


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def frame_decoder(data: bytes) -> None:
    """Random replies to any request: never raises, stays bounded, replies re-encode exactly."""
    if len(data) < 2:
        return
    request = REQUESTS[data[0] % len(REQUESTS)]
    chunk = 1 + data[1] % 64
    decoder = FrameDecoder()
    decoder.expect(request)
    for piece in _chunks(data[2:], chunk):
        decoder.feed(piece)
        assert decoder.buffered <= MAX_BUFFER, decoder.buffered
        reply = decoder.next_frame()
        if reply is None:
            assert decoder.buffered <= max(LONGEST_FRAME, chunk + LONGEST_FRAME), decoder.buffered
            continue
        # what we decoded is what was on the wire: its encoding decodes to the same reply
        again = FrameDecoder()
        again.expect(request)
        again.feed(reply.encode())
        assert again.next_frame() == reply, (reply, reply.encode().hex())
        decoder.expect(request)


def request_decoder(data: bytes) -> None:
    """Random request streams to the simulator's decoder: never raises, stays bounded."""
    if len(data) < 2:
        return
    widths = ((1, 4), (1,), (4,))[data[0] % 3]
    chunk = 1 + data[1] % 64
    decoder = RequestDecoder(widths, write_sizes={84: 1})
    for piece in _chunks(data[2:], chunk):
        decoder.feed(piece)
        while (request := decoder.next_request()) is not None:
            assert request.address.width in widths
        assert decoder.buffered <= LONGEST_FRAME, decoder.buffered


class _ScriptedPeer(asyncio.Transport):
    """An in-memory peer: answers the first request written to it with a script, then hangs up."""

    def __init__(self, conn: ByteConnection, script: list[bytes]) -> None:
        super().__init__()
        self._conn = conn
        self._script = script
        self._closing = False
        self.written = bytearray()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("10.0.0.9", 40000) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data
        loop = asyncio.get_running_loop()
        script, self._script = self._script, []
        for piece in script:
            loop.call_soon(self._conn.data_received, piece)
        loop.call_soon(self.abort)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self.abort()

    def abort(self) -> None:
        if not self._closing:
            self._closing = True
            self._conn.connection_lost(None)


_LOOP: asyncio.AbstractEventLoop | None = None
_METHODS = (
    ListenerConfig("fuzz", method=IdentifyMethod.IMEI, identify_timeout=1.0),
    ListenerConfig("fuzz", method=IdentifyMethod.SERIAL_NUMBER, identify_timeout=1.0),
    ListenerConfig(
        "fuzz", method=IdentifyMethod.SERIAL_NUMBER, identify_address=49932, identify_address_width=4
    ),
)


async def _identify(config: ListenerConfig, script: list[bytes]) -> str | None:
    conn = ByteConnection()
    conn.connection_made(_ScriptedPeer(conn, script))
    try:
        async with asyncio.timeout(5):
            return await identify_connection(conn, config)
    except (IdentificationRefused, TransportError):
        return None


def identification(data: bytes) -> None:
    """Random answers to the identification: an identity, a refusal or a closed connection."""
    global _LOOP
    if len(data) < 2:
        return
    config = _METHODS[data[0] % len(_METHODS)]
    script = _chunks(data[2:], 1 + data[1] % 64)
    if _LOOP is None or _LOOP.is_closed():
        _LOOP = asyncio.new_event_loop()
    identity = _LOOP.run_until_complete(_identify(config, script))
    if identity is not None:
        # an identity is text from the peer: printable once stripped, never longer than a frame
        assert isinstance(identity, str) and len(identity) <= 255, identity


def close() -> None:
    """Close the event loop of the identification target."""
    global _LOOP
    if _LOOP is not None:
        _LOOP.close()
        _LOOP = None


TARGETS: dict[str, Callable[[bytes], None]] = {
    "frame_decoder": frame_decoder,
    "request_decoder": request_decoder,
    "identification": identification,
}


def seeds() -> dict[str, list[bytes]]:
    """A small seed corpus per target, built from the frame builders (valid replies and noise)."""
    from bridge.protocol.milur import IdentifyReply, ReadReply, SessionReply

    replies = [
        ReadReply(Address(255, 1), 118, bytes.fromhex("44111000")).encode(),
        SessionReply(Address(255, 1), 1).encode(),
        IdentifyReply(BROADCAST, "356938035643809").encode(),
        ReadReply(Address(255, 1), 68, b"012049932\x00").encode(),
    ]
    noise = [b"\x0a\x0d", b"\x00\x00", bytes(range(32))]
    frames = [bytes([i, 7]) + r for i in range(len(REQUESTS)) for r in replies[:2]]
    return {
        "frame_decoder": frames + [b"\x00\x01" + n for n in noise],
        "request_decoder": [b"\x00\x05" + r.encode() for r in REQUESTS],
        "identification": [bytes([m, 9]) + r for m in range(3) for r in replies + noise],
    }
