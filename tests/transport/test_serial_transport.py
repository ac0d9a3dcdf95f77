"""SerialTransport over a pseudo-terminal (the simulator's PtyLine) and pyserial URL handlers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.config.model import ChannelConfig, ChannelKind, MeterConfig, SerialSettings
from bridge.config.templates import builtin_templates
from bridge.drivers.errors import LinkDown, ResponseTimeout
from bridge.drivers.link import Link
from bridge.drivers.milur import MilurDriver
from bridge.simulator.bus import SimulatedBus
from bridge.simulator.meter import SimulatedMeter
from bridge.simulator.pty import PtyLine
from bridge.simulator.serving import TcpMeterServer
from bridge.transport.errors import ReadTimeout, TransportClosed, TransportUnavailable
from bridge.transport.serial import SerialTransport

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_leftovers")]

ONE_PHASE = builtin_templates()["milur-1phase"]


def serial_channel(port: str, **kw: object) -> ChannelConfig:
    opts: dict[str, object] = {"response_timeout": 0.5, "retries": 0, "frame_gap": 0.005, **kw}
    return ChannelConfig(
        "rs485", ChannelKind.SERIAL, serial=SerialSettings(port, baudrate=9600), **opts  # type: ignore[arg-type]
    )


def meter(address: int, model: str = "107", **kw: object) -> MeterConfig:
    return MeterConfig(f"m{address}", "rs485", model, "milur-1phase", address, **kw)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def pty_line(tmp_path: Path, *meters: SimulatedMeter) -> AsyncIterator[PtyLine]:
    async with PtyLine(SimulatedBus(meters), 9600, link=str(tmp_path / "ttyUSB0")) as line:
        yield line


async def test_reads_over_a_pseudo_terminal(tmp_path: Path) -> None:
    sim = SimulatedMeter("107", 3)
    async with pty_line(tmp_path, sim) as line:
        transport = SerialTransport(serial_channel(line.device))
        await transport.open()
        try:
            assert transport.peer == line.device
            link = Link(transport, serial_channel(line.device))
            driver = MilurDriver(meter(3), ONE_PHASE)
            readings = await driver.read_registers(link, ["voltage", "frequency", "serial_number"])
            assert readings["serial_number"].value == sim.serial_number
            assert all(r.ok for r in readings.values())
            assert line.bytes_received > 0 and line.bytes_sent > 0
        finally:
            await transport.close()


async def test_unplugged_adapter_is_transport_closed_then_reopens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim = SimulatedMeter("107", 4)
    async with pty_line(tmp_path, sim) as line:
        channel = serial_channel(line.device)
        transport = SerialTransport(channel)
        link = Link(transport, channel)
        driver = MilurDriver(meter(4), ONE_PHASE)
        await transport.open()
        try:
            assert (await driver.read_registers(link, ["voltage"]))["voltage"].ok
            await line.close()  # USB adapter unplugged
            with pytest.raises(TransportClosed):
                await transport.read(0.5)
            assert not transport.is_open
            with pytest.raises(LinkDown):
                await driver.read_registers(link, ["voltage"])
            with pytest.raises(TransportUnavailable):
                await transport.open()  # the device node is gone
            await line.start()  # plugged back in: a new pty behind the same path
            await transport.open()
            assert (await driver.read_registers(link, ["voltage"]))["voltage"].ok
        finally:
            await transport.close()
    lost = [r for r in caplog.records if r.name == "bridge.transport.serial" and "lost" in r.getMessage()]
    assert len(lost) == 1  # logged once, not on every failed read


async def test_write_after_unplug_is_transport_closed(tmp_path: Path) -> None:
    async with pty_line(tmp_path) as line:
        transport = SerialTransport(serial_channel(line.device))
        await transport.open()
        try:
            await line.close()
            with pytest.raises(TransportClosed):
                for _ in range(3):  # the loss may be noticed by the write or by the reader
                    await transport.write(b"\x01\x02")
                    await transport.read(0.2)
        finally:
            await transport.close()


async def test_wake_byte_lets_a_104_answer_every_request(tmp_path: Path) -> None:
    # 4-byte address: every read request is an 8-byte packet, which deafens a 104 (§1)
    sim = SimulatedMeter("104", 49932)
    names = ["voltage", "current", "frequency", "energy_active_import_total"]
    async with pty_line(tmp_path, sim) as line:
        channel = serial_channel(line.device)
        transport = SerialTransport(channel)
        await transport.open()
        try:
            link = Link(transport, channel)
            driver = MilurDriver(meter(49932, "104", wake_byte=True), ONE_PHASE)
            readings = await driver.read_registers(link, names)
            assert all(r.ok for r in readings.values())
            assert sim.counters.ignored == 0
            assert link.stats.wake_bytes == link.stats.requests == 1 + len(names)

            # the control: without the wake byte the same meter ignores requests
            bare = MilurDriver(meter(49932, "104", wake_byte=False), ONE_PHASE)
            bare.session_open = True
            with pytest.raises(ResponseTimeout):
                for _ in range(3):
                    await bare.read_registers(link, names)
            assert sim.counters.ignored > 0
        finally:
            await transport.close()


async def test_missing_device_is_unavailable(tmp_path: Path) -> None:
    transport = SerialTransport(serial_channel(str(tmp_path / "ttyUSB9")))
    with pytest.raises(TransportUnavailable, match="ttyUSB9"):
        await transport.open()
    assert not transport.is_open
    with pytest.raises(TransportClosed):
        await transport.write(b"\xff")


async def test_url_handler_loop() -> None:
    transport = SerialTransport(serial_channel("loop://"))
    await transport.open()
    try:
        await transport.write(b"\x01\x02\x03")
        data = b""
        while len(data) < 3:
            data += await transport.read(1.0)
        assert data == b"\x01\x02\x03"
        await transport.write(b"\x04")
        await transport.close()
        with pytest.raises(TransportClosed):
            await transport.read(0.1)
        await transport.open()  # reopenable
        with pytest.raises(ReadTimeout):
            await transport.read(0.15)
    finally:
        await transport.close()


async def test_url_handler_socket_reads_a_meter(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    sim = SimulatedMeter("107", 6)
    async with TcpMeterServer(SimulatedBus([sim])) as server:
        channel = serial_channel(f"socket://127.0.0.1:{server.port}")
        transport = SerialTransport(channel)
        await transport.open()
        try:
            driver = MilurDriver(meter(6), ONE_PHASE)
            readings = await driver.read_registers(Link(transport, channel), ["voltage", "model"])
            assert readings["model"].value == sim.model_text
        finally:
            await transport.close()
