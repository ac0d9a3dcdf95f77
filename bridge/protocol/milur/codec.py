"""Streaming frame decoders (sans-I/O): bytes in, frames out (DESIGN.md rule 1, protocol notes §2).

``FrameDecoder`` (master side) knows the request in flight and frames its reply by the expected
length of §2; everything else in the stream (keep-alives, ``0A 0D`` wrappers, garbage, echoes of our
own request, frames for other addresses or stale replies, bad CRC) is discarded and counted. Like
pymodbus's RTU framer it hunts byte by byte for the next valid frame. ``RequestDecoder`` (meter
side, the simulator) frames requests. Neither raises for what a peer sent, and both terminate:
every step either returns a frame, drops at least one byte, or waits for more data.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from bridge.protocol.milur.errors import CodecUsageError, FrameError
from bridge.protocol.milur.frames import (
    ERROR_FLAG,
    REPLY_TYPES,
    Address,
    ErrorReply,
    Func,
    Reply,
    Request,
)
from bridge.protocol.milur.framing import (
    ERROR_DATA,
    FIXED_REPLY_DATA,
    FUNC_BYTES,
    GARBAGE,
    MAX_BUFFER,
    MAX_HUNTED_DATA,
    NEED,
    REQUEST_DATA,
    DecoderStats,
    Framer,
    Kind,
    complete,
    generic_reply,
)

__all__ = [
    "MAX_BUFFER",
    "DecoderStats",
    "FrameDecoder",
    "RequestDecoder",
    "decode_reply",
    "decode_request",
]


class FrameDecoder(Framer):
    """Master-side decoder: ``expect(request)``, ``feed(data)``, then ``next_frame()``.

    ``next_frame()`` returns the reply to the request in flight (its normal or error reply) or None
    when more data is needed; it never raises for peer data. Once the reply is returned,
    ``next_frame()`` returns None (leaving later bytes buffered) until the next ``expect()``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._request: Request | None = None
        self._answered = False
        self._echo = b""

    @property
    def in_flight(self) -> Request | None:
        """The request whose reply is awaited (None once answered)."""
        return None if self._answered else self._request

    def expect(self, request: Request) -> None:
        """Name the request just sent; its reply is what ``next_frame()`` looks for."""
        self._request = request
        self._answered = False
        self._echo = request.encode()
        self._forget()

    def next_frame(self) -> Reply | None:
        """The reply to the request in flight, or None (need more data)."""
        request = self._request
        if request is None:
            raise CodecUsageError("next_frame() called before expect(): no request in flight")
        if self._answered:
            return None
        while (frame := self._take_frame()) is not None:
            try:
                reply = _parse_reply(frame, request)
            except FrameError:
                self.stats.invalid_frames += 1
                continue
            self.stats.frames += 1
            self._answered = True
            return reply
        return None

    def _count_skipped(self, skipped: bytes) -> None:
        if skipped == self._echo:  # an echo held back while it could have been our reply
            self.stats.foreign_frames += 1
        else:
            super()._count_skipped(skipped)

    def _classify(self, s: int) -> tuple[Kind, int]:
        assert self._request is not None
        buf, echo = self._buf, self._echo
        avail = len(buf) - s
        kind, total = self._classify_ours(s)
        # A write or close reply may be byte for byte the request (§4), and a request can be the
        # start of its reply (a CRC ending in 00 looks like LEN 00): our reply goes first.
        if kind is Kind.FRAME or kind is Kind.NEED_MORE:
            return kind, total
        # Some RS-485 converters and GSM modules echo what we sent: our own request is not a reply.
        if avail >= len(echo) and buf[s : s + len(echo)] == echo:
            return Kind.FOREIGN, len(echo)
        if avail < len(echo) and echo.startswith(bytes(buf[s:])):
            return NEED
        generic = generic_reply(buf, s, self._request.address.width)
        if kind is Kind.BAD_CRC and generic[0] is not Kind.FOREIGN:
            return Kind.BAD_CRC, 0
        return generic

    def _classify_ours(self, s: int) -> tuple[Kind, int]:
        """FRAME/BAD_CRC/NEED_MORE if a reply to the request may start at ``s``, else GARBAGE."""
        request = self._request
        assert request is not None
        buf = self._buf
        avail = len(buf) - s
        addr = request.address.encode()
        w = len(addr)
        if buf[s : s + min(avail, w)] != addr[: min(avail, w)]:
            return GARBAGE
        if avail <= w:
            return NEED
        f, func = buf[s + w], request.func
        # C3 already has the error bit set: its replies are framed as identification only (§7).
        if f == func | ERROR_FLAG and func is not Func.IDENTIFY:
            return complete(buf, s, w + 1 + ERROR_DATA + 2)
        if f != func:
            return GARBAGE
        if func in (Func.READ, Func.WRITE):
            if avail <= w + 1:
                return NEED
            if buf[s + w + 1] != request.register:
                return GARBAGE  # a stale reply for another register is FOREIGN, found later
            if func is Func.WRITE:  # the meter echoes REG VALUE… (§4)
                return complete(buf, s, w + 1 + len(request.data) + 2)
            if avail <= w + 2:
                return NEED
            return complete(buf, s, w + 1 + 2 + buf[s + w + 2] + 2)
        if func in FIXED_REPLY_DATA:
            return complete(buf, s, w + 1 + FIXED_REPLY_DATA[func] + 2)
        if request.reply_size is not None:
            return complete(buf, s, w + 1 + request.reply_size + 2)
        # Daily/profile record sizes are not known from §4 ([one source]): find them by CRC.
        if func is Func.DAILY_RECORD:
            return self._hunt(s, w + 1, range(6, MAX_HUNTED_DATA + 1, 4))
        return self._hunt(s, w + 1, range(5, MAX_HUNTED_DATA + 1))


def _parse_reply(frame: bytes, request: Request) -> Reply:
    """Build the reply object from a framed, CRC-checked reply to ``request``."""
    w = request.address.width
    addr = Address(int.from_bytes(frame[:w], "little"), w)
    f, payload = frame[w], frame[w + 1 : -2]
    if f != request.func:
        return ErrorReply.for_func(addr, f, payload)
    return REPLY_TYPES[request.func].from_payload(addr, payload)


def decode_reply(frame: bytes, request: Request) -> Reply:
    """Decode one whole reply frame to ``request``; raises ``FrameError`` if it is not one."""
    decoder = FrameDecoder()
    decoder.expect(request)
    decoder.feed(frame)
    reply = decoder.next_frame()
    if reply is None or decoder.buffered or decoder.stats.discarded_bytes:
        raise FrameError(f"not a valid reply to {request!r}: {bytes(frame).hex(' ').upper()}")
    return reply


class RequestDecoder(Framer):
    """Meter-side decoder (the simulator): ``feed(data)``, then ``next_request()``.

    ``widths`` are the address widths tried at each position. Some byte strings are valid requests
    under both widths (e.g. ``00 02 00 00 02 …``: a write to 4-byte address 512, or a write to
    1-byte address 0 with a longer value). ``addresses`` (the meters on the bus, optional) settles
    that: a reading naming a known address wins; otherwise see ``_classify``. ``write_sizes``
    (register → value bytes, e.g. ``{84: 1}`` for the relay) frames writes exactly; a write to
    another register is framed by CRC (the shortest valid frame, so a ~1/65536 chance per length
    of cutting it short).
    """

    def __init__(
        self,
        widths: Sequence[int] = (1, 4),
        addresses: Collection[Address] | None = None,
        write_sizes: Mapping[int, int] | None = None,
    ) -> None:
        super().__init__()
        if not widths or any(w not in (1, 4) for w in widths):
            raise CodecUsageError(f"address widths must be 1 and/or 4, got {widths!r}")
        self._widths = tuple(widths)
        self._addresses = frozenset(addresses) if addresses is not None else None
        self._write_sizes = dict(write_sizes or {})
        self._frame_width = self._widths[0]  # width of the frame _classify(0) last accepted

    def next_request(self) -> Request | None:
        """The next request in the stream, or None (need more data)."""
        frame = self._take_frame()
        if frame is None:
            return None
        w = self._frame_width
        self.stats.frames += 1
        return Request(Address(int.from_bytes(frame[:w], "little"), w), Func(frame[w]), frame[w + 1 : -2])

    def _classify(self, s: int) -> tuple[Kind, int]:
        # The two address widths can both frame the same bytes (§2: the form is [open]). A
        # reading naming a known address wins, then a fixed-length reading over a write whose
        # length was found by CRC, then the shorter frame, then the width listed first.
        results = [(self._classify_width(s, w), w) for w in self._widths]
        frames = [
            (not self._known(s, w), self._hunted_write(s, w), total, i, w)
            for i, ((kind, total), w) in enumerate(results)
            if kind is Kind.FRAME
        ]
        if frames:
            *_, total, _, self._frame_width = min(frames)
            return Kind.FRAME, total
        kinds = {kind for (kind, _), _ in results}
        if Kind.NEED_MORE in kinds:
            return NEED
        return (Kind.BAD_CRC, 0) if Kind.BAD_CRC in kinds else GARBAGE

    def _hunted_write(self, s: int, w: int) -> bool:
        return self._buf[s + w] == Func.WRITE and self._buf[s + w + 1] not in self._write_sizes

    def _known(self, s: int, w: int) -> bool:
        if self._addresses is None:
            return True
        return Address(int.from_bytes(self._buf[s : s + w], "little"), w) in self._addresses

    def _classify_width(self, s: int, w: int) -> tuple[Kind, int]:
        buf = self._buf
        if len(buf) - s <= w:
            return NEED
        f = buf[s + w]
        if f not in FUNC_BYTES:
            return GARBAGE
        func = Func(f)
        if func is Func.WRITE:  # REG VALUE…: the value size depends on the register
            if len(buf) - s <= w + 1:
                return NEED
            size = self._write_sizes.get(buf[s + w + 1])
            if size is not None:
                return complete(buf, s, w + 1 + 1 + size + 2)
            return self._hunt(s, w + 1, range(2, MAX_HUNTED_DATA + 1))
        return complete(buf, s, w + 1 + REQUEST_DATA[func] + 2)


def decode_request(
    frame: bytes,
    widths: Sequence[int] = (1, 4),
    addresses: Collection[Address] | None = None,
    write_sizes: Mapping[int, int] | None = None,
) -> Request:
    """Decode one whole request frame; raises ``FrameError`` if it is not one."""
    decoder = RequestDecoder(widths, addresses, write_sizes)
    decoder.feed(frame)
    request = decoder.next_request()
    if request is None or decoder.buffered or decoder.stats.discarded_bytes:
        raise FrameError(f"not a valid request: {bytes(frame).hex(' ').upper()}")
    return request
