"""OPC UA HistoryRead through a real asyncua client, served from a SQLite ReadingStore."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import datetime

import pytest
from asyncua import Client, Node, ua

from bridge.config.model import OpcUaSettings, SiteMapping, TagConfig
from bridge.publishers.opcua import OpcUaPublisher
from bridge.storage import ArchiveKind, ArchiveRecord
from bridge.storage.archive_tags import ArchiveTagFeeder
from bridge.tags import TagStore

from .conftest import (
    DAILY,
    DAYS,
    READINGS,
    FilledStore,
    build_mapping,
    daily_value,
    day_start,
    profile_time,
    profile_value,
    reading_time,
    reading_value,
)

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_leftovers")]


@dataclass
class Served:
    """A running publisher with a connected client."""

    client: Client
    ns: int
    feeder: ArchiveTagFeeder

    def node(self, key: str) -> Node:
        return self.client.get_node(ua.NodeId(key, self.ns, ua.NodeIdType.String))


@dataclass
class Running:
    """A running publisher and the mapping it serves."""

    publisher: OpcUaPublisher
    mapping: SiteMapping


@pytest.fixture
async def running(filled: FilledStore, free_port: Callable[[], int]) -> AsyncIterator[Running]:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/milur-bridge"
    mapping = build_mapping(filled.path, opcua=OpcUaSettings(endpoint=endpoint))
    tags = TagStore()
    tags.define(t.key for t in mapping.tags)
    publisher = OpcUaPublisher(mapping, tags, filled.store)
    await publisher.start()
    try:
        yield Running(publisher, mapping)
    finally:
        await publisher.stop()


@pytest.fixture
async def served(filled: FilledStore, free_port: Callable[[], int]) -> AsyncIterator[Served]:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/milur-bridge"
    mapping = build_mapping(filled.path, opcua=OpcUaSettings(endpoint=endpoint))
    tags = TagStore()
    tags.define(t.key for t in mapping.tags)
    feeder = ArchiveTagFeeder(mapping, tags, filled.store)
    await feeder.start()
    publisher = OpcUaPublisher(mapping, tags, filled.store)
    await publisher.start()
    try:
        async with Client(endpoint, timeout=10) as client:
            ns = await client.get_namespace_index(mapping.opcua.namespace_uri)
            yield Served(client, ns, feeder)
    finally:
        await publisher.stop()


async def history(
    node: Node, start: datetime | None, end: datetime | None, count: int = 0,
    continuation: bytes | None = None,
) -> ua.HistoryReadResult:
    details = ua.ReadRawModifiedDetails(
        IsReadModified=False,
        StartTime=start or ua.get_win_epoch(),
        EndTime=end or ua.get_win_epoch(),
        NumValuesPerNode=count,
        ReturnBounds=False,
    )
    return await node.history_read(details, continuation)


def series(values: list[ua.DataValue]) -> list[tuple[object, datetime | None]]:
    return [(dv.Value.Value, dv.SourceTimestamp) for dv in values]


def expected(indexes: range) -> list[tuple[object, datetime | None]]:
    return [(reading_value(i), reading_time(i)) for i in indexes]


async def test_a_stored_tag_reads_its_readings_with_the_meter_read_times(served: Served):
    node = served.node("m1.energy_ap")
    assert (await node.read_attribute(ua.AttributeIds.Historizing)).Value.Value is True
    access = (await node.read_attribute(ua.AttributeIds.AccessLevel)).Value.Value
    assert access & ua.AccessLevel.HistoryRead.mask and access & ua.AccessLevel.CurrentRead.mask

    # start inclusive, end exclusive, oldest first
    values = await node.read_raw_history(reading_time(10), reading_time(20))
    assert series(values) == expected(range(10, 20))
    assert all(dv.StatusCode.is_good() for dv in values)

    # NumValuesPerNode pages with continuation points until the range is done
    pages: list[int] = []
    collected: list[ua.DataValue] = []
    point: bytes | None = None
    while True:
        result = await history(node, reading_time(10), reading_time(20), 4, point)
        result.StatusCode.check()
        pages.append(len(result.HistoryData.DataValues))
        collected += result.HistoryData.DataValues
        point = result.ContinuationPoint
        if not point:
            break
    assert pages == [4, 4, 2]
    assert series(collected) == expected(range(10, 20))

    # start after end: newest first, end < t <= start
    assert series(await node.read_raw_history(reading_time(20), reading_time(10))) == expected(
        range(20, 10, -1)
    )
    # no start: the newest values before the end time
    assert series(await node.read_raw_history(None, reading_time(50), numvalues=3)) == expected(
        range(49, 46, -1)
    )
    # no end: everything from the start time on
    assert series(await node.read_raw_history(reading_time(90))) == expected(range(90, READINGS))


async def test_ranges_without_data_and_nodes_without_history(served: Served):
    node = served.node("m1.energy_ap")
    empty = await history(node, datetime(2020, 1, 1, tzinfo=reading_time(0).tzinfo),
                          datetime(2020, 1, 2, tzinfo=reading_time(0).tzinfo))
    assert empty.StatusCode.value == ua.StatusCodes.GoodNoData
    assert empty.HistoryData.DataValues == []

    voltage = served.node("m1.voltage")  # a tag that is not stored
    assert (await voltage.read_attribute(ua.AttributeIds.Historizing)).Value.Value is False
    access = (await voltage.read_attribute(ua.AttributeIds.AccessLevel)).Value.Value
    assert not access & ua.AccessLevel.HistoryRead.mask
    refused = await history(voltage, reading_time(0), reading_time(20))
    assert refused.StatusCode.value == ua.StatusCodes.BadHistoryOperationUnsupported
    with pytest.raises(ua.UaStatusCodeError):
        await voltage.read_raw_history(reading_time(0), reading_time(20))

    unknown = await history(served.node("m1.no_such_tag"), reading_time(0), reading_time(20))
    assert unknown.StatusCode.value == ua.StatusCodes.BadNodeIdUnknown
    no_times = await history(node, None, None, 0)
    assert no_times.StatusCode.value == ua.StatusCodes.BadHistoryOperationInvalid
    foreign = await history(node, reading_time(0), reading_time(20), 2, b"junk")
    assert foreign.StatusCode.value == ua.StatusCodes.BadContinuationPointInvalid


async def test_archive_tags_live_under_the_meter_with_the_archive_as_history(served: Served):
    m1 = served.node("m1")
    names = {(await child.read_browse_name()).Name for child in await m1.get_children()}
    assert {f"daily_{r}" for r in DAILY} <= names
    assert "profile_energy_reactive_export" in names
    m2_names = [(await child.read_browse_name()).Name for child in await served.node("m2").get_children()]
    assert "energy_ap" in m2_names
    assert not [n for n in m2_names if n.startswith(("daily_", "profile_"))]

    daily = served.node("m1.daily_energy_active_export_total")
    current = await daily.read_data_value()
    assert current.Value.Value == daily_value(DAYS - 1, 1)
    assert current.SourceTimestamp == day_start(DAYS - 1)
    values = await daily.read_raw_history(day_start(0), day_start(DAYS))
    assert series(values) == [(daily_value(d, 1), day_start(d)) for d in range(DAYS)]

    profile = served.node("m1.profile_energy_active_import")
    values = await profile.read_raw_history(profile_time(0), profile_time(48))
    assert series(values) == [(profile_value(s, 0), profile_time(s)) for s in range(48)]

    # a record the archive reader stores now becomes the value, and part of the history
    tap = served.feeder.tap()
    tap.submit_archive([ArchiveRecord("m1", ArchiveKind.DAILY, DAILY[1], day_start(DAYS), 7777.25)])
    await tap.flush()

    for _ in range(200):  # the publisher writes it in its own task
        current = await daily.read_data_value()
        if current.Value.Value == 7777.25:
            break
        await asyncio.sleep(0.05)
    assert (current.Value.Value, current.SourceTimestamp) == (7777.25, day_start(DAYS))
    values = await daily.read_raw_history(day_start(DAYS - 1), day_start(DAYS + 1))
    assert series(values) == [(daily_value(DAYS - 1, 1), day_start(DAYS - 1)), (7777.25, day_start(DAYS))]


async def test_a_reload_follows_what_is_stored(running: Running):
    """Storing a tag, or no longer reading archives, changes its nodes after a reload."""
    mapping = running.mapping
    voltage = TagConfig("voltage", "m1", "voltage_a", store=True)
    tags = tuple(voltage if t.key == "m1.voltage" else t for t in mapping.tags)
    archives = replace(mapping.archives, profile=False)
    await running.publisher.apply_mapping(replace(mapping, tags=tags, archives=archives))
    endpoint = mapping.opcua.endpoint
    async with Client(endpoint, timeout=10) as client:
        ns = await client.get_namespace_index(mapping.opcua.namespace_uri)
        node = client.get_node(ua.NodeId("m1.voltage", ns, ua.NodeIdType.String))
        assert (await node.read_attribute(ua.AttributeIds.Historizing)).Value.Value is True
        result = await history(node, reading_time(0), reading_time(20))
        assert result.StatusCode.value == ua.StatusCodes.GoodNoData  # stored now, nothing yet
        gone = client.get_node(ua.NodeId("m1.profile_energy_active_import", ns, ua.NodeIdType.String))
        refused = await history(gone, profile_time(0), profile_time(48))
        assert refused.StatusCode.value == ua.StatusCodes.BadNodeIdUnknown
        daily = client.get_node(ua.NodeId("m1.daily_energy_active_import_total", ns, ua.NodeIdType.String))
        assert len(await daily.read_raw_history(day_start(0), day_start(DAYS))) == DAYS
