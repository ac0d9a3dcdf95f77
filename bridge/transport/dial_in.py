"""Dial-in channels: GSM modules in client mode calling one listening port (§7).

A module dials in and stays silent. The ``DialInListener`` identifies each new connection within
``identify_timeout`` by the configured method, then attaches it to the ``DialInTransport`` of that
identity; from then on the socket carries ordinary Milur frames for every meter behind the module.

- IMEI (default): send the C3 identification to ``FF FF FF FF`` and read the IMEI from the
  26-byte reply (§7, [one source]); the request is repeated a few times within the timeout in
  case the module was not listening yet;
- serial number: read register 68 from ``identify_address``; by default **without a session**,
  or, for meters that answer 08 "session closed" to that, after opening a session with the
  listener's ``identify_password`` (a refusal is final for that connection: §3 lockout);
- peer address: the connection's IP address, no traffic at all.

Unknown and unidentifiable connections are closed and logged with the peer address, at most once
per ``log_interval`` per peer IP. A new connection for an identity that is already attached
replaces the old one (closed). Connections beyond ``max_connections``, or beyond
``max_unidentified`` waiting for identification, are closed at once. Cost per connection: one
small protocol object, plus one task while it is being identified; no thread, no polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from bridge.config.model import ChannelConfig, ListenerConfig, Secret
from bridge.transport.errors import TransportError, TransportUnavailable
from bridge.transport.identification import IdentificationRefused, identify_connection
from bridge.transport.stream import ByteConnection, ConnectedStream, enable_keepalive

log = logging.getLogger(__name__)


class DialInTransport(ConnectedStream):
    """The channel of one dial-in module; ``open()`` waits until the listener attaches it."""

    _NOT_CONNECTED = "module not connected"

    def __init__(self, channel: ChannelConfig, *, attach_timeout: float | None = None) -> None:
        """``attach_timeout``: how long ``open()`` waits for the module (None: until it comes)."""
        if channel.dial_in is None:
            raise ValueError(f"channel {channel.name!r} has no dial-in settings")
        self.name = channel.name
        self.expected_identity = channel.dial_in.identity
        self.identity = ""
        self.peer = ""
        self.attach_timeout = attach_timeout
        self.attachments = 0
        self._conn: ByteConnection | None = None
        self._attached = asyncio.Event()

    def __repr__(self) -> str:
        return f"DialInTransport({self.name!r}, identity={self.expected_identity!r})"

    @property
    def is_open(self) -> bool:
        """True while an identified connection is attached and alive."""
        return self._conn is not None and self._conn.is_open

    def attach(self, conn: ByteConnection) -> None:
        """Use ``conn`` from now on (called by the listener); an older connection is closed."""
        old, self._conn = self._conn, conn
        self.identity = self.expected_identity
        self.peer = conn.peer
        self.attachments += 1
        self._attached.set()
        if old is not None and old is not conn:
            if old.is_open:
                log.info(
                    "channel %s: module %s connected again from %s; old connection from %s closed",
                    self.name,
                    self.expected_identity,
                    conn.peer,
                    old.peer,
                )
            old.close()

    async def open(self) -> None:
        """Wait until a connection is attached; ``TransportUnavailable`` after ``attach_timeout``."""
        while not self.is_open:
            self._attached.clear()
            try:
                async with asyncio.timeout(self.attach_timeout):
                    await self._attached.wait()
            except TimeoutError:
                raise TransportUnavailable(
                    f"channel {self.name}: module {self.expected_identity} has not dialled in"
                ) from None

    async def close(self) -> None:
        """Close the attached connection (the module will dial in again)."""
        conn, self._conn = self._conn, None
        self.identity = ""
        self.peer = ""
        self._attached.clear()
        if conn is not None:
            conn.close()
            await conn.wait_closed()



@dataclass(slots=True)
class ListenerStats:
    """Counters of a dial-in listener."""

    accepted: int = 0
    identified: int = 0
    unknown: int = 0  # identified, but no channel has that identity
    unidentified: int = 0  # no identity within identify_timeout
    over_limit: int = 0  # closed at once: too many connections
    replaced: int = 0  # an identity connected again; the old connection was closed


class _ListenerConnection(ByteConnection):
    """A ``ByteConnection`` that tells its listener when it comes and goes."""

    def __init__(self, listener: DialInListener) -> None:
        super().__init__()
        self._listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Register with the listener (which may close it at once)."""
        super().connection_made(transport)
        self._listener._connected(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """Unregister."""
        super().connection_lost(exc)
        self._listener._disconnected(self)


class DialInListener:
    """One TCP port for many dial-in modules (``ListenerConfig``)."""

    def __init__(
        self,
        config: ListenerConfig,
        channels: Mapping[str, DialInTransport] | None = None,
        *,
        log_interval: float = 300.0,
        keepalive: bool = True,
        identify_password: Secret | None = None,
        identify_level: int = 1,
    ) -> None:
        """``channels``: identity → transport; more are added by ``transport_for()``.

        ``identify_password``/``identify_level``: for the serial-number method, open a session at
        ``identify_address`` before reading register 68 (meters that refuse reads without one).
        A refused password is never retried on that connection (§3 lockout); ``None`` (default)
        reads without a session.
        """
        self.config = config
        self.channels: dict[str, DialInTransport] = dict(channels or {})
        self.log_interval = log_interval
        self.keepalive = keepalive
        self.identify_password = identify_password
        self.identify_level = identify_level
        self.stats = ListenerStats()
        self._server: asyncio.Server | None = None
        self._connections: set[ByteConnection] = set()
        self._pending: dict[ByteConnection, asyncio.Task[None]] = {}
        self._last_logged: dict[str, float] = {}

    def __repr__(self) -> str:
        c = self.config
        return f"DialInListener({c.name!r}, {c.host}:{self.port}, method={c.method.value})"

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the one the OS chose for port 0)."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self.config.port

    @property
    def connection_count(self) -> int:
        """Live connections, identified or not."""
        return len(self._connections)

    @property
    def unidentified_count(self) -> int:
        """Connections still being identified."""
        return len(self._pending)

    def transport_for(self, channel: ChannelConfig) -> DialInTransport:
        """The transport for a dial-in channel of this listener (created and registered once)."""
        if channel.dial_in is None or channel.dial_in.listener != self.config.name:
            raise ValueError(f"channel {channel.name!r} is not a dial-in channel of {self.config.name}")
        identity = channel.dial_in.identity
        transport = self.channels.get(identity)
        if transport is None:
            transport = DialInTransport(channel)
            self.channels[identity] = transport
        elif transport.name != channel.name:
            raise ValueError(
                f"channels {transport.name!r} and {channel.name!r} share identity {identity!r}"
            )
        return transport

    async def start(self) -> None:
        """Listen; ``TransportUnavailable`` if the port cannot be bound."""
        c = self.config
        loop = asyncio.get_running_loop()
        try:
            # asyncio's default backlog (100) overflows when thousands of modules dial in at
            # once; the kernel then drops handshakes the module already thinks are done, and a
            # client-mode module stays silent on that dead socket (§7). Size it for the site.
            self._server = await loop.create_server(
                lambda: _ListenerConnection(self),
                c.host,
                c.port,
                reuse_address=True,
                backlog=max(128, min(c.max_connections, 4096)),
            )
        except OSError as exc:
            raise TransportUnavailable(
                f"listener {c.name}: cannot listen on {c.host}:{c.port}: {exc}"
            ) from exc
        log.info("listener %s: accepting dial-in modules on %s:%d", c.name, c.host, self.port)

    async def stop(self) -> None:
        """Stop listening, abandon identifications and close every connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in list(self._connections):
            conn.abort()
        for transport in self.channels.values():
            await transport.close()
        if server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await server.wait_closed()

    # -- connection lifecycle ------------------------------------------------------------------
    def _connected(self, conn: ByteConnection) -> None:
        self.stats.accepted += 1
        c = self.config
        if len(self._connections) >= c.max_connections or len(self._pending) >= c.max_unidentified:
            self.stats.over_limit += 1
            self._log_rejection(
                conn.peer_host,
                "listener %s: connection from %s closed: limit reached "
                "(%d connections, %d being identified)",
                c.name,
                conn.peer,
                len(self._connections),
                len(self._pending),
            )
            conn.abort()
            return
        self._connections.add(conn)
        if self.keepalive and conn.socket is not None:
            enable_keepalive(conn.socket)
        self._pending[conn] = asyncio.get_running_loop().create_task(
            self._identify_and_attach(conn), name=f"identify {conn.peer}"
        )

    def _disconnected(self, conn: ByteConnection) -> None:
        self._connections.discard(conn)

    async def _identify_and_attach(self, conn: ByteConnection) -> None:
        c = self.config
        try:
            try:
                async with asyncio.timeout(c.identify_timeout):
                    identity = await identify_connection(
                        conn, c, password=self.identify_password, level=self.identify_level
                    )
            except TimeoutError:
                self.stats.unidentified += 1
                self._log_rejection(
                    conn.peer_host,
                    "listener %s: connection from %s not identified (%s) within %g s: closed",
                    c.name,
                    conn.peer,
                    c.method.value,
                    c.identify_timeout,
                )
                conn.abort()
                return
            except IdentificationRefused as exc:
                self.stats.unidentified += 1
                self._log_rejection(
                    conn.peer_host,
                    "listener %s: connection from %s refused identification (%s): %s; closed",
                    c.name,
                    conn.peer,
                    c.method.value,
                    exc,
                )
                conn.abort()
                return
            except TransportError as exc:
                log.debug("listener %s: %s went away during identification: %s", c.name, conn.peer, exc)
                conn.abort()
                return
            self._attach(conn, identity)
        finally:
            self._pending.pop(conn, None)

    def _attach(self, conn: ByteConnection, identity: str) -> None:
        c = self.config
        transport = self.channels.get(identity)
        if transport is None:
            self.stats.unknown += 1
            self._log_rejection(
                conn.peer_host,
                "listener %s: connection from %s identified as %r, which no channel expects: closed",
                c.name,
                conn.peer,
                identity,
            )
            conn.close()
            return
        self.stats.identified += 1
        if transport.is_open:
            self.stats.replaced += 1
        conn.discard_input()
        transport.attach(conn)
        log.info("listener %s: %s identified as %s (channel %s)", c.name, conn.peer, identity, transport.name)

    def _log_rejection(self, peer_host: str, message: str, *args: object) -> None:
        """Log a rejected connection at most once per ``log_interval`` for each peer IP."""
        now = asyncio.get_running_loop().time()
        last = self._last_logged.get(peer_host)
        if last is not None and now - last < self.log_interval:
            log.debug(message, *args)
            return
        if len(self._last_logged) > 4096:
            self._last_logged = {
                k: v for k, v in self._last_logged.items() if now - v < self.log_interval
            }
        self._last_logged[peer_host] = now
        log.warning(message, *args)
