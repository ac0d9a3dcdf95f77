"""Serving forms of a simulated bus over TCP: a GSM module in server mode and one dialling out.

- :class:`TcpMeterServer`: listens; every accepted connection is a stream into the bus (a GSM module
  in server mode, or an RS-485/Ethernet converter). With ``imei`` it also answers the C3
  identification like a GSM module.
- :class:`DialOutModem`: a GSM module in client mode (protocol notes §7). It connects to the
  bridge's listener, stays silent, answers the C3 identification with its IMEI and routes every
  other frame to its meters. Optional keep-alive noise and ``0A``/``0D`` wrapping of answers;
  ``reconnect`` (a switch) makes it dial again after the connection is lost.

The serial form is :class:`bridge.simulator.pty.PtyLine`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bridge.simulator.bus import Answer, BusConnection, SimulatedBus

log = logging.getLogger(__name__)

_READ_SIZE = 4096


async def _send_answers(writer: asyncio.StreamWriter, answers: list[Answer], wrap: bool) -> None:
    for answer in answers:
        if answer.delay > 0:
            await asyncio.sleep(answer.delay)
        payload = b"\x0a" + answer.payload + b"\x0d" if wrap else answer.payload
        writer.write(payload)
        await writer.drain()


class TcpMeterServer:
    """A TCP server in front of a bus. ``port=0`` picks a free port; read it from ``.port``."""

    def __init__(
        self, bus: SimulatedBus, host: str = "127.0.0.1", port: int = 0, *, imei: str | None = None
    ) -> None:
        self.bus = bus
        self.host = host
        self.imei = imei
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._clients: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.accepted = 0  # connections accepted so far

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("TcpMeterServer is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._clients)

    async def start(self) -> None:
        """Start listening."""
        self._server = await asyncio.start_server(self._serve, self.host, self._requested_port)

    async def __aenter__(self) -> TcpMeterServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def drop(self) -> None:
        """Cut every open connection (a per-connection fault); the server keeps listening."""
        for writer in list(self._clients.values()):
            writer.transport.abort()

    async def stop(self) -> None:
        """Stop listening, close every connection and wait for their tasks to end."""
        if self._server is not None:
            self._server.close()
        self.drop()
        tasks = list(self._clients)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients[task] = writer
        self.accepted += 1
        connection = self.bus.connection(self.imei)
        try:
            while data := await reader.read(_READ_SIZE):
                await _send_answers(writer, connection.feed(data), wrap=False)
        except (ConnectionError, OSError):
            pass
        finally:
            self._clients.pop(task, None)
            writer.transport.abort()


class DialOutModem:
    """A GSM module in client mode dialling ``host:port`` and identifying itself by ``imei``."""

    def __init__(
        self,
        bus: SimulatedBus,
        host: str,
        port: int,
        imei: str,
        *,
        keepalive: float | None = None,
        keepalive_bytes: bytes = b"\x00\x00",
        wrap: bool = False,
        reconnect: bool = True,
        reconnect_delay: float = 1.0,
    ) -> None:
        if len(imei) != 15 or not imei.isdigit():
            raise ValueError(f"an IMEI is 15 digits, got {imei!r}")
        self.bus = bus
        self.host = host
        self.port = port
        self.imei = imei
        self.keepalive = keepalive  # seconds of idleness before a keep-alive packet; None = off
        self.keepalive_bytes = keepalive_bytes
        self.wrap = wrap  # answers sent as 0A <frame> 0D (protocol notes §7)
        self.reconnect = reconnect  # a switch: dial again after the connection is lost
        self.reconnect_delay = reconnect_delay
        self.dials = 0  # successful connections so far
        self.failed_dials = 0
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._connected = asyncio.Event()

    @property
    def connected(self) -> bool:
        """True while the modem has a connection."""
        return self._connected.is_set()

    async def start(self) -> None:
        """Start dialling (in the background)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"dial-out {self.imei}")

    async def __aenter__(self) -> DialOutModem:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_connected(self) -> None:
        """Wait until a connection is up (wrap it in ``asyncio.timeout``)."""
        await self._connected.wait()

    def drop(self) -> None:
        """Cut the current connection; with ``reconnect`` on, the modem dials again."""
        if self._writer is not None:
            self._writer.transport.abort()

    async def stop(self) -> None:
        """Hang up and stop dialling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        failing = False  # log the transitions only, not every failed dial
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError as exc:
                self.failed_dials += 1
                if not failing:
                    log.warning(
                        "modem %s: cannot dial %s:%s (%s); retrying every %g s",
                        self.imei, self.host, self.port, exc, self.reconnect_delay,
                    )  # fmt: skip
                failing = True
            else:
                failing = False
                self.dials += 1
                log.info("modem %s: connected to %s:%s", self.imei, self.host, self.port)
                await self._session(reader, writer)
                log.info("modem %s: connection closed", self.imei)
            if not self.reconnect:
                return
            await asyncio.sleep(self.reconnect_delay)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._connected.set()
        connection = self.bus.connection(self.imei)
        try:
            await self._pump(reader, writer, connection)
        except (ConnectionError, OSError):
            pass
        finally:
            self._connected.clear()
            self._writer = None
            writer.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: BusConnection
    ) -> None:
        # Client mode (§7): say nothing until asked; keep-alive noise only when idle.
        while True:
            try:
                data = await asyncio.wait_for(reader.read(_READ_SIZE), self.keepalive)
            except TimeoutError:
                writer.write(self.keepalive_bytes)
                await writer.drain()
                continue
            if not data:
                return
            await _send_answers(writer, connection.feed(data), self.wrap)
