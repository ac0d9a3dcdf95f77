"""Hostile Modbus TCP traffic against a running bridge (raw sockets), a good client after each.

tests/modbus/test_server_protocol.py covers the publisher's answers one by one; here the same kind
of input hits the whole bridge in a row, on one server that also polls meters, and after every
request a fresh pymodbus client must still read a Good, moving value.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest
from faults.bridge_rig import (
    ChannelSpec,
    MeterSpec,
    SiteSpec,
    healthy_and_moving,
    modbus_client,
    placement,
    read_float,
    running_bridge,
    settled_census,
    tcp,
)

from bridge.simulator import SimulatedBus, SimulatedMeter, TcpMeterServer

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("no_leftovers")]


def adu(unit: int, pdu: bytes, *, tid: int = 9, protocol: int = 0, length: int | None = None) -> bytes:
    size = len(pdu) + 1 if length is None else length
    return struct.pack(">HHHB", tid, protocol, size, unit) + pdu


def read(fc: int, address: int, count: int) -> bytes:
    return struct.pack(">BHH", fc, address, count)


async def exchange(port: int, data: bytes) -> bytes | None:
    """Send ``data`` on a new connection; the PDU of the answer, or None if the server hung up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        try:
            header = await asyncio.wait_for(reader.readexactly(7), 5)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        (length,) = struct.unpack(">H", header[4:6])
        return await asyncio.wait_for(reader.readexactly(length - 1), 5)
    finally:
        writer.transport.abort()


async def test_hostile_requests_in_a_row(tmp_path: Path) -> None:
    meters = [SimulatedMeter("105", 1), SimulatedMeter("105", 2)]
    async with TcpMeterServer(SimulatedBus(meters)) as gw:
        spec = SiteSpec([ChannelSpec("gw", tcp(gw.port), [MeterSpec("h1", 1), MeterSpec("h2", 2)])])
        async with running_bridge(tmp_path / "site.xml", spec) as app:
            assert app.modbus is not None
            port = app.modbus.port
            await healthy_and_moving(app, spec.endpoint, ["h1", "h2"])
            baseline = await settled_census()
            p = placement(app, "h1.voltage")
            unit, fc = p.unit_id, 3 if p.table.value == "holding" else 4
            good = adu(unit, read(fc, p.address, 2))
            # (what is sent, the exception PDU expected; None = the server closes the connection)
            cases: list[tuple[str, bytes, bytes | None]] = [
                ("count above 125", adu(unit, read(fc, p.address, 126)), bytes([fc | 0x80, 3])),
                ("count 0", adu(unit, read(fc, p.address, 0)), bytes([fc | 0x80, 3])),
                ("huge range", adu(unit, read(4, 0, 2000)), bytes([0x84, 3])),
                ("past the last address", adu(unit, read(fc, 65535, 2)), bytes([fc | 0x80, 2])),
                ("unknown function", adu(unit, bytes([0x41, 1, 2])), bytes([0xC1, 1])),
                ("function 0", adu(unit, bytes([0x00])), bytes([0x80, 1])),
                ("function 0x7F", adu(unit, bytes([0x7F, 0, 0])), bytes([0xFF, 1])),
                ("write coils", adu(unit, struct.pack(">BHHB", 15, 0, 8, 1) + b"\xff"), bytes([0x8F, 1])),
                ("write registers", adu(unit, struct.pack(">BHHBH", 16, p.address, 1, 2, 7)),
                 bytes([0x90, 1])),
                ("unit id 0", adu(0, read(fc, p.address, 2)), bytes([fc | 0x80, 0x0B])),
                ("unit id 248", adu(248, read(fc, p.address, 2)), bytes([fc | 0x80, 0x0B])),
                ("unit id 255", adu(255, read(fc, p.address, 2)), bytes([fc | 0x80, 0x0B])),
                ("truncated PDU", adu(unit, bytes([fc, 0])), bytes([fc | 0x80, 3])),
                ("protocol id 1", adu(unit, read(fc, p.address, 2), protocol=1), None),
                ("length 1, no function", adu(unit, b"", length=1), None),
                ("length 0", adu(unit, b"", length=0), None),
                ("length above any ADU", adu(unit, b"\x03", length=300), None),
                ("length 65535", adu(unit, b"\x03", length=65535), None),
            ]
            for what, data, expected in cases:
                answer = await exchange(port, data)
                assert answer == expected, (what, answer)
                async with modbus_client(app) as mb:
                    value = await read_float(mb, app, "h1.voltage")
                    assert 100.0 < value < 300.0, (what, value)
            # half a header, then silence and a hang-up; a length that promises more than comes
            for data in (good[:3], good[:7], adu(unit, read(fc, p.address, 2), length=20)):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(data)
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.transport.abort()
            # pipelined junk and a good request on one connection: the good one is still answered
            junk_then_good = adu(unit, bytes([0x41])) + good
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(junk_then_good)
                answers = []
                for _ in range(2):
                    header = await asyncio.wait_for(reader.readexactly(7), 5)
                    (length,) = struct.unpack(">H", header[4:6])
                    answers.append(await asyncio.wait_for(reader.readexactly(length - 1), 5))
                assert answers[0] == bytes([0xC1, 1])
                assert answers[1][:2] == bytes([fc, 4])
            finally:
                writer.transport.abort()
            await healthy_and_moving(app, spec.endpoint, ["h1", "h2"])
            diagnostics = app.modbus.diagnostics()
            assert diagnostics["dropped"] >= 5, diagnostics
            after = await settled_census()
            assert after.tasks <= baseline.tasks + 2, (baseline, after)
            assert after.threads <= baseline.threads
