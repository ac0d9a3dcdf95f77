"""Link over real TCP: half-open detection, dropped connections, gap, counters."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from driver_rig import meter_config, tcp_channel, tcp_rig, template

from bridge.config.model import ChannelConfig, ChannelKind, Parity, SerialSettings
from bridge.drivers.errors import LinkDown, ResponseTimeout
from bridge.drivers.link import DEFAULT_HALF_OPEN_TIMEOUTS, Link, frame_gap
from bridge.drivers.milur import MilurDriver
from bridge.protocol.milur.frames import Address, read_request
from bridge.simulator.meter import SimulatedMeter
from bridge.transport.errors import TransportClosed
from bridge.transport.tcp_client import TcpClientTransport

pytestmark = [pytest.mark.timeout(20), pytest.mark.usefixtures("no_leftovers")]


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[int, list[int]]]:
    """Accepts connections, reads everything, never answers (a half-open GSM link)."""
    accepted: list[int] = []
    handlers: set[asyncio.Task[None]] = set()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        accepted.append(1)
        try:
            while await reader.read(1024):
                pass
        finally:
            writer.close()
            handlers.discard(task)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def test_half_open_socket_is_closed_after_consecutive_timeouts() -> None:
    async with silent_server() as (port, accepted):
        channel = tcp_channel(port, response_timeout=0.05)
        transport = TcpClientTransport(channel)
        await transport.open()
        link = Link(transport, channel)
        request = read_request(Address(1), 1)
        for _ in range(DEFAULT_HALF_OPEN_TIMEOUTS):
            assert transport.is_open
            with pytest.raises(ResponseTimeout):
                await link.transact(request)
        assert not transport.is_open
        assert link.stats.half_open_closes == 1
        with pytest.raises(LinkDown):
            await link.transact(request)
        await transport.open()  # polling reconnects
        assert transport.is_open and len(accepted) == 2
        await transport.close()


async def test_threshold_is_a_constructor_argument_and_replies_reset_it() -> None:
    sim = SimulatedMeter("107", 5)
    async with tcp_rig(sim, response_timeout=0.05) as rig:
        link = Link(rig.transport, rig.link.channel, half_open_after=2)
        ok = read_request(Address(5), 1)  # no session: the meter answers with error 08
        dead = read_request(Address(99), 1)  # nobody answers
        for _ in range(5):
            with pytest.raises(ResponseTimeout):
                await link.transact(dead)
            await link.transact(ok)  # any reply resets the count
        assert rig.transport.is_open
        for _ in range(2):
            with pytest.raises(ResponseTimeout):
                await link.transact(dead)
        assert not rig.transport.is_open


async def test_serial_links_have_no_half_open_threshold() -> None:
    channel = ChannelConfig("s", ChannelKind.SERIAL, serial=SerialSettings("/dev/null"))
    assert Link(_NeverOpen(), channel).half_open_after is None
    assert Link(_NeverOpen(), tcp_channel(1)).half_open_after == DEFAULT_HALF_OPEN_TIMEOUTS


async def test_dropped_connection_raises_link_down_then_reconnects() -> None:
    sim = SimulatedMeter("107", 7)
    async with tcp_rig(sim) as rig:
        driver = MilurDriver(meter_config(7), template())
        await driver.read_registers(rig.link, ["voltage"])
        rig.server.drop()
        with pytest.raises(LinkDown) as caught:
            for _ in range(3):  # the first write may still be accepted by the kernel
                await driver.read_registers(rig.link, ["voltage"])
        assert isinstance(caught.value, TransportClosed)
        assert not rig.transport.is_open
        await rig.transport.open()
        readings = await driver.read_registers(rig.link, ["voltage"])
        assert readings["voltage"].ok
        assert rig.server.accepted == 2


async def test_transact_on_a_closed_transport_is_link_down() -> None:
    link = Link(_NeverOpen(), tcp_channel(1))
    with pytest.raises(LinkDown):
        await link.transact(read_request(Address(1), 1))
    with pytest.raises(LinkDown):
        await link.send_wake_byte()


async def test_counters_and_round_trip() -> None:
    sim = SimulatedMeter("107", 8)
    async with tcp_rig(sim) as rig:
        sim.faults.garbage = True
        reply = await rig.link.transact(read_request(Address(8), 1))
        assert reply.func == 0x81  # error 08, no session: still a reply
        stats = rig.link.stats
        assert (stats.requests, stats.responses, stats.timeouts) == (1, 1, 0)
        assert stats.garbage_bytes >= len(sim.faults.garbage_bytes)
        assert 0 < stats.last_round_trip < 0.3


def test_frame_gap_is_at_least_three_and_a_half_characters_on_serial() -> None:
    slow = ChannelConfig(
        "s",
        ChannelKind.SERIAL,
        serial=SerialSettings("/dev/null", baudrate=1200, parity=Parity.EVEN),
        frame_gap=0.001,
    )
    # 8E1 = 11 bits per character; 3.5 characters at 1200 baud = 32.08 ms
    assert frame_gap(slow) == pytest.approx(0.0320833, rel=1e-4)
    fast = ChannelConfig("f", ChannelKind.SERIAL, serial=SerialSettings("/dev/null"), frame_gap=0.01)
    assert frame_gap(fast) == 0.01  # configured gap longer than 3.5 × 10 bits at 9600 (3.65 ms)
    assert frame_gap(tcp_channel(1, frame_gap=0.0)) == 0.0  # no character time on TCP


async def test_the_gap_separates_consecutive_requests() -> None:
    sim = SimulatedMeter("107", 9)
    async with tcp_rig(sim, frame_gap=0.05) as rig:
        loop = asyncio.get_running_loop()
        await rig.link.transact(read_request(Address(9), 1))
        start = loop.time()
        await rig.link.transact(read_request(Address(9), 1))
        assert loop.time() - start >= 0.05


class _NeverOpen:
    name = "never"
    peer = ""
    identity = ""
    is_open = False

    async def open(self) -> None:
        raise AssertionError("not used")

    async def close(self) -> None:
        pass

    async def write(self, data: bytes) -> None:
        raise TransportClosed("closed")

    async def read(self, timeout: float) -> bytes:  # noqa: ASYNC109
        raise TransportClosed("closed")

    def discard_input(self) -> None:
        pass
