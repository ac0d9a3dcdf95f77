"""A real pymodbus client reads values and status registers served from the tag store."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from pymodbus.client import AsyncModbusTcpClient

from bridge.config.model import ModbusPoint, ModbusTable, ModbusType, WordOrder
from bridge.tags.keys import meter_diag_key
from bridge.tags.model import Quality, TagValue
from bridge.tags.store import TagStore

from .builders import meter, now, serving, settings, site, tag

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_leftovers")]

ORDERS = list(WordOrder)
DT = AsyncModbusTcpClient.DATATYPE


@asynccontextmanager
async def modbus_client(port: int) -> AsyncIterator[AsyncModbusTcpClient]:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0, reconnect_delay=0)
    assert await client.connect()
    try:
        yield client
    finally:
        client.close()


def from_registers(registers: list[int], data_type, order: WordOrder):
    """Decode with pymodbus' own converter: BADC/DCBA are byte-swapped words in big/little order."""
    if order in (WordOrder.BADC, WordOrder.DCBA):
        registers = [((r & 0xFF) << 8) | (r >> 8) for r in registers]
    word_order = "big" if order in (WordOrder.ABCD, WordOrder.BADC) else "little"
    return AsyncModbusTcpClient.convert_from_registers(registers, data_type, word_order=word_order)


def as_float32(value: float) -> float:
    return struct.unpack(">f", struct.pack(">f", value))[0]


async def read(client, address, count, unit=1, table=ModbusTable.HOLDING) -> list[int]:
    if table is ModbusTable.HOLDING:
        reply = await client.read_holding_registers(address, count=count, device_id=unit)
    else:
        reply = await client.read_input_registers(address, count=count, device_id=unit)
    assert not reply.isError(), reply
    return list(reply.registers)


FLOAT32_TAGS = ["voltage_a", "voltage_b", "voltage_c", "frequency"]
FLOAT64_TAGS = ["power_active_a", "power_active_b", "power_active_c", "power_active_total"]


def word_order_mapping():
    tags = [
        tag("m1", name, point=ModbusPoint(address=200 + 2 * i, word_order=order))
        for i, (name, order) in enumerate(zip(FLOAT32_TAGS, ORDERS, strict=True))
    ]
    tags += [
        tag("m1", name, point=ModbusPoint(address=300 + 4 * i, word_order=order,
                                          data_type=ModbusType.FLOAT64))
        for i, (name, order) in enumerate(zip(FLOAT64_TAGS, ORDERS, strict=True))
    ]
    return site([meter("m1")], tags, settings())


async def test_floats_in_every_word_order_match_the_store():
    store = TagStore()
    values = {f"m1.{n}": 230.1 + i for i, n in enumerate(FLOAT32_TAGS)}
    values |= {f"m1.{n}": -1234.5678 * (i + 1) for i, n in enumerate(FLOAT64_TAGS)}
    store.define(values)
    store.set_good(values, now())
    async with serving(word_order_mapping(), store) as publisher, modbus_client(publisher.port) as c:
        block = await read(c, 200, 8)
        for i, (name, order) in enumerate(zip(FLOAT32_TAGS, ORDERS, strict=True)):
            served = from_registers(block[2 * i : 2 * i + 2], DT.FLOAT32, order)
            assert served == as_float32(store.get(f"m1.{name}").value), order
        block = await read(c, 300, 16)
        for i, (name, order) in enumerate(zip(FLOAT64_TAGS, ORDERS, strict=True)):
            served = from_registers(block[4 * i : 4 * i + 4], DT.FLOAT64, order)
            assert served == store.get(f"m1.{name}").value, order

        # a later change reaches the registers through on_changes and the update task
        store.set_good({"m1.voltage_c": 199.25, "m1.power_active_b": 7.5}, now())
        for _ in range(100):
            block = await read(c, 204, 2)
            if from_registers(block, DT.FLOAT32, WordOrder.BADC) == 199.25:
                break
        else:
            pytest.fail("the change never reached the registers")
        assert from_registers(await read(c, 304, 4), DT.FLOAT64, WordOrder.CDAB) == 7.5


async def test_integer_types_with_scale():
    tags = [
        tag("m1", "current_a", point=ModbusPoint(address=400, data_type=ModbusType.INT16,
                                                 scale=100.0)),
        tag("m1", "power_apparent_total", point=ModbusPoint(
            address=402, table=ModbusTable.INPUT, data_type=ModbusType.UINT32,
            word_order=WordOrder.CDAB, scale=10.0)),
        tag("m1", "power_reactive_total", point=ModbusPoint(
            address=404, data_type=ModbusType.INT32, word_order=WordOrder.DCBA)),
        tag("m1", "frequency", point=ModbusPoint(address=406, data_type=ModbusType.UINT16,
                                                 scale=100.0)),
    ]
    store = TagStore()
    values = {"m1.current_a": -12.345, "m1.power_apparent_total": 123456.78,
              "m1.power_reactive_total": -70000.4, "m1.frequency": 50.016}
    store.define(values)
    store.set_good(values, now())
    async with serving(site([meter("m1")], tags, settings()), store) as publisher, \
            modbus_client(publisher.port) as c:
        [current] = await read(c, 400, 1)
        assert from_registers([current], DT.INT16, WordOrder.ABCD) == -1234
        apparent = await read(c, 402, 2, table=ModbusTable.INPUT)
        assert from_registers(apparent, DT.UINT32, WordOrder.CDAB) == 1234568
        reactive = await read(c, 404, 2)
        assert from_registers(reactive, DT.INT32, WordOrder.DCBA) == -70000
        assert await read(c, 406, 1) == [5002]
        # the input table holds only what was placed there
        reply = await c.read_input_registers(400, count=1, device_id=1)
        assert reply.isError() and reply.exception_code == 0x02


def status_mapping(**kwargs):
    tags = [tag("m1", "voltage_a"), tag("m1", "voltage_b"), tag("m2", "voltage_a")]
    return site([meter("m1"), meter("m2")], tags, settings(**kwargs))


async def test_status_registers(wait_until):
    store = TagStore()
    store.define(["m1.voltage_a", "m1.voltage_b", "m2.voltage_a"])
    t = now()
    store.set_good({"m1.voltage_a": 230.0}, t - timedelta(seconds=100))
    store.set_good({"m1.voltage_b": 231.0}, t - timedelta(seconds=20))
    store.set_values({
        meter_diag_key("m1", "consecutive_failures"): TagValue(3, Quality.Good, t, t),
        meter_diag_key("m1", "state"): TagValue("demoted", Quality.Good, t, t),
    })
    async with serving(status_mapping(), store) as publisher, modbus_client(publisher.port) as c:
        quality, oldest, failures, state, newest = await read(c, 0, 5, unit=1)
        assert (quality, failures, state) == (0, 3, 3)  # Good, 3 failures, "demoted"
        assert 100 <= oldest < 130 and 20 <= newest < 50
        # the same block is readable from the input table
        assert (await read(c, 0, 5, unit=1, table=ModbusTable.INPUT))[0] == 0
        # meter 2 was never read: waiting for initial data, ages "never"
        assert await read(c, 0, 5, unit=2) == [4, 0xFFFF, 0, 0, 0xFFFF]

        # a failed read with a young value: Uncertain (1); the source time is kept
        store.set_failed(["m1.voltage_b"], Quality.Bad_CommunicationError, timedelta(hours=1))
        await wait_until(lambda: publisher.image.read(1, 3, 0, 1) == [1], what="uncertain")
        store.set_failed(["m1.voltage_a"], Quality.Bad_NotConnected)
        store.set_values({meter_diag_key("m1", "state"): TagValue("not_connected", Quality.Good,
                                                                 t, t)})
        await wait_until(lambda: publisher.image.read(1, 3, 0, 4)[3] == 5, what="state")
        quality, later_oldest, _, state, _ = await read(c, 0, 5, unit=1)
        assert (quality, state) == (3, 5)  # worst quality wins: Bad_NotConnected
        # the age keeps growing while nothing new arrives (refreshed once a second)
        await wait_until(lambda: publisher.image.read(1, 3, 1, 1)[0] > later_oldest,
                         within=5, what="age refresh")


async def test_bad_tag_serves_last_value_and_bad_status_by_default(wait_until):
    store = TagStore()
    store.define(["m1.voltage_a", "m1.voltage_b"])
    store.set_good({"m1.voltage_a": 229.5}, now())
    store.set_failed(["m1.voltage_a"], Quality.Bad_CommunicationError)  # no bad_after: bad now
    async with serving(status_mapping(), store) as publisher, modbus_client(publisher.port) as c:
        a, b = await read(c, 100, 2), await read(c, 102, 2)
        assert from_registers(a, DT.FLOAT32, WordOrder.ABCD) == 229.5  # last value
        assert from_registers(b, DT.FLOAT32, WordOrder.ABCD) != from_registers(
            b, DT.FLOAT32, WordOrder.ABCD)  # NaN: never read
        assert (await read(c, 0, 1))[0] == 4  # worst: Bad_WaitingForInitialData


async def test_bad_tag_answers_0x0b_with_the_option(wait_until):
    store = TagStore()
    store.define(["m1.voltage_a", "m1.voltage_b"])
    store.set_good({"m1.voltage_a": 229.5, "m1.voltage_b": 230.5}, now())
    store.set_failed(["m1.voltage_b"], Quality.Bad_CommunicationError)
    mapping = status_mapping(bad_value_exception=True)
    async with serving(mapping, store) as publisher, modbus_client(publisher.port) as c:
        assert from_registers(await read(c, 100, 2), DT.FLOAT32, WordOrder.ABCD) == 229.5
        for address, count in ((102, 2), (103, 1), (100, 4)):  # any read touching the bad tag
            reply = await c.read_holding_registers(address, count=count, device_id=1)
            assert reply.isError() and reply.exception_code == 0x0B, (address, count)
        assert (await read(c, 0, 1))[0] == 2  # status still readable: Bad_CommunicationError

        store.set_good({"m1.voltage_b": 231.5}, now())  # recovers
        await wait_until(lambda: publisher.image.read(1, 3, 102, 2) != 0x0B, what="recovery")
        assert from_registers(await read(c, 102, 2), DT.FLOAT32, WordOrder.ABCD) == 231.5
