"""TCP client channel: a GSM module in server mode or an RS-485/Ethernet converter (§1, §7)."""

from __future__ import annotations

import asyncio
import logging

from bridge.config.model import ChannelConfig
from bridge.transport.errors import TransportUnavailable
from bridge.transport.stream import ByteConnection, ConnectedStream, enable_keepalive

log = logging.getLogger(__name__)


class TcpClientTransport(ConnectedStream):
    """Connects out to ``channel.tcp.host:port`` with a connect timeout and TCP keep-alive.

    A lost connection shows as ``TransportClosed`` on the next read or write; ``open()`` connects
    again. Half-open detection (connected, nothing comes back) is the Link's job: it closes the
    transport after too many consecutive response timeouts.
    """

    def __init__(
        self,
        channel: ChannelConfig,
        *,
        keepalive_idle: float = 60.0,
        keepalive_interval: float = 10.0,
        keepalive_count: int = 5,
    ) -> None:
        if channel.tcp is None:
            raise ValueError(f"channel {channel.name!r} has no TCP settings")
        self.name = channel.name
        self.peer = ""
        self.identity = ""
        self._settings = channel.tcp
        self._keepalive = (keepalive_idle, keepalive_interval, keepalive_count)
        self._conn: ByteConnection | None = None

    def __repr__(self) -> str:
        s = self._settings
        return f"TcpClientTransport({self.name!r}, {s.host}:{s.port}, open={self.is_open})"

    @property
    def is_open(self) -> bool:
        """True while connected."""
        return self._conn is not None and self._conn.is_open

    async def open(self) -> None:
        """Connect; ``TransportUnavailable`` on refusal, unreachable host or connect timeout."""
        if self.is_open:
            return
        await self.close()
        s = self._settings
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(s.connect_timeout):
                _, conn = await loop.create_connection(ByteConnection, s.host, s.port)
        except TimeoutError:
            raise TransportUnavailable(
                f"channel {self.name}: connect to {s.host}:{s.port} timed out "
                f"after {s.connect_timeout:g} s"
            ) from None
        except OSError as exc:
            raise TransportUnavailable(
                f"channel {self.name}: cannot connect to {s.host}:{s.port}: {exc}"
            ) from exc
        sock = conn.socket
        if s.keepalive and sock is not None:
            idle, interval, count = self._keepalive
            enable_keepalive(sock, idle, interval, count)
        self._conn = conn
        self.peer = conn.peer or f"{s.host}:{s.port}"

    async def close(self) -> None:
        """Close the connection if any."""
        conn, self._conn = self._conn, None
        self.peer = ""
        if conn is not None:
            conn.close()
            await conn.wait_closed()

