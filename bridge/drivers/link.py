"""The Link: one request/reply at a time on a bus (docs/architecture.md, "Link and driver").

It writes a request frame, enforces the inter-frame gap, feeds a ``FrameDecoder`` until the reply
for that request arrives, and discards input after every error. It counts what it sees.

Half-open detection: a socket that stays connected while nothing comes back (a GSM module whose
radio link died) shows as consecutive response timeouts. After ``half_open_after`` of them
(default ``DEFAULT_HALF_OPEN_TIMEOUTS`` = 4, i.e. two failed requests with one retry each) on a
TCP or dial-in channel, the Link closes the transport; polling then reconnects it. Serial channels
have no such threshold: a silent meter on a wire says nothing about the port.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from bridge.config.model import ChannelConfig, ChannelKind, Parity
from bridge.drivers.errors import CorruptReply, LinkDown, ResponseTimeout
from bridge.protocol.milur.codec import FrameDecoder
from bridge.protocol.milur.frames import ErrorReply, Func, ReadReply, Reply, Request
from bridge.transport.base import Transport
from bridge.transport.errors import ReadTimeout, TransportClosed

log = logging.getLogger(__name__)

#: consecutive response timeouts after which a connected socket is closed as half-open
DEFAULT_HALF_OPEN_TIMEOUTS = 4
#: the "wake" byte sent before polling a Milur 104 (protocol notes §1)
WAKE_BYTE = b"\xff"


@dataclass(slots=True)
class LinkStats:
    """Counters of one link (the channel's diagnostics)."""

    requests: int = 0
    responses: int = 0
    timeouts: int = 0
    crc_errors: int = 0
    garbage_bytes: int = 0
    foreign_frames: int = 0
    wake_bytes: int = 0
    half_open_closes: int = 0
    last_round_trip: float = 0.0  # seconds, request written → reply decoded


def frame_gap(channel: ChannelConfig) -> float:
    """Silence between frames: ``channel.frame_gap``, at least 3.5 character times on serial (§1)."""
    gap = channel.frame_gap
    s = channel.serial
    if channel.kind is ChannelKind.SERIAL and s is not None and s.baudrate > 0:
        bits = 1 + s.bytesize + (0 if s.parity is Parity.NONE else 1) + s.stopbits
        gap = max(gap, 3.5 * bits / s.baudrate)
    return gap


_DEFAULT = object()


class Link:
    """Serialises transactions on one transport; the single user of that transport."""

    def __init__(
        self,
        transport: Transport,
        channel: ChannelConfig,
        *,
        half_open_after: int | None | object = _DEFAULT,
    ) -> None:
        self.transport = transport
        self.channel = channel
        self.gap = frame_gap(channel)
        self.stats = LinkStats()
        if half_open_after is _DEFAULT:
            half_open_after = (
                None if channel.kind is ChannelKind.SERIAL else DEFAULT_HALF_OPEN_TIMEOUTS
            )
        assert half_open_after is None or isinstance(half_open_after, int)
        self.half_open_after: int | None = half_open_after
        self.consecutive_timeouts = 0
        self._lock = asyncio.Lock()
        self._quiet_since = 0.0

    def __repr__(self) -> str:
        return f"Link({self.channel.name!r}, gap={self.gap * 1000:.1f} ms)"

    async def transact(self, request: Request, timeout: float | None = None) -> Reply:  # noqa: ASYNC109 (contract)
        """Send ``request`` and return its reply (an ``ErrorReply`` is a reply too).

        Raises ``ResponseTimeout`` (``CorruptReply`` if only bad-CRC frames came) or ``LinkDown``.
        """
        limit = self.channel.response_timeout if timeout is None else timeout
        async with self._lock:
            return await self._transact(request, limit)

    async def send_wake_byte(self) -> None:
        """Send one ``FF``, wait one frame gap, discard input (Milur 104 quirk, §1)."""
        async with self._lock:
            self._require_open()
            await self._wait_gap()
            try:
                await self.transport.write(WAKE_BYTE)
            except TransportClosed as exc:
                raise LinkDown(f"channel {self.channel.name}: {exc}") from exc
            self.stats.wake_bytes += 1
            await asyncio.sleep(self.gap)
            self.transport.discard_input()
            self._mark_quiet()

    # -- internals -----------------------------------------------------------------------------
    async def _transact(self, request: Request, limit: float) -> Reply:
        self._require_open()
        await self._wait_gap()
        transport = self.transport
        transport.discard_input()
        decoder = FrameDecoder()
        decoder.expect(request)
        loop = asyncio.get_running_loop()
        self.stats.requests += 1
        start = loop.time()
        try:
            await transport.write(request.encode())
            reply = await self._read_reply(decoder, request, start + limit)
        except ReadTimeout:
            self._account(decoder)
            await self._after_timeout()
            if decoder.stats.crc_errors:
                raise CorruptReply(
                    f"channel {self.channel.name}: only corrupt frames within {limit:g} s"
                ) from None
            raise ResponseTimeout(
                f"channel {self.channel.name}: no reply within {limit:g} s"
            ) from None
        except TransportClosed as exc:
            self._account(decoder)
            raise LinkDown(f"channel {self.channel.name}: {exc}") from exc
        self._account(decoder)
        self._mark_quiet()
        self.consecutive_timeouts = 0
        self.stats.responses += 1
        self.stats.last_round_trip = loop.time() - start
        if isinstance(reply, ErrorReply):
            transport.discard_input()
        return reply

    async def _read_reply(self, decoder: FrameDecoder, request: Request, deadline: float) -> Reply:
        loop = asyncio.get_running_loop()
        while True:
            reply = decoder.next_frame()
            if reply is not None:
                if _answers(request, reply):
                    return reply
                # A late reply to an earlier read of another register: not ours.
                self.stats.foreign_frames += 1
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ReadTimeout("deadline passed")
            decoder.feed(await self.transport.read(remaining))

    async def _after_timeout(self) -> None:
        self.transport.discard_input()
        self._mark_quiet()
        self.stats.timeouts += 1
        self.consecutive_timeouts += 1
        threshold = self.half_open_after
        if threshold is not None and self.consecutive_timeouts >= threshold:
            log.warning(
                "channel %s: %d consecutive response timeouts on %s; closing the connection "
                "(half-open?) so that it is reconnected",
                self.channel.name,
                self.consecutive_timeouts,
                self.transport.peer or "the connection",
            )
            self.consecutive_timeouts = 0
            self.stats.half_open_closes += 1
            await self.transport.close()

    def _require_open(self) -> None:
        if not self.transport.is_open:
            raise LinkDown(f"channel {self.channel.name} is not connected")

    async def _wait_gap(self) -> None:
        wait = self._quiet_since + self.gap - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)

    def _mark_quiet(self) -> None:
        self._quiet_since = asyncio.get_running_loop().time()

    def _account(self, decoder: FrameDecoder) -> None:
        stats = decoder.stats
        self.stats.crc_errors += stats.crc_errors
        self.stats.garbage_bytes += stats.discarded_bytes
        self.stats.foreign_frames += stats.foreign_frames


def _answers(request: Request, reply: Reply) -> bool:
    """False for a read reply that carries another register than the one asked for."""
    if isinstance(reply, ReadReply) and request.func is Func.READ:
        return reply.register == request.register
    return True

