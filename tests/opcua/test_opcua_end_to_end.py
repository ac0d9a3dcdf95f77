"""End to end: simulated Milur meter → TCP → polling → TagStore → OPC UA → asyncua client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from asyncua import Client, ua

from bridge.config.model import (
    ChannelConfig,
    ChannelKind,
    MeterConfig,
    PollGroup,
    SiteMapping,
    TagConfig,
    TcpClientSettings,
)
from bridge.config.templates import builtin_templates, template_for_model
from bridge.polling.collector import Collector
from bridge.publishers.opcua import OpcUaPublisher
from bridge.simulator.bus import SimulatedBus
from bridge.simulator.meter import SimulatedMeter
from bridge.simulator.serving import TcpMeterServer
from bridge.tags import TagStore

from .conftest import settings

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_leftovers", "executor_closed")]

REGISTERS = ("voltage", "frequency", "energy_active_import_total", "serial_number", "relay_state")


def _mapping(port: int, endpoint: str) -> SiteMapping:
    channel = ChannelConfig(
        "gsm",
        ChannelKind.TCP_CLIENT,
        tcp=TcpClientSettings("127.0.0.1", port, connect_timeout=1.0),
        response_timeout=0.3,
        retries=0,
        reconnect_min=0.05,
        reconnect_max=0.2,
        frame_gap=0.001,
    )
    meter = MeterConfig("m", "gsm", "107", template_for_model("107"), 12, bad_after=0.0)
    return SiteMapping(
        source="<test>",
        templates=builtin_templates(),
        listeners=(),
        channels=(channel,),
        meters=(meter,),
        poll_groups=(PollGroup("fast", ("m",), REGISTERS, interval=0.2),),
        tags=tuple(TagConfig(r, "m", r) for r in REGISTERS),
        opcua=settings(endpoint),
    )


async def test_simulator_values_reach_an_opcua_client(free_port: Callable[[], int]) -> None:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/milur-bridge"
    sim = SimulatedMeter("107", 12)
    async with TcpMeterServer(SimulatedBus([sim])) as meter_server:
        mapping = _mapping(meter_server.port, endpoint)
        store = TagStore()
        collector = Collector(mapping, store)
        publisher = OpcUaPublisher(mapping, store)
        await publisher.start()
        await collector.start()
        try:
            async with Client(endpoint, timeout=5) as client:
                ns = publisher.namespace_index
                queue: asyncio.Queue[ua.DataValue] = asyncio.Queue()

                class Handler:
                    def datachange_notification(self, node: object, val: object, data) -> None:  # noqa: ANN001
                        queue.put_nowait(data.monitored_item.Value)

                async def wait_status(good: bool) -> ua.DataValue:
                    while True:
                        dv = await asyncio.wait_for(queue.get(), 10)
                        if dv.StatusCode.is_good() == good and (good or dv.StatusCode.is_bad()):
                            return dv

                sub = await client.create_subscription(50, Handler())
                voltage = client.get_node(ua.NodeId("m.voltage", ns, ua.NodeIdType.String))
                await sub.subscribe_data_change(voltage)

                first = await wait_status(True)
                assert 150.0 < first.Value.Value < 300.0  # a plausible mains voltage from the simulator
                second = await wait_status(True)
                assert second.SourceTimestamp > first.SourceTimestamp  # fresh reads, fresh read times

                serial = client.get_node(ua.NodeId("m.serial_number", ns, ua.NodeIdType.String))
                assert await serial.read_value() == sim.serial_number
                relay = client.get_node(ua.NodeId("m.relay_state", ns, ua.NodeIdType.String))
                assert await relay.read_data_type() == ua.NodeId(ua.ObjectIds.UInt32)
                state = client.get_node(ua.NodeId("m.diag.state", ns, ua.NodeIdType.String))
                assert await state.read_value() == "ok"

                sim.faults.silent = True  # the meter stops answering: bad_after=0 → Bad at once
                bad = await wait_status(False)
                assert bad.StatusCode.value == ua.StatusCodes.BadCommunicationError
                sim.faults.silent = False
                again = await wait_status(True)
                assert again.SourceTimestamp > second.SourceTimestamp
                await sub.delete()
        finally:
            await collector.stop()
            await publisher.stop()
