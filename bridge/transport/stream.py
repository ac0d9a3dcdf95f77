"""A buffered byte connection over an asyncio socket transport (TCP client and dial-in).

An ``asyncio.Protocol`` instead of StreamReader/StreamWriter: ``discard_input()`` must drop the
buffered bytes synchronously, and a thousand idle dial-in connections cost one small object each
(no task, no thread, no polling per connection).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Protocol, cast

from bridge.transport.errors import ReadTimeout, TransportClosed


class SocketOptions(Protocol):
    """What we need of a socket: ``socket.socket`` or asyncio's ``TransportSocket`` wrapper."""

    def setsockopt(self, level: int, option: int, value: int, /) -> None:
        """Set an option."""

    def getsockopt(self, level: int, option: int, /) -> int:
        """Read an option."""


#: received bytes kept at most; beyond that the oldest are dropped (a flooding peer, never a frame)
MAX_BUFFERED = 64 * 1024


class ByteConnection(asyncio.Protocol):
    """One socket: received bytes are buffered until ``read()``; one reader at a time."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._closed = False
        self._lost: asyncio.Future[None] | None = None
        self.peer = ""
        self.peer_host = ""
        self.dropped_bytes = 0

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport and the peer address."""
        self._transport = cast(asyncio.Transport, transport)
        self._lost = asyncio.get_running_loop().create_future()
        peername = transport.get_extra_info("peername")
        if isinstance(peername, tuple) and len(peername) >= 2:
            self.peer_host = str(peername[0])
            self.peer = f"{peername[0]}:{peername[1]}"

    def data_received(self, data: bytes) -> None:
        """Buffer bytes and wake the reader."""
        self._buffer += data
        if len(self._buffer) > MAX_BUFFERED:
            excess = len(self._buffer) - MAX_BUFFERED
            del self._buffer[:excess]
            self.dropped_bytes += excess
        self._wake()

    def eof_received(self) -> bool:
        """The peer closed its side: close ours too (half-duplex protocol, nothing left to say)."""
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Mark closed and wake every waiter."""
        self._closed = True
        self._wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        """Flow control: the socket's send buffer is full."""
        self._write_paused = True

    def resume_writing(self) -> None:
        """Flow control: the send buffer drained."""
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # -- the byte pipe -------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """True while the socket is connected."""
        return self._transport is not None and not self._closed

    @property
    def socket(self) -> SocketOptions | None:
        """The underlying socket (asyncio's ``TransportSocket`` wrapper), if any."""
        if self._transport is None:
            return None
        sock = self._transport.get_extra_info("socket")
        return cast(SocketOptions, sock) if hasattr(sock, "setsockopt") else None

    async def write(self, data: bytes) -> None:
        """Send bytes, waiting while the send buffer is full."""
        if self._transport is None or self._closed or self._transport.is_closing():
            raise TransportClosed(f"connection to {self.peer or '?'} is closed")
        self._transport.write(data)
        if self._write_paused:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None
            if self._closed:
                raise TransportClosed(f"connection to {self.peer or '?'} was lost")

    async def read(self, timeout: float) -> bytes:  # noqa: ASYNC109 (contract)
        """Every buffered byte (at least one); ``ReadTimeout`` or ``TransportClosed`` otherwise."""
        if not self._buffer:
            if self._closed or self._transport is None:
                raise TransportClosed(f"connection to {self.peer or '?'} is closed")
            if self._waiter is not None:
                raise RuntimeError("ByteConnection.read() is already waiting (one reader only)")
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                async with asyncio.timeout(timeout):
                    await waiter
            except TimeoutError:
                if not self._buffer:
                    raise ReadTimeout(
                        f"no reply from {self.peer or '?'} within {timeout:g} s"
                    ) from None
            finally:
                self._waiter = None
            if not self._buffer:
                raise TransportClosed(f"connection to {self.peer or '?'} was lost")
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def discard_input(self) -> None:
        """Drop buffered bytes."""
        self._buffer.clear()

    def close(self) -> None:
        """Close the socket (pending writes are flushed by asyncio)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def abort(self) -> None:
        """Close at once, dropping pending writes."""
        if self._transport is not None:
            self._transport.abort()

    async def wait_closed(self, limit: float = 1.0) -> None:
        """Wait until asyncio reports the connection lost (bounded; aborts after ``limit`` s)."""
        if self._lost is None or self._lost.done():
            return
        try:
            async with asyncio.timeout(limit):
                await asyncio.shield(self._lost)
        except TimeoutError:
            self.abort()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def enable_keepalive(
    sock: SocketOptions, idle: float = 60.0, interval: float = 10.0, count: int = 5
) -> None:
    """Turn TCP keep-alive on, with idle/interval/count where the platform has them.

    Keep-alive finds a dead peer on an idle socket; on a busy one the Link's count of consecutive
    response timeouts does (half-open sockets: writes succeed, nothing comes back).
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    options = (
        ("TCP_KEEPIDLE", max(1, int(idle))),
        ("TCP_KEEPINTVL", max(1, int(interval))),
        ("TCP_KEEPCNT", max(1, count)),
    )
    for option, value in options:
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


class ConnectedStream:
    """Byte I/O over an attached ``ByteConnection``: the part TCP client and dial-in share.

    Subclasses set ``name`` and ``_conn`` and say in ``_NOT_CONNECTED`` why there is no connection.
    """

    name: str
    _conn: ByteConnection | None
    _NOT_CONNECTED = "not connected"

    async def write(self, data: bytes) -> None:
        """Send bytes."""
        await self._connection().write(data)

    async def read(self, timeout: float) -> bytes:  # noqa: ASYNC109 (Transport contract)
        """Read at least one byte."""
        return await self._connection().read(timeout)

    def discard_input(self) -> None:
        """Drop buffered input."""
        if self._conn is not None:
            self._conn.discard_input()

    def _connection(self) -> ByteConnection:
        conn = self._conn
        if conn is None:
            raise TransportClosed(f"channel {self.name}: {self._NOT_CONNECTED}")
        return conn
