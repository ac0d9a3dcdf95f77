"""DialInListener with simulated GSM modules dialling in (DialOutModem) and raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bridge.config.model import (
    ChannelConfig,
    ChannelKind,
    DialInSettings,
    IdentifyMethod,
    ListenerConfig,
    MeterConfig,
    Secret,
)
from bridge.config.templates import builtin_templates
from bridge.drivers.link import Link
from bridge.drivers.milur import MilurDriver
from bridge.simulator.bus import SimulatedBus
from bridge.simulator.meter import SimulatedMeter
from bridge.simulator.serving import DialOutModem
from bridge.transport.dial_in import DialInListener, DialInTransport
from bridge.transport.errors import TransportUnavailable
from bridge.transport.factory import create_transport

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_leftovers")]

ONE_PHASE = builtin_templates()["milur-1phase"]
IMEIS = ["356938035643809", "356938035643817", "356938035643825"]
STRANGER = "490154203237518"
WaitUntil = Callable[..., Awaitable[None]]  # the shared ``wait_until`` fixture


def listener_config(**kw: object) -> ListenerConfig:
    opts: dict[str, object] = {"host": "127.0.0.1", "port": 0, "identify_timeout": 0.5, **kw}
    return ListenerConfig("gsm", **opts)  # type: ignore[arg-type]


def dial_in_channel(name: str, identity: str) -> ChannelConfig:
    return ChannelConfig(
        name,
        ChannelKind.DIAL_IN,
        dial_in=DialInSettings("gsm", identity),
        response_timeout=1.0,
        frame_gap=0.001,
    )


def meter(address: int, channel: str) -> MeterConfig:
    return MeterConfig(f"m{address}", channel, "107", "milur-1phase", address)


@contextlib.asynccontextmanager
async def running(listener: DialInListener) -> AsyncIterator[DialInListener]:
    await listener.start()
    try:
        yield listener
    finally:
        await listener.stop()


@contextlib.asynccontextmanager
async def modems(*items: DialOutModem) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for modem in items:
            await stack.enter_async_context(modem)
        yield


async def attached(transport: DialInTransport, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        await transport.open()


async def test_several_modules_identified_by_imei(wait_until: WaitUntil) -> None:
    listener = DialInListener(listener_config())
    channels = [dial_in_channel(f"gsm{i}", imei) for i, imei in enumerate(IMEIS)]
    transports = [create_transport(c, {"gsm": listener}) for c in channels]
    sims = [SimulatedMeter("107", 10 + i, serial_number=f"00000{i}") for i in range(len(IMEIS))]
    async with running(listener):
        devices = [
            DialOutModem(SimulatedBus([sim]), "127.0.0.1", listener.port, imei, keepalive=0.05, wrap=i == 0)
            for i, (sim, imei) in enumerate(zip(sims, IMEIS, strict=True))
        ]
        async with modems(*devices):
            for i, (channel, transport) in enumerate(zip(channels, transports, strict=True)):
                await attached(transport)
                assert transport.identity == IMEIS[i]
                assert create_transport(channel, {"gsm": listener}) is transport
                driver = MilurDriver(meter(10 + i, channel.name), ONE_PHASE)
                identity = await driver.identify(Link(transport, channel))
                assert identity.serial == sims[i].serial_number  # each module reaches its own meter
            assert listener.stats.identified == len(IMEIS)
            assert listener.unidentified_count == 0


async def test_stranger_is_rejected_and_logged_once(
    caplog: pytest.LogCaptureFixture, wait_until: WaitUntil
) -> None:
    caplog.set_level(logging.INFO)
    listener = DialInListener(listener_config())
    listener.transport_for(dial_in_channel("known", IMEIS[0]))
    async with running(listener):
        stranger = DialOutModem(
            SimulatedBus([SimulatedMeter("107", 1)]),
            "127.0.0.1",
            listener.port,
            STRANGER,
            reconnect_delay=0.02,
        )
        async with modems(stranger):
            # it keeps dialling; it keeps being refused
            await wait_until(lambda: listener.stats.unknown >= 3, within=5)
        assert listener.channels[IMEIS[0]].is_open is False
    refused = [
        r for r in caplog.records if r.name.startswith("bridge.transport") and STRANGER in r.getMessage()
    ]
    assert len(refused) == 1 and refused[0].levelno == logging.WARNING
    assert "127.0.0.1" in refused[0].getMessage()


async def test_silent_connection_is_closed_after_the_identify_timeout() -> None:
    listener = DialInListener(listener_config(identify_timeout=0.3))
    async with running(listener):
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            received = b""
            async with asyncio.timeout(3):
                while chunk := await reader.read(100):
                    received += chunk  # the identification requests
            assert loop.time() - start >= 0.3
            assert received.startswith(bytes.fromhex("FF FF FF FF C3 0C 01 10 FC"))
            assert listener.stats.unidentified == 1
            assert listener.connection_count == 0
        finally:
            writer.close()


async def test_same_imei_again_replaces_the_old_connection(wait_until: WaitUntil) -> None:
    listener = DialInListener(listener_config())
    channel = dial_in_channel("gsm0", IMEIS[0])
    transport = listener.transport_for(channel)
    sim = SimulatedMeter("107", 10)
    async with running(listener):
        first = DialOutModem(SimulatedBus([sim]), "127.0.0.1", listener.port, IMEIS[0], reconnect=False)
        second = DialOutModem(SimulatedBus([sim]), "127.0.0.1", listener.port, IMEIS[0], reconnect=False)
        async with modems(first):
            await attached(transport)
            old_peer = transport.peer
            async with modems(second):
                await wait_until(lambda: transport.peer != old_peer and not first.connected)
                assert listener.stats.replaced == 1
                assert second.connected and transport.is_open
                driver = MilurDriver(meter(10, "gsm0"), ONE_PHASE)
                readings = await driver.read_registers(Link(transport, channel), ["voltage"])
                assert readings["voltage"].ok
                assert listener.connection_count == 1


async def test_connection_limits_close_excess_connections_at_once() -> None:
    listener = DialInListener(listener_config(identify_timeout=5.0, max_unidentified=2, max_connections=3))
    async with running(listener):
        pairs = [await asyncio.open_connection("127.0.0.1", listener.port) for _ in range(4)]
        try:
            closed = []
            for reader, _ in pairs:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        while await reader.read(100):
                            pass
                        closed.append(True)
            # the first two wait for identification; the other two were closed at once
            assert len(closed) == 2
            assert listener.unidentified_count == 2
            assert listener.stats.over_limit == 2
        finally:
            for _, writer in pairs:
                writer.close()


async def test_total_connection_limit_counts_identified_connections() -> None:
    listener = DialInListener(listener_config(method=IdentifyMethod.PEER_ADDRESS, max_connections=2))
    for i in range(3):
        listener.transport_for(dial_in_channel(f"c{i}", f"127.0.0.{i + 2}"))
    async with running(listener):
        pairs = [
            await asyncio.open_connection("127.0.0.1", listener.port, local_addr=(f"127.0.0.{i + 2}", 0))
            for i in range(3)
        ]
        try:
            async with asyncio.timeout(2):
                assert await pairs[2][0].read(100) == b""  # closed at once
            assert listener.channels["127.0.0.2"].is_open and listener.channels["127.0.0.3"].is_open
            assert not listener.channels["127.0.0.4"].is_open
        finally:
            for _, writer in pairs:
                writer.close()


async def test_serial_number_identification_with_a_session() -> None:
    sim = SimulatedMeter("107", 44, serial_number="012049944", password=b"123456")
    cfg = listener_config(method=IdentifyMethod.SERIAL_NUMBER, identify_address=44)
    listener = DialInListener(cfg, identify_password=Secret(b"123456"))
    transport = listener.transport_for(dial_in_channel("gsm0", "012049944"))
    async with running(listener):
        modem = DialOutModem(SimulatedBus([sim]), "127.0.0.1", listener.port, IMEIS[0])
        async with modems(modem):
            await attached(transport)
    assert sim.counters.sessions_opened == 1


async def test_serial_number_identification_never_retries_a_rejected_password(
    wait_until: WaitUntil,
) -> None:
    sim = SimulatedMeter("107", 45, password=b"123456")
    cfg = listener_config(method=IdentifyMethod.SERIAL_NUMBER, identify_address=45, identify_timeout=2.0)
    listener = DialInListener(cfg, identify_password=Secret(b"wrong!"))
    transport = listener.transport_for(dial_in_channel("gsm0", sim.serial_number))
    async with running(listener):
        modem = DialOutModem(SimulatedBus([sim]), "127.0.0.1", listener.port, IMEIS[0], reconnect=False)
        async with modems(modem):
            await wait_until(lambda: listener.stats.unidentified >= 1, within=3)
    assert sim.counters.wrong_passwords == 1
    assert not transport.is_open


async def test_open_waits_at_most_attach_timeout() -> None:
    channel = dial_in_channel("gsm0", IMEIS[0])
    transport = DialInTransport(channel, attach_timeout=0.1)
    with pytest.raises(TransportUnavailable, match=IMEIS[0]):
        await transport.open()


async def test_a_thousand_connections_need_no_thread_and_no_task_once_identified(
    wait_until: WaitUntil,
) -> None:
    count = 1000
    ips = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(count)]
    listener = DialInListener(listener_config(method=IdentifyMethod.PEER_ADDRESS))
    for i, ip in enumerate(ips):
        listener.transport_for(dial_in_channel(f"c{i}", ip))
    threads = threading.active_count()
    async with running(listener):
        pairs = [
            await asyncio.open_connection("127.0.0.1", listener.port, local_addr=(ip, 0)) for ip in ips
        ]
        try:
            await wait_until(lambda: listener.stats.identified >= count, within=10)
            assert listener.connection_count == count
            assert listener.unidentified_count == 0
            assert all(t.is_open for t in listener.channels.values())
            assert threading.active_count() == threads
            # a task per connection would show here; identified connections have none
            assert len(asyncio.all_tasks()) < 10
        finally:
            for _, writer in pairs:
                writer.close()
