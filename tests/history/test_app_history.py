"""The whole bridge: a simulated meter's archives reach the OPC UA history and the Modbus snapshot."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient

from bridge.app import BridgeApp
from bridge.config.model import (
    ArchiveSettings,
    ChannelConfig,
    ChannelKind,
    MeterConfig,
    ModbusSettings,
    ModbusType,
    OpcUaSettings,
    PollGroup,
    SiteMapping,
    StatusSettings,
    StorageSettings,
    TagConfig,
    TcpClientSettings,
    WordOrder,
)
from bridge.config.templates import builtin_templates
from bridge.polling.clock import meter_zone
from bridge.publishers.modbus_values import decode_registers
from bridge.simulator.bus import SimulatedBus
from bridge.simulator.meter import SimulatedMeter
from bridge.simulator.serving import TcpMeterServer

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("no_leftovers")]

ARCHIVES = ArchiveSettings(enabled=True, search_retry=0.02, backfill_days=1, chunk=8, journal=False)


def site(meter_port: int, opcua_port: int, db: Path) -> SiteMapping:
    tcp = TcpClientSettings("127.0.0.1", meter_port, connect_timeout=2.0)
    channel = ChannelConfig(
        "ch", ChannelKind.TCP_CLIENT, tcp=tcp, response_timeout=0.5, frame_gap=0.001,
        reconnect_min=0.05, reconnect_max=0.2,
    )
    return SiteMapping(
        source="<test>",
        templates=builtin_templates(),
        listeners=(),
        channels=(channel,),
        meters=(MeterConfig("m", "ch", "107", "milur-1phase", 21),),
        poll_groups=(PollGroup("live", ("m",), ("energy_active_import_total",), interval=0.2),),
        tags=(TagConfig("energy", "m", "energy_active_import_total"),),
        opcua=OpcUaSettings(endpoint=f"opc.tcp://127.0.0.1:{opcua_port}/milur-bridge"),
        modbus=ModbusSettings(host="127.0.0.1", port=0),
        status=StatusSettings(enabled=False),
        storage=StorageSettings(enabled=True, path=str(db), flush_interval=0.05),
        archives=ARCHIVES,
    )


async def test_archives_read_by_the_bridge_are_served_as_history_and_snapshot(
    tmp_path: Path, free_port: Callable[[], int], wait_until: Any
):
    meter = SimulatedMeter("107", 21, search_delay=0.05)
    async with TcpMeterServer(SimulatedBus([meter])) as server:
        mapping = site(server.port, free_port(), tmp_path / "readings.sqlite3")
        app = BridgeApp(mapping)
        await app.start()
        try:
            daily_key, profile_key = "m.daily_energy_active_import_total", "m.profile_energy_active_import"

            def published(key: str) -> bool:
                tv = app.store.get(key)
                return tv is not None and tv.value is not None

            await wait_until(lambda: published(daily_key) and published(profile_key), within=60,
                             what="archive tags from the meter")
            daily = app.store.get(daily_key)
            assert daily is not None and daily.source_time is not None
            assert app.readings is not None
            await app.readings.flush()

            # Modbus: the snapshot block of unit id 1 holds that record and its day
            assert app.modbus is not None
            client = AsyncModbusTcpClient("127.0.0.1", port=app.modbus.port, timeout=2, retries=0)
            try:
                assert await client.connect()
                reply = await client.read_holding_registers(5, count=11, device_id=1)
            finally:
                client.close()
            registers = list(reply.registers)
            day = daily.source_time.astimezone(meter_zone(ARCHIVES))
            assert registers[8:] == [day.year, day.month, day.day]
            served = decode_registers(registers[0:2], ModbusType.FLOAT32, WordOrder.ABCD)
            assert served == pytest.approx(float(daily.value), rel=1e-6)  # type: ignore[arg-type]

            # OPC UA: the archive tag's history is the stored daily archive; the tag's readings too
            async with Client(mapping.opcua.endpoint, timeout=10) as opc:
                ns = await opc.get_namespace_index(mapping.opcua.namespace_uri)
                start, end = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
                node = opc.get_node(ua.NodeId(daily_key, ns, ua.NodeIdType.String))
                values = await node.read_raw_history(start, end)
                assert values and values[-1].SourceTimestamp == daily.source_time
                assert values[-1].Value.Value == daily.value
                stored = await app.readings.history("m.energy", start, end)
                assert stored
                energy = opc.get_node(ua.NodeId("m.energy", ns, ua.NodeIdType.String))
                history = await energy.read_raw_history(start, end)
                assert [dv.SourceTimestamp for dv in history[: len(stored)]] == [
                    r.source_time for r in stored
                ]
        finally:
            await app.stop()
