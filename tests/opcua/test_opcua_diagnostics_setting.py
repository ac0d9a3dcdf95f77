"""``<opcua diagnostics="all|meters|none">``: which diagnostic nodes a real asyncua client finds.

The TagStore keeps every diagnostic key whatever the setting; only the OPC UA address space changes.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asyncua import Client, ua

from bridge.config.loader import MappingError, load_mapping
from bridge.publishers.opcua import OpcUaPublisher
from bridge.tags import TagStore
from bridge.tags.keys import channel_diag_key, meter_diag_key

from .conftest import define_all, make_mapping, settings

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_leftovers", "executor_closed")]


async def _exists(client: Client, ns: int, text: str) -> bool:
    """Whether the node answers a read of its BrowseName (BadNodeIdUnknown when absent)."""
    try:
        await client.get_node(ua.NodeId(text, ns, ua.NodeIdType.String)).read_browse_name()
    except ua.UaStatusCodeError as exc:
        assert exc.code == ua.StatusCodes.BadNodeIdUnknown
        return False
    return True


async def _browse_names(client: Client, ns: int, text: str) -> set[str]:
    node = client.get_node(ua.NodeId(text, ns, ua.NodeIdType.String))
    return {(await child.read_browse_name()).Name for child in await node.get_children()}


@pytest.mark.parametrize(
    ("diagnostics", "meter_nodes", "channel_nodes"),
    [("all", True, True), ("meters", True, False), ("none", False, False)],
)
async def test_diagnostic_nodes_follow_the_setting(
    endpoint: str, diagnostics: str, meter_nodes: bool, channel_nodes: bool
) -> None:
    mapping = make_mapping(opcua=settings(endpoint, diagnostics=diagnostics))
    store = TagStore()
    define_all(store, mapping)
    pub = OpcUaPublisher(mapping, store)
    await pub.start()
    try:
        # a diagnostic value changes in the store: written where its node exists, skipped otherwise
        now = datetime.now(UTC)
        store.set_good({meter_diag_key("m1_1", "state"): "ok"}, now)
        store.set_good({channel_diag_key("bus1", "peer"): "/dev/ttyS1"}, now)
        async with Client(endpoint, timeout=5) as client:
            ns = int(await client.get_namespace_index("urn:milur-bridge"))
            assert await _exists(client, ns, "m1_1.voltage_a")  # tags are always there
            assert await _exists(client, ns, "m1_1.diag") is meter_nodes
            assert await _exists(client, ns, meter_diag_key("m1_1", "state")) is meter_nodes
            assert await _exists(client, ns, meter_diag_key("m2_2", "round_trip_ms")) is meter_nodes
            assert await _exists(client, ns, "channel:bus1.diag") is channel_nodes
            assert await _exists(client, ns, channel_diag_key("bus2", "connected")) is channel_nodes
            meter_children = await _browse_names(client, ns, "m1_1")
            assert ("Diagnostics" in meter_children) is meter_nodes
            assert "voltage_a" in meter_children
            assert ("Diagnostics" in await _browse_names(client, ns, "channel:bus1")) is channel_nodes
        # the store still holds every diagnostic
        assert store.get(meter_diag_key("m1_1", "state")) is not None
        assert store.get(channel_diag_key("bus1", "peer")) is not None
        assert pub.metrics()  # the publisher keeps running and reporting
    finally:
        await pub.stop()


async def test_reload_drops_diagnostic_nodes(endpoint: str) -> None:
    mapping = make_mapping(opcua=settings(endpoint))
    store = TagStore()
    define_all(store, mapping)
    pub = OpcUaPublisher(mapping, store)
    await pub.start()
    try:
        await pub.apply_mapping(make_mapping(opcua=settings(endpoint, diagnostics="none")))
        async with Client(endpoint, timeout=5) as client:
            ns = int(await client.get_namespace_index("urn:milur-bridge"))
            assert await _exists(client, ns, "m1_1.voltage_a")
            assert not await _exists(client, ns, meter_diag_key("m1_1", "state"))
            assert not await _exists(client, ns, channel_diag_key("bus1", "connected"))
        # no node any more: the change is not written, and nothing fails
        store.set_good({meter_diag_key("m1_1", "state"): "failing"}, datetime.now(UTC))
        await asyncio.sleep(0.2)
        assert pub.metrics()
    finally:
        await pub.stop()


MAPPING = """\
<mapping>
  <opcua endpoint="opc.tcp://127.0.0.1:4841/x"{attr}/>
  <channel name="line1">
    <serial port="/dev/ttyUSB0"/>
    <meter name="m1" model="105" address="1"><tags registers="voltage"/></meter>
  </channel>
  <poll-group name="all" interval="10s" meters="all" registers="voltage"/>
</mapping>
"""


@pytest.mark.parametrize(("attr", "expected"), [("", "all"), (' diagnostics="meters"', "meters"),
                                                 (' diagnostics="none"', "none")])  # fmt: skip
def test_mapping_attribute(tmp_path: Path, attr: str, expected: str) -> None:
    path = tmp_path / "site.xml"
    path.write_text(MAPPING.format(attr=attr))
    assert load_mapping(path).opcua.diagnostics == expected


def test_mapping_attribute_refuses_unknown_value(tmp_path: Path) -> None:
    path = tmp_path / "site.xml"
    path.write_text(MAPPING.format(attr=' diagnostics="some"'))
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    assert "diagnostics" in str(info.value)
