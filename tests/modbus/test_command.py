"""``milur-bridge modbus-map``: the rows and both renderings."""

from __future__ import annotations

import csv
import io

import pytest

from bridge.cli import main
from bridge.commands.modbus_map import COLUMNS, map_rows, render_csv, render_markdown
from bridge.config.modbus_map import resolve_modbus_map
from bridge.config.model import ModbusPoint, ModbusType, WordOrder
from bridge.tags.store import TagStore

from .builders import meter, now, serving, settings, site, tag


def sample():
    tags = [
        tag("m1", "voltage_a", description="Phase A | voltage"),
        tag("m1", "current_a", point=ModbusPoint(data_type=ModbusType.INT16, scale=100.0)),
        tag("m1", "serial_number"),
        tag("m2", "energy_active_import_total",
            point=ModbusPoint(data_type=ModbusType.FLOAT64, word_order=WordOrder.CDAB)),
    ]
    mapping = site([meter("m1"), meter("m2", unit_id=7)], tags, settings(port=1502))
    return mapping, resolve_modbus_map(mapping)


def test_rows_cover_values_and_status_registers_in_address_order():
    mapping, resolved = sample()
    rows = [dict(zip(COLUMNS, row, strict=True)) for row in map_rows(mapping, resolved)]
    values = [r for r in rows if ".status." not in r["tag"]]
    assert [(r["unit_id"], r["address"], r["type"], r["word_order"], r["scale"], r["tag"], r["unit"])
            for r in values] == [
        ("1", "100", "float32", "ABCD", "", "m1.voltage_a", "V"),
        ("1", "102", "int16", "", "100", "m1.current_a", "A"),
        ("7", "100", "float64", "CDAB", "", "m2.energy_active_import_total", "kWh"),
    ]
    status = [r for r in rows if r["tag"].startswith("m2.status.")]
    assert [(r["table"], r["address"], r["tag"]) for r in status[:5]] == [
        ("holding", "0", "m2.status.quality"),
        ("holding", "1", "m2.status.age_oldest"),
        ("holding", "2", "m2.status.failures"),
        ("holding", "3", "m2.status.state"),
        ("holding", "4", "m2.status.age_newest"),
    ]
    assert {r["table"] for r in status} == {"holding", "input"}
    assert len(rows) == 3 + 2 * 2 * 5
    units = [int(r["unit_id"]) for r in rows]
    assert units == sorted(units)


def test_csv_parses_back():
    mapping, resolved = sample()
    parsed = list(csv.reader(io.StringIO(render_csv(map_rows(mapping, resolved)))))
    assert tuple(parsed[0]) == COLUMNS
    assert ["1", "holding", "100", "float32", "ABCD", "", "m1.voltage_a", "m1", "V",
            "Phase A | voltage"] in parsed


def test_markdown_has_header_table_and_legend():
    mapping, resolved = sample()
    text = render_markdown(mapping, resolved, map_rows(mapping, resolved))
    assert "Server 127.0.0.1:1502, layout per-meter" in text
    assert "| 1 | holding | 100 | float32 | ABCD |  | m1.voltage_a | m1 | V | Phase A \\| voltage |" in text
    assert "Quality codes: 0 Good, 1 Uncertain_LastUsableValue" in text
    assert "Meter states: 0 waiting, 1 ok, 2 failing, 3 demoted" in text
    assert "Not served on Modbus (text and date registers): m1.serial_number." in text


SITE_XML = """\
<?xml version="1.0" encoding="utf-8"?>
<mapping name="substation 7">
  <modbus host="127.0.0.1" port="0" word-order="CDAB"/>
  <channel name="bus1">
    <serial port="/dev/null"/>
    <meter name="feeder1" model="307" address="49932">
      <tag register="voltage_a"/>
      <tag register="power_active_total"/>
      <tag register="energy_active_import_total">
        <modbus type="uint32" scale="100"/>
      </tag>
      <tag register="serial_number"/>
    </meter>
    <meter name="feeder2" model="307" address="49933" unit-id="5">
      <tag register="voltage_a"/>
      <tag register="power_active_total"/>
      <tag register="energy_active_import_total">
        <modbus type="uint32" scale="100"/>
      </tag>
      <tag register="serial_number"/>
    </meter>
  </channel>
  <poll-group name="fast" interval="10" meters="all"
              registers="voltage_a power_active_total serial_number"/>
  <poll-group name="energy" interval="1800" meters="all" registers="energy_active_import_total"/>
</mapping>
"""


def test_cli_prints_the_map_of_a_mapping_file(tmp_path, capsys):
    path = tmp_path / "site.xml"
    path.write_text(SITE_XML)
    assert main(["modbus-map", str(path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    served = {(r["unit_id"], r["table"], r["address"]): (r["tag"], r["type"], r["word_order"],
                                                         r["scale"]) for r in rows}
    assert served[("1", "holding", "104")] == ("feeder1.energy_active_import_total", "uint32",
                                               "CDAB", "100")
    assert served[("5", "holding", "100")] == ("feeder2.voltage_a", "float32", "CDAB", "")
    assert served[("5", "input", "3")][0] == "feeder2.status.state"
    assert main(["modbus-map", str(path)]) == 0
    assert "feeder1.serial_number, feeder2.serial_number" in capsys.readouterr().out


def test_cli_reports_placement_errors_with_file_and_line(tmp_path, capsys):
    path = tmp_path / "site.xml"
    path.write_text(SITE_XML.replace('<tag register="power_active_total"/>',
                                     '<tag register="power_active_total"><modbus address="0"/>'
                                     '</tag>', 1))
    assert main(["modbus-map", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == (
        f"{path}:8: tag feeder1.power_active_total: holding register 0 of unit id 1 overlaps the "
        f"status registers of meter feeder1 ({path}:6)"
    )


@pytest.mark.timeout(30)
@pytest.mark.usefixtures("no_leftovers")
async def test_a_loaded_mapping_is_served_where_the_map_says(tmp_path):
    from pymodbus.client import AsyncModbusTcpClient

    from bridge.config.loader import load_mapping

    path = tmp_path / "site.xml"
    path.write_text(SITE_XML)
    mapping = load_mapping(path)
    store = TagStore()
    store.define(["feeder2.energy_active_import_total"])
    store.set_good({"feeder2.energy_active_import_total": 123456.78}, now())
    async with serving(mapping, store) as publisher:
        client = AsyncModbusTcpClient("127.0.0.1", port=publisher.port, timeout=2, retries=0,
                                      reconnect_delay=0)
        assert await client.connect()
        try:
            reply = await client.read_holding_registers(104, count=2, device_id=5)
        finally:
            client.close()
    low, high = reply.registers  # CDAB: low word first
    assert (high << 16) | low == 12345678
