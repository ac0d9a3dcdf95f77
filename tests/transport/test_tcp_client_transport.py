"""TcpClientTransport against real sockets on 127.0.0.1, and the transport factory."""

from __future__ import annotations

import asyncio
import socket

import pytest

from bridge.config.model import (
    ChannelConfig,
    ChannelKind,
    DialInSettings,
    ListenerConfig,
    SerialSettings,
    TcpClientSettings,
)
from bridge.simulator.bus import SimulatedBus
from bridge.simulator.serving import TcpMeterServer
from bridge.transport.base import Transport
from bridge.transport.dial_in import DialInListener, DialInTransport
from bridge.transport.errors import ReadTimeout, TransportClosed, TransportUnavailable
from bridge.transport.factory import create_transport
from bridge.transport.serial import SerialTransport
from bridge.transport.tcp_client import TcpClientTransport

pytestmark = [pytest.mark.timeout(20), pytest.mark.usefixtures("no_leftovers")]


def tcp_channel(port: int, connect_timeout: float = 2.0, keepalive: bool = True) -> ChannelConfig:
    tcp = TcpClientSettings("127.0.0.1", port, connect_timeout=connect_timeout, keepalive=keepalive)
    return ChannelConfig("gsm", ChannelKind.TCP_CLIENT, tcp=tcp)


async def test_open_write_read_close_and_keepalive() -> None:
    async with TcpMeterServer(SimulatedBus()) as server:
        transport = TcpClientTransport(tcp_channel(server.port), keepalive_idle=30)
        assert isinstance(transport, Transport)
        await transport.open()
        try:
            assert transport.is_open and transport.peer == f"127.0.0.1:{server.port}"
            sock = transport._connection().socket
            assert sock is not None
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            if hasattr(socket, "TCP_KEEPIDLE"):
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
            await transport.write(b"\x01\x02")  # not a frame: the server stays silent
            with pytest.raises(ReadTimeout):
                await transport.read(0.05)
        finally:
            await transport.close()
            await transport.close()  # twice is fine
        assert not transport.is_open and transport.peer == ""
        with pytest.raises(TransportClosed):
            await transport.write(b"\xff")


async def test_keepalive_can_be_off() -> None:
    async with TcpMeterServer(SimulatedBus()) as server:
        transport = TcpClientTransport(tcp_channel(server.port, keepalive=False))
        await transport.open()
        try:
            sock = transport._connection().socket
            assert sock is not None and sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        finally:
            await transport.close()


async def test_peer_closing_is_transport_closed_after_buffered_bytes() -> None:
    async def say_and_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x0a\x0d")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(say_and_hang_up, "127.0.0.1", 0)
    try:
        transport = TcpClientTransport(tcp_channel(server.sockets[0].getsockname()[1]))
        await transport.open()
        data = b""
        with pytest.raises(TransportClosed):
            while True:
                data += await transport.read(2.0)
        assert data == b"\x0a\x0d"
        assert not transport.is_open
        await transport.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_refused_connection_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        transport = TcpClientTransport(tcp_channel(port))
        with pytest.raises(TransportUnavailable, match=f"127.0.0.1:{port}"):
            await transport.open()
    assert not transport.is_open


async def test_connect_timeout_is_unavailable() -> None:
    # A listener that never accepts, with its backlog filled: further SYNs go unanswered.
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                fillers.append(s)
            transport = TcpClientTransport(tcp_channel(port, connect_timeout=0.3))
            try:
                await transport.open()
            except TransportUnavailable as exc:
                assert "timed out" in str(exc) or "refused" in str(exc)
            else:
                await transport.close()
                pytest.fail("connected to a listener whose backlog is full: no connect timeout")
        finally:
            for s in fillers:
                s.close()


async def test_factory_builds_the_transport_of_the_channel_kind() -> None:
    serial = ChannelConfig("s", ChannelKind.SERIAL, serial=SerialSettings("/dev/ttyUSB0"))
    assert isinstance(create_transport(serial, {}), SerialTransport)
    assert isinstance(create_transport(tcp_channel(1), {}), TcpClientTransport)
    listener = DialInListener(ListenerConfig("gsm"))
    dial = ChannelConfig("d", ChannelKind.DIAL_IN, dial_in=DialInSettings("gsm", "356938035643809"))
    transport = create_transport(dial, {"gsm": listener})
    assert isinstance(transport, DialInTransport)
    assert listener.channels["356938035643809"] is transport
    with pytest.raises(ValueError, match="'nowhere'"):
        create_transport(
            ChannelConfig("x", ChannelKind.DIAL_IN, dial_in=DialInSettings("nowhere", "1")), {}
        )
    with pytest.raises(ValueError, match="no TCP settings"):
        create_transport(ChannelConfig("y", ChannelKind.TCP_CLIENT), {})
    with pytest.raises(ValueError, match="share identity"):
        listener.transport_for(
            ChannelConfig("d2", ChannelKind.DIAL_IN, dial_in=DialInSettings("gsm", "356938035643809"))
        )
