"""``milur-bridge tags``: the listing matches what the OPC UA and Modbus servers really serve."""

from __future__ import annotations

import asyncio
import csv
import io
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient

import bridge.cli
from bridge.cli import main
from bridge.commands import tags
from bridge.config.loader import load_mapping
from bridge.publishers.modbus import ModbusPublisher
from bridge.publishers.opcua import OpcUaPublisher
from bridge.tags import TagStore

pytestmark = pytest.mark.timeout(60)
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"

SITE = """\
<?xml version="1.0" encoding="UTF-8"?>
<mapping name="tags-test">
  <opcua endpoint="opc.tcp://127.0.0.1:{opcua}/milur-bridge" security="None"/>
  <modbus host="127.0.0.1" port="{modbus}"/>
  <status enabled="false"/>
  <channel name="line">
    <serial port="/dev/null"/>
    <meter name="m307" model="307" address="1">
      <tag name="Ua" register="voltage_a" node-id="Feeder7.U1"/>
      <tag name="Ub" register="voltage_b" node-id="ns=2;s=Feeder7.U2"/>
      <tag name="P" register="power_active_total" scale="0.001" unit="kW">
        <modbus address="200" type="float32"/>
      </tag>
      <tag name="Ea" register="energy_active_import_total">
        <modbus address="202" type="float64" word-order="DCBA"/>
      </tag>
      <tag name="fw" register="firmware"/>
    </meter>
    <meter name="m107" model="107" address="2"><tags all="true"/></meter>
  </channel>
  <poll-group name="g" interval="10s" meters="m307"
              registers="voltage_a voltage_b power_active_total energy_active_import_total firmware"/>
  <poll-group name="s" interval="10s" meters="m107" registers="voltage current tariff_current"/>
</mapping>
"""
VALUES: dict[str, float | int | str] = {
    "m307.Ua": 231.5, "m307.Ub": 229.25, "m307.P": 12.5, "m307.Ea": 111.44, "m307.fw": "123",
    "m107.voltage": 228.0, "m107.current": 4.5, "m107.tariff_current": 2,
}  # fmt: skip
OPCUA_TYPES = {"Double": ua.VariantType.Double, "String": ua.VariantType.String,
               "UInt32": ua.VariantType.UInt32, "Int32": ua.VariantType.Int32}  # fmt: skip


@pytest.fixture(autouse=True)
def only_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real CLI entry point with just this command (others may be mid-edit)."""
    monkeypatch.setattr(bridge.cli, "_command_modules", lambda: [tags])


def listing(path: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, str]]:
    assert main(["tags", str(path), "--format", "csv"]) == 0
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


def decode(registers: list[int], data_type: str, word_order: str) -> float:
    raw = b"".join(r.to_bytes(2, "big") for r in registers)
    if word_order == "DCBA":
        raw = raw[::-1]
    else:
        assert word_order == "ABCD", word_order  # the orders this mapping uses
    return float(struct.unpack({"float32": ">f", "float64": ">d"}[data_type], raw)[0])


@pytest.mark.parametrize("path", sorted(MAPPINGS.glob("*.xml")), ids=lambda p: p.name)
def test_every_example_mapping_lists_every_tag(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mapping = load_mapping(path)
    rows = listing(path, capsys)
    assert [(r["meter"], r["tag"]) for r in rows] == [(t.meter, t.name) for t in mapping.tags]
    for row, tag in zip(rows, mapping.tags, strict=True):
        reg = mapping.register_of(mapping.meter(tag.meter), tag.register)
        assert row["register"] == reg.name and int(row["number"]) == reg.number
        assert row["opcua_node_id"].startswith("ns=2;s=") and row["opcua_type"] in OPCUA_TYPES
        if reg.is_numeric:
            assert int(row["modbus_unit"]) >= 1 and int(row["modbus_address"]) >= 0
            assert row["modbus_table"] in ("holding", "input")
        else:
            assert row["modbus_unit"] == row["modbus_address"] == "-"


def test_text_format_has_aligned_columns(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tags", str(MAPPINGS / "demo.xml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["METER", "TAG", "REGISTER"]
    column = lines[0].index("OPCUA_NODE_ID")
    assert all(line[column:].startswith("ns=2;s=") for line in lines[1:])


def test_bad_mapping_prints_every_error_and_exits_1(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text(SITE.format(opcua=4840, modbus=5020).replace('register="voltage_b"', 'register="nope"'))
    assert main(["tags", str(bad)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and f"{bad}:" in err and "nope" in err
    assert main(["tags", str(tmp_path / "missing.xml")]) == 1


async def test_listing_matches_the_running_opcua_and_modbus_servers(
    tmp_path: Path, free_port, capsys, no_leftovers
) -> None:
    path = tmp_path / "site.xml"
    path.write_text(SITE.format(opcua=free_port(), modbus=free_port()))
    mapping = load_mapping(path)
    rows = listing(path, capsys)
    assert {r["opcua_node_id"] for r in rows} >= {"ns=2;s=Feeder7.U1", "ns=2;s=Feeder7.U2"}
    fw = next(r for r in rows if r["tag"] == "fw")
    assert fw["modbus_address"] == "-" and fw["opcua_type"] == "String"

    store = TagStore()
    store.define(VALUES)
    store.set_good(VALUES, datetime.now(UTC))
    opcua, modbus = OpcUaPublisher(mapping, store), ModbusPublisher(mapping, store)
    await opcua.start()
    try:
        await modbus.start()
        try:
            async with Client(mapping.opcua.endpoint, timeout=5) as client:
                ns = await client.get_namespace_index(mapping.opcua.namespace_uri)
                assert ns == tags.NAMESPACE_INDEX
                for row in rows:
                    node = client.get_node(ua.NodeId.from_string(row["opcua_node_id"]))
                    value = await node.read_data_value()
                    key = f"{row['meter']}.{row['tag']}"
                    assert value.Value.VariantType is OPCUA_TYPES[row["opcua_type"]], key
                    assert value.Value.Value == pytest.approx(VALUES[key]), key
            client_mb = AsyncModbusTcpClient("127.0.0.1", port=modbus.port, timeout=5)
            await client_mb.connect()
            try:
                for row in (r for r in rows if r["modbus_address"] != "-"):
                    words = {"float32": 2, "float64": 4}[row["modbus_type"]]
                    rr = await client_mb.read_holding_registers(
                        int(row["modbus_address"]), count=words, device_id=int(row["modbus_unit"])
                    )
                    assert not rr.isError(), row
                    key = f"{row['meter']}.{row['tag']}"
                    got = decode(list(rr.registers), row["modbus_type"], row["word_order"])
                    assert got == pytest.approx(float(VALUES[key]), rel=1e-6), key
            finally:
                client_mb.close()
        finally:
            await modbus.stop()
    finally:
        await opcua.stop()
    await asyncio.get_running_loop().shutdown_default_executor()
