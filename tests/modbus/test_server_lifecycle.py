"""Publisher lifecycle: reload without dropping clients, counters, the pymodbus datastore, loops."""

from __future__ import annotations

import asyncio
import struct

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException

from bridge.config.errors import MappingError
from bridge.config.model import ModbusPoint, ModbusTable, ModbusType
from bridge.publishers.modbus import event_loop_factory
from bridge.publishers.modbus_image import RegisterImage
from bridge.publishers.modbus_server import ImageContext
from bridge.tags.store import TagStore

from .builders import meter, now, serving, settings, site, tag

pytestmark = pytest.mark.timeout(30)
clean = pytest.mark.usefixtures("no_leftovers")


def float_at(registers) -> float:
    return struct.unpack(">f", struct.pack(">2H", *registers))[0]


def store_with(values: dict[str, float]) -> TagStore:
    store = TagStore()
    store.define(values)
    store.set_good(values, now())
    return store


@clean
async def test_reload_changes_the_map_and_keeps_clients_connected(wait_until):
    store = store_with({"m1.voltage_a": 230.0, "m1.voltage_b": 231.0, "m1.current_a": 5.0})
    first = site([meter("m1")], [tag("m1", "voltage_a"), tag("m1", "current_a")], settings())
    second = site([meter("m1")], [tag("m1", "voltage_a"), tag("m1", "voltage_b")], settings())
    async with serving(first, store) as publisher:
        client = AsyncModbusTcpClient("127.0.0.1", port=publisher.port, timeout=2, retries=0,
                                      reconnect_delay=0)
        assert await client.connect()
        try:
            before = await client.read_holding_registers(100, count=4, device_id=1)
            assert float_at(before.registers[2:]) == 5.0  # current_a at 102
            await publisher.apply_mapping(second)
            after = await client.read_holding_registers(100, count=4, device_id=1)
            assert not after.isError()
            assert [float_at(after.registers[:2]), float_at(after.registers[2:])] == [230.0, 231.0]
            assert publisher.connections() == 1
            # changes after the reload land in the new layout
            store.set_good({"m1.voltage_b": 232.5}, now())
            await wait_until(lambda: publisher.image.read(1, 3, 102, 2) != after.registers[2:])
            reply = await client.read_holding_registers(102, count=2, device_id=1)
            assert float_at(reply.registers) == 232.5
        finally:
            client.close()


@clean
async def test_reload_with_a_bad_mapping_changes_nothing():
    store = store_with({"m1.voltage_a": 230.0})
    good = site([meter("m1")], [tag("m1", "voltage_a")], settings())
    bad = site([meter("m1", unit_id=500)], [tag("m1", "voltage_a")], settings())
    async with serving(good, store) as publisher:
        with pytest.raises(MappingError):
            await publisher.apply_mapping(bad)
        assert float_at(publisher.image.read(1, 3, 100, 2)) == 230.0


@clean
async def test_reload_to_another_port_moves_the_listener():
    store = store_with({"m1.voltage_a": 230.0})
    mapping = site([meter("m1")], [tag("m1", "voltage_a")], settings())
    async with serving(mapping, store) as publisher:
        old_port = publisher.port
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        new_port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        await publisher.apply_mapping(site([meter("m1")], [tag("m1", "voltage_a")],
                                    settings(port=new_port)))
        assert publisher.port == new_port != old_port
        with pytest.raises(OSError):
            _, w = await asyncio.open_connection("127.0.0.1", old_port)
            w.close()
        client = AsyncModbusTcpClient("127.0.0.1", port=new_port, timeout=2, retries=0,
                                      reconnect_delay=0)
        assert await client.connect()
        try:
            reply = await client.read_holding_registers(100, count=2, device_id=1)
            assert float_at(reply.registers) == 230.0
        finally:
            client.close()


@clean
async def test_diagnostics_count_requests_exceptions_and_refusals():
    store = store_with({"m1.voltage_a": 230.0})
    mapping = site([meter("m1")], [tag("m1", "voltage_a")], settings())
    async with serving(mapping, store) as publisher:
        client = AsyncModbusTcpClient("127.0.0.1", port=publisher.port, timeout=2, retries=0,
                                      reconnect_delay=0)
        assert await client.connect()
        try:
            await client.read_holding_registers(100, count=2, device_id=1)
            await client.read_holding_registers(100, count=2, device_id=9)
            await client.write_register(100, 1, device_id=1)
            diagnostics = publisher.diagnostics()
            figures = publisher.metrics()
        finally:
            client.close()
    assert diagnostics == {"connections": 1, "requests": 3, "exceptions": {0x0B: 1, 0x01: 1},
                           "refused": 0, "dropped": 0}
    assert figures["milur_modbus_requests_total"] == 3.0
    assert figures["milur_modbus_exceptions_total"] == 2.0
    assert figures["milur_modbus_exceptions_gateway_no_response_total"] == 1.0
    assert figures["milur_modbus_exceptions_illegal_function_total"] == 1.0
    assert figures["milur_modbus_exceptions_illegal_address_total"] == 0.0
    assert figures["milur_modbus_connections"] == 1.0


@clean
async def test_image_context_answers_like_the_server():
    image = RegisterImage([(1, ModbusTable.HOLDING, 10, 2)])
    image.write(1, ModbusTable.HOLDING, 10, [7, 8])
    context = ImageContext(image)
    assert await context.async_getValues(1, 3, 10, 2) == [7, 8]
    assert await context.async_getValues(1, 3, 11, 2) == ExcCodes.ILLEGAL_ADDRESS
    assert await context.async_getValues(1, 4, 10, 1) == ExcCodes.ILLEGAL_ADDRESS
    assert await context.async_setValues(1, 6, 10, [1]) == ExcCodes.ILLEGAL_FUNCTION
    with pytest.raises(NoSuchIdException):
        await context.async_getValues(2, 3, 10, 1)
    assert context.device_ids() == [1]


def test_event_loop_factory():
    import uvloop  # a dependency on every platform the bridge runs on

    assert event_loop_factory(settings(use_uvloop=True)) is uvloop.new_event_loop
    assert event_loop_factory(settings(use_uvloop=False)) is None


def test_publisher_serves_under_uvloop():
    import uvloop
    mapping = site([meter("m1")], [tag("m1", "voltage_a", point=ModbusPoint(
        data_type=ModbusType.FLOAT32))], settings())

    async def scenario() -> float:
        store = store_with({"m1.voltage_a": 229.75})
        async with serving(mapping, store) as publisher:
            client = AsyncModbusTcpClient("127.0.0.1", port=publisher.port, timeout=2,
                                          retries=0, reconnect_delay=0)
            assert await client.connect()
            try:
                reply = await client.read_holding_registers(100, count=2, device_id=1)
            finally:
                client.close()
            return float_at(reply.registers)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(scenario()) == 229.75
