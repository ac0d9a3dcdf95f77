"""Daily snapshot registers: placement, overlap checks, served values, and ``modbus-map``."""

from __future__ import annotations

import asyncio
import csv
import io
import math
from dataclasses import replace
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from bridge.cli import main
from bridge.config.errors import MappingError
from bridge.config.modbus_map import resolve_modbus_map
from bridge.config.modbus_snapshot import DATE_FIELDS, SNAPSHOT_REGISTERS
from bridge.config.model import ModbusPoint, ModbusType, Origin, TagConfig, WordOrder
from bridge.publishers.modbus import ModbusPublisher
from bridge.publishers.modbus_values import decode_registers
from bridge.storage import ArchiveKind, ArchiveRecord
from bridge.storage.archive_tags import ArchiveTagFeeder
from bridge.tags import TagStore

from .conftest import DAILY, DAYS, FilledStore, build_mapping, daily_value, day_start


def test_a_meter_with_a_daily_archive_gets_a_block_after_its_status_registers(tmp_path: Path):
    resolved = resolve_modbus_map(build_mapping(tmp_path / "db"))
    [block] = resolved.snapshot_blocks
    assert (block.meter, block.unit_id, block.address, block.words) == ("m1", 1, 5, 11)
    assert [(f.name, f.offset, f.data_type) for f in block.fields] == [
        ("energy_active_import_total", 0, ModbusType.FLOAT32),
        ("energy_active_export_total", 2, ModbusType.FLOAT32),
        ("energy_reactive_import_total", 4, ModbusType.FLOAT32),
        ("energy_reactive_export_total", 6, ModbusType.FLOAT32),
        ("year", 8, ModbusType.UINT16),
        ("month", 9, ModbusType.UINT16),
        ("day", 10, ModbusType.UINT16),
    ]
    assert [p.address for p in resolved.placements if p.tag.meter == "m1"] == [100, 102]


def test_flat_layout_and_float64(tmp_path: Path):
    base = build_mapping(tmp_path / "db")
    flat = replace(base, modbus=replace(base.modbus, layout="flat", data_type=ModbusType.FLOAT64))
    [block] = resolve_modbus_map(flat).snapshot_blocks
    assert (block.unit_id, block.address, block.words) == (1, 10, 19)  # after both status blocks
    assert {f.data_type for f in block.fields if f.name not in DATE_FIELDS} == {ModbusType.FLOAT64}


def test_tags_never_overlap_the_snapshot(tmp_path: Path):
    base = build_mapping(tmp_path / "db")
    auto = replace(base, modbus=replace(base.modbus, data_address=5))
    assert [p.address for p in resolve_modbus_map(auto).placements if p.tag.meter == "m1"] == [16, 18]
    clash = TagConfig("u", "m1", "voltage_a", modbus=ModbusPoint(address=9), origin=Origin("site.xml", 30))
    with pytest.raises(MappingError) as caught:
        resolve_modbus_map(build_mapping(tmp_path / "db", extra_tags=(clash,)))
    assert [str(e) for e in caught.value.errors] == [
        "site.xml:30: tag m1.u: holding register 9 of unit id 1 overlaps the daily snapshot "
        "registers of meter m1 (site.xml:11)"
    ]
    no_archives = build_mapping(tmp_path / "db", extra_tags=(clash,))
    no_archives = replace(no_archives, archives=replace(no_archives.archives, enabled=False))
    assert resolve_modbus_map(no_archives).snapshot_blocks == ()


async def read_block(client: AsyncModbusTcpClient, unit: int, function: str) -> list[int]:
    reply = await getattr(client, function)(5, count=11, device_id=unit)
    assert not reply.isError(), reply
    return list(reply.registers)


def energies(registers: list[int]) -> list[float]:
    return [
        decode_registers(registers[i : i + 2], ModbusType.FLOAT32, WordOrder.ABCD)
        for i in range(0, 8, 2)
    ]


@pytest.mark.timeout(30)
@pytest.mark.usefixtures("no_leftovers")
async def test_the_last_daily_record_is_served_to_a_modbus_client(filled: FilledStore):
    mapping = build_mapping(filled.path)
    tags = TagStore()
    feeder = ArchiveTagFeeder(mapping, tags, filled.store)
    await feeder.start()
    publisher = ModbusPublisher(mapping, tags)
    await publisher.start()
    client = AsyncModbusTcpClient("127.0.0.1", port=publisher.port, timeout=2, retries=0, reconnect_delay=0)
    try:
        assert await client.connect()
        for function in ("read_holding_registers", "read_input_registers"):
            registers = await read_block(client, 1, function)
            assert energies(registers) == [pytest.approx(daily_value(DAYS - 1, c)) for c in range(4)]
            assert registers[8:] == [2026, 11, 20]  # day 5 after 2026-11-15, Moscow midnight
        reply = await client.read_holding_registers(5, count=11, device_id=2)  # m2: no archive
        assert reply.isError() and reply.exception_code == 0x02

        # a new day's record for A+ only: the block moves to that day, the rest is not mixed in
        tap = feeder.tap()
        tap.submit_archive([ArchiveRecord("m1", ArchiveKind.DAILY, DAILY[0], day_start(DAYS), 6100.5)])
        registers: list[int] = []
        for _ in range(100):  # the publisher's update task writes it
            registers = await read_block(client, 1, "read_holding_registers")
            if registers[8:] == [2026, 11, 21]:
                break
            await asyncio.sleep(0.02)
        assert registers[8:] == [2026, 11, 21]
        values = energies(registers)
        assert values[0] == pytest.approx(6100.5)
        assert all(math.isnan(v) for v in values[1:])
    finally:
        client.close()
        await publisher.stop()


SITE_XML = """\
<?xml version="1.0" encoding="utf-8"?>
<mapping name="substation 7">
  <modbus host="127.0.0.1" port="0"/>
  <storage path="readings.sqlite3"/>
  <archives meters="feeder2" timezone="Europe/Moscow"/>
  <channel name="bus1">
    <serial port="/dev/null"/>
    <meter name="feeder1" model="307" address="49932">
      <tag register="voltage_a"/>
    </meter>
    <meter name="feeder2" model="307" address="49933" unit-id="5">
      <tag register="voltage_a"/>
    </meter>
  </channel>
  <poll-group name="fast" interval="10" meters="all" registers="voltage_a"/>
</mapping>
"""


def test_modbus_map_lists_the_snapshot_registers(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "site.xml"
    path.write_text(SITE_XML)
    assert main(["modbus-map", str(path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    snapshot = [r for r in rows if ".daily." in r["tag"]]
    assert {r["meter"] for r in snapshot} == {"feeder2"}
    holding = [(r["unit_id"], r["address"], r["type"], r["tag"], r["unit"]) for r in snapshot
               if r["table"] == "holding"]
    assert holding == [
        ("5", "5", "float32", "feeder2.daily.energy_active_import_total", "kWh"),
        ("5", "7", "float32", "feeder2.daily.energy_active_export_total", "kWh"),
        ("5", "9", "float32", "feeder2.daily.energy_reactive_import_total", "kvarh"),
        ("5", "11", "float32", "feeder2.daily.energy_reactive_export_total", "kvarh"),
        ("5", "13", "uint16", "feeder2.daily.year", ""),
        ("5", "14", "uint16", "feeder2.daily.month", ""),
        ("5", "15", "uint16", "feeder2.daily.day", ""),
    ]
    assert len(snapshot) == 2 * (len(SNAPSHOT_REGISTERS) + len(DATE_FIELDS))
    assert main(["modbus-map", str(path)]) == 0
    assert "| 5 | input | 13 | uint16 |  |  | feeder2.daily.year | feeder2 |" in capsys.readouterr().out
