"""Protocol behaviour of the Modbus server: exceptions, malformed requests, clients, concurrency."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import struct
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from pymodbus.client import AsyncModbusTcpClient

from bridge.config.model import ModbusPoint, ModbusType, WordOrder
from bridge.tags.store import TagStore

from .builders import meter, now, serving, settings, site, tag

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_leftovers")]

KEYS = ["m1.voltage_a", "m1.voltage_b", "m1.power_active_a", "m1.power_active_b"]


def mapping(**kwargs):
    tags = [
        tag("m1", "voltage_a", point=ModbusPoint(address=200)),  # float32 ABCD
        tag("m1", "voltage_b", point=ModbusPoint(address=202, word_order=WordOrder.CDAB)),
        tag("m1", "power_active_a", point=ModbusPoint(address=300, data_type=ModbusType.FLOAT64)),
        tag("m1", "power_active_b", point=ModbusPoint(address=304, data_type=ModbusType.FLOAT64)),
    ]
    return site([meter("m1")], tags, settings(**kwargs))


def filled_store() -> TagStore:
    store = TagStore()
    store.define(KEYS)
    store.set_good(
        {"m1.voltage_a": 230.5, "m1.voltage_b": 231.25, "m1.power_active_a": 1.5,
         "m1.power_active_b": -1.5},
        now(),
    )
    return store


@asynccontextmanager
async def modbus_client(port: int) -> AsyncIterator[AsyncModbusTcpClient]:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0, reconnect_delay=0)
    assert await client.connect()
    try:
        yield client
    finally:
        client.close()


@asynccontextmanager
async def raw_socket(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


def adu(tid: int, unit: int, pdu: bytes, protocol: int = 0, length: int | None = None) -> bytes:
    return struct.pack(">HHHB", tid, protocol, len(pdu) + 1 if length is None else length,
                       unit) + pdu


async def reply(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    header = await asyncio.wait_for(reader.readexactly(7), 5)
    tid, protocol, length, unit = struct.unpack(">HHHB", header)
    assert protocol == 0
    return tid, unit, await asyncio.wait_for(reader.readexactly(length - 1), 5)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(100), 5) == b""
    except ConnectionResetError:
        return True


async def test_exception_codes_for_units_addresses_and_writes():
    async with serving(mapping(), filled_store()) as publisher, modbus_client(publisher.port) as c:
        checks = [
            (c.read_holding_registers(200, count=2, device_id=99), 0x0B),  # unknown unit id
            (c.read_holding_registers(5000, count=1, device_id=1), 0x02),  # outside the map
            (c.read_holding_registers(0, count=10, device_id=1), 0x02),  # runs past the status
            (c.read_holding_registers(198, count=4, device_id=1), 0x02),  # starts before 200
            (c.read_input_registers(200, count=2, device_id=1), 0x02),  # not in the input table
            (c.write_register(200, 1, device_id=1), 0x01),  # read-only
            (c.write_registers(200, [1, 2], device_id=1), 0x01),
            (c.write_register(200, 1, device_id=42), 0x0B),
            (c.read_coils(0, count=1, device_id=1), 0x01),
        ]
        for request, code in checks:
            answer = await request
            assert answer.isError() and answer.exception_code == code, (answer, code)
        # the connection is still fine after all those exceptions
        ok = await c.read_holding_registers(200, count=4, device_id=1)
        assert not ok.isError() and len(ok.registers) == 4


@pytest.mark.parametrize(
    ("pdu", "expected"),
    [
        (struct.pack(">BHH", 3, 200, 0), bytes([0x83, 0x03])),  # count 0
        (struct.pack(">BHH", 3, 200, 126), bytes([0x83, 0x03])),  # count above 125
        (struct.pack(">BHH", 4, 0, 2000), bytes([0x84, 0x03])),  # a huge range
        (struct.pack(">BHH", 3, 65535, 2), bytes([0x83, 0x02])),  # past the last address
        (struct.pack(">BHHB", 3, 200, 2, 0), bytes([0x83, 0x03])),  # trailing byte
        (bytes([3, 0, 200]), bytes([0x83, 0x03])),  # truncated PDU
        (bytes([0x41, 1, 2]), bytes([0xC1, 0x01])),  # unknown function code
        (bytes([0x2B, 0x0E, 1, 0]), bytes([0xAB, 0x01])),  # device identification: not offered
        (bytes([0x08, 0, 0, 0x12, 0x34]), bytes([0x88, 0x01])),  # diagnostics: not offered
    ],
)
async def test_malformed_requests_get_the_right_exception(pdu, expected):
    async with serving(mapping(), filled_store()) as publisher, raw_socket(publisher.port) as (r, w):
        w.write(adu(7, 1, pdu))
        assert await reply(r) == (7, 1, expected)


@pytest.mark.parametrize(
    "header",
    [
        adu(1, 1, struct.pack(">BHH", 3, 200, 2), protocol=1),  # not Modbus
        adu(1, 1, b"", length=1),  # no function code
        adu(1, 1, b"\x03", length=300),  # longer than any Modbus TCP ADU
    ],
)
async def test_malformed_mbap_closes_the_connection_and_the_server_carries_on(header, caplog):
    caplog.set_level(logging.WARNING, logger="bridge.publishers.modbus_access")
    async with serving(mapping(), filled_store()) as publisher:
        for _ in range(2):
            async with raw_socket(publisher.port) as (reader, writer):
                writer.write(header)
                assert await closed_by_server(reader)
        assert publisher.gate.dropped == 2
        logged = [r.getMessage() for r in caplog.records]
        assert logged == ["modbus: closed connection from 127.0.0.1: not a Modbus TCP request "
                          "(logged once per address)"]
        async with raw_socket(publisher.port) as (reader, writer):
            writer.write(adu(2, 1, struct.pack(">BHH", 3, 200, 2)))
            tid, _, pdu = await reply(reader)
            assert (tid, pdu[:2]) == (2, bytes([3, 4]))


async def test_pipelined_and_fragmented_requests_are_answered_in_order():
    async with serving(mapping(), filled_store()) as publisher, raw_socket(publisher.port) as (r, w):
        requests = b"".join(adu(tid, 1, struct.pack(">BHH", 3, 200 + 2 * tid, 2)) for tid in (0, 1))
        requests += adu(9, 77, struct.pack(">BHH", 3, 0, 1))
        w.write(requests)
        answers = [await reply(r) for _ in range(3)]
        assert [(a[0], a[2][:2]) for a in answers] == [(0, b"\x03\x04"), (1, b"\x03\x04"),
                                                       (9, b"\x83\x0b")]
        assert struct.unpack(">f", answers[0][2][2:])[0] == 230.5
        one = adu(3, 1, struct.pack(">BHH", 3, 200, 2))
        for byte in one:  # byte by byte
            w.write(bytes([byte]))
            await w.drain()
        assert (await reply(r))[0] == 3


async def test_client_outside_the_allow_list_is_refused_and_logged_once(caplog):
    caplog.set_level(logging.WARNING, logger="bridge.publishers.modbus_access")
    async with serving(mapping(allow=("10.0.0.0/8",)), filled_store()) as publisher:
        for _ in range(2):
            async with raw_socket(publisher.port) as (reader, writer):
                writer.write(adu(1, 1, struct.pack(">BHH", 3, 200, 2)))
                assert await closed_by_server(reader)
        refusals = [r for r in caplog.records if "refused client 127.0.0.1" in r.getMessage()]
        assert len(refusals) == 1
        assert publisher.gate.refused == 2


async def test_client_in_the_allow_list_is_served():
    allow = ("10.0.0.0/8", "127.0.0.0/8")
    async with serving(mapping(allow=allow), filled_store()) as publisher, \
            modbus_client(publisher.port) as c:
        assert not (await c.read_holding_registers(200, count=2, device_id=1)).isError()


async def test_max_connections(wait_until):
    async with serving(mapping(max_connections=2), filled_store()) as publisher:
        async with raw_socket(publisher.port) as (r1, w1), raw_socket(publisher.port) as (r2, w2):
            for tid, (r, w) in enumerate(((r1, w1), (r2, w2))):
                w.write(adu(tid, 1, struct.pack(">BHH", 3, 200, 2)))
                assert (await reply(r))[0] == tid
            async with raw_socket(publisher.port) as (r3, _):
                assert await closed_by_server(r3)
        await wait_until(lambda: publisher.connections() == 0, what="connections closed")
        async with raw_socket(publisher.port) as (r4, w4):  # room again
            w4.write(adu(5, 1, struct.pack(">BHH", 3, 200, 2)))
            assert (await reply(r4))[0] == 5


async def test_ten_clients_never_see_torn_values_while_values_change():
    store = filled_store()
    written: set[float] = set()
    done = asyncio.Event()

    async def change_values() -> None:
        for i in range(400):
            value = (i + 1) / 3.0 + 1e6 * (i % 7)  # differing words in every register
            written.add(value)
            # one batch: both tags change together, so a read of both sees a matching pair
            store.set_good({"m1.power_active_a": value, "m1.power_active_b": -value}, now())
            await asyncio.sleep(0.001)
        done.set()

    async def poll(port: int) -> int:
        reads = 0
        async with modbus_client(port) as c:
            while not done.is_set() or reads < 20:
                answer = await c.read_holding_registers(300, count=8, device_id=1)
                assert not answer.isError()
                a, b = struct.unpack(">dd", struct.pack(">8H", *answer.registers))
                assert a == -b, (a, b)
                assert a in written or a == 1.5
                reads += 1
        return reads

    async with serving(mapping(), store) as publisher:
        writer = asyncio.create_task(change_values())
        counts = await asyncio.gather(*(poll(publisher.port) for _ in range(10)))
        await writer
    assert all(n >= 20 for n in counts)


@pytest.mark.parametrize(("reference", "options", "expected"), [
    (201, ["-B"], 230.5),  # ABCD: big-endian words
    (203, [], 231.25),  # CDAB: mbpoll's default word order
])
async def test_mbpoll_reads_a_float(reference, options, expected):
    assert shutil.which("mbpoll"), "mbpoll is missing: tests/setup_system.sh installs it"
    async with serving(mapping(), filled_store()) as publisher:
        # a plain subprocess in a worker thread: asyncio's child watcher thread could outlive
        # the test by a moment; the executor's threads are shut down by no_leftovers
        command = ["mbpoll", "-m", "tcp", "-a", "1", "-r", str(reference), "-t", "4:float",
                   "-c", "1", "-1", "-o", "2", *options, "-p", str(publisher.port), "127.0.0.1"]
        process = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=15
        )
    text = process.stdout + process.stderr
    assert process.returncode == 0, text
    match = re.search(rf"\[{reference}\]:\s*(\S+)", text)
    assert match, text
    assert float(match.group(1)) == expected


async def test_port_in_use_is_a_clear_error():
    async with serving(mapping(), filled_store()) as first:
        second_mapping = mapping(port=first.port)
        from bridge.publishers.modbus import ModbusPublisher

        second = ModbusPublisher(second_mapping, TagStore())
        with pytest.raises(OSError, match="cannot listen on 127.0.0.1"):
            await second.start()
