"""OPC UA publisher: address space, values, status codes, timestamps, subscriptions, refusals.

A real asyncua Client talks to the publisher over TCP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from datetime import timedelta

import pytest
from asyncua import Client, ua

from bridge.publishers.opcua import OpcUaPublisher
from bridge.publishers.opcua_space import unece_unit_id
from bridge.tags import Quality, TagStore

from .conftest import define_all, make_mapping, read_time, settings

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_leftovers", "executor_closed")]


async def _ns(client: Client) -> int:
    return int(await client.get_namespace_index("urn:milur-bridge"))


def _node(client: Client, ns: int, text: str):  # noqa: ANN202
    return client.get_node(ua.NodeId(text, ns, ua.NodeIdType.String))


async def _children(node) -> dict[str, object]:  # noqa: ANN001
    out = {}
    for child in await node.get_children():
        out[(await child.read_browse_name()).Name] = child
    return out


async def test_browse_tree(client: Client, running) -> None:  # noqa: ANN001
    _pub, _store, mapping = running
    top = await _children(client.nodes.objects)
    assert {"bus1", "bus2"} <= set(top)
    bus1 = await _children(top["bus1"])
    assert set(bus1) == {"Diagnostics", "m1_1", "m1_2"}
    meter = await _children(bus1["m1_1"])
    assert set(meter) == {t.name for t in mapping.tags if t.meter == "m1_1"} | {"Diagnostics"}
    diag = await _children(meter["Diagnostics"])
    assert "state" in diag and "round_trip_ms" in diag
    chan_diag = await _children(bus1["Diagnostics"])
    assert "connected" in chan_diag


async def test_group_folders(endpoint: str) -> None:
    mapping = make_mapping(opcua=settings(endpoint, grouping="group"), group="Substation 7")
    store = TagStore()
    pub = OpcUaPublisher(mapping, store)
    await pub.start()
    try:
        async with Client(endpoint, timeout=5) as c:
            top = await _children(c.nodes.objects)
            assert "Substation 7" in top and "bus1" not in top
            group = await _children(top["Substation 7"])
            assert {"m1_1", "m2_2", "bus1 Diagnostics", "bus2 Diagnostics"} <= set(group)
    finally:
        await pub.stop()


async def test_types_units_and_access(client: Client, running) -> None:  # noqa: ANN001
    ns = await _ns(client)
    voltage = _node(client, ns, "m1_1.voltage_a")
    assert await voltage.read_data_type() == ua.NodeId(ua.ObjectIds.Double)
    assert await voltage.read_type_definition() == ua.NodeId(ua.ObjectIds.AnalogItemType)
    assert (await voltage.read_description()).Text == "Phase A voltage"
    eu = await (await voltage.get_child("0:EngineeringUnits")).read_value()
    assert (eu.UnitId, eu.DisplayName.Text) == (unece_unit_id("VLT"), "V")
    for key, code in (
        ("power_reactive", "D44"),
        ("energy_r", "K3"),
        ("frequency", "HTZ"),
        ("energy_a", "KWH"),
    ):
        eu = await (await _node(client, ns, f"m1_1.{key}").get_child("0:EngineeringUnits")).read_value()
        assert eu.UnitId == unece_unit_id(code), key
    serial = _node(client, ns, "m1_1.serial")
    assert await serial.read_data_type() == ua.NodeId(ua.ObjectIds.String)
    assert await _node(client, ns, "m1_1.diag.requests").read_data_type() == ua.NodeId(ua.ObjectIds.UInt32)
    assert await _node(client, ns, "channel:bus1.connected").read_data_type() == ua.NodeId(
        ua.ObjectIds.Boolean
    )
    access = await voltage.read_attribute(ua.AttributeIds.AccessLevel)
    assert access.Value.Value == ua.AccessLevel.CurrentRead.mask


async def test_waiting_then_value_with_timestamps(client: Client, running, wait_until) -> None:  # noqa: ANN001
    _pub, store, _m = running
    ns = await _ns(client)
    node = _node(client, ns, "m1_2.voltage_a")
    dv = await node.read_data_value(raise_on_bad_status=False)
    assert dv.StatusCode.value == ua.StatusCodes.BadWaitingForInitialData
    store.set_good({"m1_2.voltage_a": 231.5, "m1_2.serial": "0123456"}, read_time(5))

    async def current() -> ua.DataValue:
        return await node.read_data_value(raise_on_bad_status=False)

    for _ in range(100):
        dv = await current()
        if dv.StatusCode.is_good():
            break
        await asyncio.sleep(0.02)
    assert dv.Value.Value == 231.5
    assert dv.SourceTimestamp.replace(tzinfo=None) == read_time(5).replace(tzinfo=None)
    assert dv.ServerTimestamp is not None and dv.ServerTimestamp >= dv.SourceTimestamp
    assert await _node(client, ns, "m1_2.serial").read_value() == "0123456"


async def test_subscription_follows_store(client: Client, running) -> None:  # noqa: ANN001
    _pub, store, _m = running
    ns = await _ns(client)
    queue: asyncio.Queue[ua.DataValue] = asyncio.Queue()

    class Handler:
        def datachange_notification(self, node, val, data) -> None:  # noqa: ANN001
            queue.put_nowait(data.monitored_item.Value)

    sub = await client.create_subscription(50, Handler())
    await sub.subscribe_data_change(_node(client, ns, "m2_1.current_a"))
    first = await asyncio.wait_for(queue.get(), 5)
    assert first.StatusCode.value == ua.StatusCodes.BadWaitingForInitialData

    async def next_good_or(status: int) -> ua.DataValue:
        while True:
            dv = await asyncio.wait_for(queue.get(), 5)
            if dv.StatusCode.value == status:
                return dv

    store.set_good({"m2_1.current_a": 1.25}, read_time(1))
    dv = await next_good_or(0)
    assert dv.Value.Value == 1.25
    store.set_good({"m2_1.current_a": 2.5}, read_time(2))
    dv = await next_good_or(0)
    assert dv.Value.Value == 2.5

    # a failed read of an old value: Bad_CommunicationError with the old read time
    store.set_failed(["m2_1.current_a"], Quality.Bad_CommunicationError, timedelta(seconds=1))
    dv = await next_good_or(ua.StatusCodes.BadCommunicationError)
    assert dv.SourceTimestamp.replace(tzinfo=None) == read_time(2).replace(tzinfo=None)

    store.set_good({"m2_1.current_a": 3.0}, read_time(3))
    dv = await next_good_or(0)
    assert dv.Value.Value == 3.0
    assert dv.SourceTimestamp.replace(tzinfo=None) == read_time(3).replace(tzinfo=None)
    await sub.delete()


async def test_uncertain_keeps_value(client: Client, running) -> None:  # noqa: ANN001
    _pub, store, _m = running
    ns = await _ns(client)
    store.set_good({"m1_1.frequency": 50.01}, read_time(0))
    store.set_failed(["m1_1.frequency"], Quality.Bad_CommunicationError, timedelta(days=36500))
    node = _node(client, ns, "m1_1.frequency")
    for _ in range(100):
        dv = await node.read_data_value(raise_on_bad_status=False)
        if dv.StatusCode.value == Quality.Uncertain_LastUsableValue.value:
            break
        await asyncio.sleep(0.02)
    assert dv.StatusCode.value == Quality.Uncertain_LastUsableValue.value
    assert dv.Value.Value == 50.01


async def test_unchanged_value_not_rewritten(running) -> None:  # noqa: ANN001
    pub, store, _m = running
    store.set_good({"m1_1.voltage_a": 230.0}, read_time(0))
    await asyncio.sleep(0.1)
    node_id = ua.NodeId("m1_1.voltage_a", pub.namespace_index, ua.NodeIdType.String)
    before = pub.server.read_attribute_value(node_id)
    # the same reading again (e.g. a reload re-applies the snapshot): no new ServerTimestamp
    pub.on_changes([type("C", (), {"key": "m1_1.voltage_a", "value": store.get("m1_1.voltage_a")})()])
    await asyncio.sleep(0.1)
    after = pub.server.read_attribute_value(node_id)
    assert after.ServerTimestamp == before.ServerTimestamp
    store.set_good({"m1_1.voltage_a": 231.0}, read_time(1))
    await asyncio.sleep(0.1)
    assert pub.server.read_attribute_value(node_id).Value.Value == 231.0


async def test_client_write_refused(client: Client, running) -> None:  # noqa: ANN001
    ns = await _ns(client)
    node = _node(client, ns, "m1_1.voltage_a")
    with pytest.raises(ua.UaStatusCodeError) as err:
        await node.write_value(ua.DataValue(ua.Variant(1.0, ua.VariantType.Double)))
    assert err.value.code in (ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadNotWritable)


async def test_large_batch_and_unknown_keys(endpoint: str) -> None:
    mapping = make_mapping(meters=50, channels=2, opcua=settings(endpoint))
    store = TagStore()
    define_all(store, mapping)
    pub = OpcUaPublisher(mapping, store)
    await pub.start()
    try:
        values = {t.key: float(i) for i, t in enumerate(mapping.tags) if t.register != "serial"}
        values["nobody.unknown"] = 1.0
        store.set_good(values, read_time(9))
        async with Client(endpoint, timeout=5) as c:
            ns = await _ns(c)
            last = mapping.tags[-2]
            node = _node(c, ns, last.key)
            for _ in range(200):
                dv = await node.read_data_value(raise_on_bad_status=False)
                if dv.StatusCode.is_good():
                    break
                await asyncio.sleep(0.02)
            assert dv.Value.Value == values[last.key]
            figures = pub.metrics()
            assert figures["milur_opcua_connections"] == 1
            assert (
                figures["milur_opcua_value_writes_total"] >= len(values) - 1
            )  # the unknown key is not served
    finally:
        await pub.stop()


async def test_reload_adds_and_removes(endpoint: str) -> None:
    mapping = make_mapping(meters=1, channels=1, opcua=settings(endpoint))
    store = TagStore()
    define_all(store, mapping)
    pub = OpcUaPublisher(mapping, store)
    await pub.start()
    try:
        async with Client(endpoint, timeout=5) as c:
            ns = await _ns(c)
            seen: asyncio.Queue[object] = asyncio.Queue()

            class Handler:
                def datachange_notification(self, node, val, data) -> None:  # noqa: ANN001
                    seen.put_nowait(val)

            sub = await c.create_subscription(50, Handler())
            await sub.subscribe_data_change(_node(c, ns, "m1_1.voltage_a"))
            store.set_good({"m1_1.voltage_a": 230.0}, read_time(1))
            while await asyncio.wait_for(seen.get(), 5) != 230.0:
                pass

            # a second meter, fewer tags, and a new unit for the kept voltage tag
            bigger = make_mapping(meters=2, channels=1, registers=("voltage_a",), opcua=settings(endpoint))
            bigger = dataclasses.replace(
                bigger, tags=tuple(dataclasses.replace(t, unit="kV") for t in bigger.tags)
            )
            define_all(store, bigger)
            await pub.apply_mapping(bigger)
            assert await _node(c, ns, "m1_2.voltage_a").read_browse_name()
            with pytest.raises(ua.UaStatusCodeError):
                await _node(c, ns, "m1_1.current_a").read_browse_name()
            eu = await (await _node(c, ns, "m1_1.voltage_a").get_child("0:EngineeringUnits")).read_value()
            assert eu.UnitId == unece_unit_id("KVT")

            # the subscription on the kept node goes on; the new node gets values
            store.set_good({"m1_1.voltage_a": 0.231, "m1_2.voltage_a": 0.229}, read_time(3))
            while await asyncio.wait_for(seen.get(), 5) != 0.231:
                pass
            node = _node(c, ns, "m1_2.voltage_a")
            for _ in range(100):
                if (await node.read_data_value(raise_on_bad_status=False)).StatusCode.is_good():
                    break
                await asyncio.sleep(0.02)
            assert await node.read_value() == 0.229
            await sub.delete()
    finally:
        await pub.stop()


async def test_reload_with_new_endpoint_restarts(endpoint: str, free_port) -> None:  # noqa: ANN001
    mapping = make_mapping(meters=1, channels=1, opcua=settings(endpoint))
    store = TagStore()
    define_all(store, mapping)
    store.set_good({"m1_1.frequency": 50.0}, read_time(1))
    pub = OpcUaPublisher(mapping, store)
    await pub.start()
    try:
        moved = f"opc.tcp://127.0.0.1:{free_port()}/milur-bridge"
        await pub.apply_mapping(dataclasses.replace(mapping, opcua=settings(moved)))
        async with Client(moved, timeout=5) as c:
            ns = await _ns(c)
            assert await _node(c, ns, "m1_1.frequency").read_value() == 50.0
    finally:
        await pub.stop()


async def test_port_in_use_is_a_clear_error(free_port, caplog) -> None:  # noqa: ANN001
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        endpoint = f"opc.tcp://127.0.0.1:{port}/milur-bridge"
        store = TagStore()
        pub = OpcUaPublisher(make_mapping(meters=1, channels=1, opcua=settings(endpoint)), store)
        with pytest.raises(OSError):
            await pub.start()
    assert "OPC UA server cannot listen on" in caplog.text
    store.set_good({"m1_1.voltage_a": 1.0}, read_time(1))  # no listener left behind
    assert pub._pending == {}
    await pub.stop()


async def test_configured_node_ids(endpoint: str) -> None:
    base = make_mapping(meters=1, channels=1, registers=("voltage_a", "current_a", "frequency"))
    tags = (
        dataclasses.replace(base.tags[0], opcua_node_id="ns=2;s=Feeder7.U1"),
        dataclasses.replace(base.tags[1], opcua_node_id="Feeder7.I1"),
        base.tags[2],
    )
    mapping = dataclasses.replace(base, tags=tags, opcua=settings(endpoint))
    store = TagStore()
    define_all(store, mapping)
    pub = OpcUaPublisher(mapping, store)
    await pub.start()
    try:
        store.set_good(
            {"m1_1.voltage_a": 228.5, "m1_1.current_a": 3.5, "m1_1.frequency": 49.98}, read_time(2)
        )
        async with Client(endpoint, timeout=5) as c:
            ns = await _ns(c)
            expected = {"Feeder7.U1": 228.5, "Feeder7.I1": 3.5, "m1_1.frequency": 49.98}
            for text, value in expected.items():
                node = _node(c, ns, text)
                for _ in range(100):
                    dv = await node.read_data_value(raise_on_bad_status=False)
                    if dv.StatusCode.is_good():
                        break
                    await asyncio.sleep(0.02)
                assert dv.Value.Value == value, text
            with pytest.raises(ua.UaStatusCodeError):
                await _node(c, ns, "m1_1.voltage_a").read_value()
    finally:
        await pub.stop()
