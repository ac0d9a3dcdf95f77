"""ReadingHistory on a real SQLite store: paging in both directions, the asyncua interface call."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from asyncua import ua

from bridge.publishers.opcua_history import (
    ArchiveSeries,
    HistoryReadRefused,
    ReadingHistory,
    ReadingSeries,
)
from bridge.storage import ArchiveKind

from .conftest import DAILY, DAYS, READINGS, FilledStore, day_start, reading_time

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_leftovers")]

ENERGY = ua.NodeId("m1.energy_ap", 2, ua.NodeIdType.String)
DAILY_NODE = ua.NodeId("m1.daily_energy_active_import_total", 2, ua.NodeIdType.String)


def served(filled: FilledStore, max_values: int) -> ReadingHistory:
    history = ReadingHistory(filled.store, max_values=max_values)
    history.serve({
        ENERGY: ReadingSeries("m1.energy_ap", ua.VariantType.Double),
        DAILY_NODE: ArchiveSeries("m1", ArchiveKind.DAILY, DAILY[0]),
    })
    return history


def details(start: datetime | None, end: datetime | None, count: int = 0) -> ua.ReadRawModifiedDetails:
    return ua.ReadRawModifiedDetails(
        StartTime=start or ua.get_win_epoch(), EndTime=end or ua.get_win_epoch(), NumValuesPerNode=count
    )


async def all_pages(
    history: ReadingHistory, node: ua.NodeId, d: ua.ReadRawModifiedDetails
) -> list[list[datetime]]:
    pages: list[list[datetime]] = []
    point: bytes | None = None
    while True:
        values, point = await history.read_page(node, d, point)
        pages.append([dv.SourceTimestamp for dv in values])
        if point is None:
            return pages


async def test_pages_of_the_server_limit_forward_and_backward(filled: FilledStore):
    history = served(filled, max_values=40)
    forward = await all_pages(history, ENERGY, details(reading_time(0), None))
    assert [len(p) for p in forward] == [40, 40, 16]
    assert sum(forward, []) == [reading_time(i) for i in range(READINGS)]

    backward = await all_pages(history, ENERGY, details(reading_time(READINGS - 1), reading_time(0)))
    assert [len(p) for p in backward] == [40, 40, 15]  # end < t <= start
    assert sum(backward, []) == [reading_time(i) for i in range(READINGS - 1, 0, -1)]

    # no start, far end: the newest values first, found by reading back from the end
    newest = await all_pages(history, ENERGY, details(None, datetime(2031, 1, 1, tzinfo=UTC), 30))
    assert newest[0] == [reading_time(i) for i in range(READINGS - 1, READINGS - 31, -1)]
    # an archive series has no index of its newest record: read back in doubling windows
    far = details(None, datetime(2031, 1, 1, tzinfo=UTC), 2)
    assert (await all_pages(history, DAILY_NODE, far))[:2] == [
        [day_start(DAYS - 1), day_start(DAYS - 2)], [day_start(DAYS - 3), day_start(DAYS - 4)]
    ]


async def test_asyncua_interface_call_returns_the_next_time_as_continuation(filled: FilledStore):
    history = served(filled, max_values=4)
    values, following = await history.read_node_history(DAILY_NODE, day_start(0), day_start(DAYS), 0)
    assert [dv.SourceTimestamp for dv in values] == [day_start(d) for d in range(4)]
    assert following == day_start(4)
    values, following = await history.read_node_history(DAILY_NODE, following, day_start(DAYS), 0)
    assert [dv.SourceTimestamp for dv in values] == [day_start(4), day_start(5)]
    assert following is None
    unknown = ua.NodeId("m1.voltage", 2, ua.NodeIdType.String)
    assert await history.read_node_history(unknown, day_start(0), day_start(DAYS), 0) == ([], None)


async def test_closed_store_is_a_bad_status_not_a_crash(filled: FilledStore):
    history = served(filled, max_values=10)
    await filled.store.close()
    with pytest.raises(HistoryReadRefused) as refused:
        await history.read_page(ENERGY, details(reading_time(0), reading_time(5)), None)
    assert refused.value.code == ua.StatusCodes.BadResourceUnavailable
