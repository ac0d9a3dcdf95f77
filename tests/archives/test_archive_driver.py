"""ArchiveReader against a simulated meter over a real TCP connection."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest
from archive_rig import FAST_ARCHIVES, link_rig, meter, sim

from bridge.config.templates import builtin_templates
from bridge.drivers.archives import (
    DAILY_LIST,
    PROFILE_LIST,
    ArchiveReader,
    SearchResult,
    index_range,
)
from bridge.drivers.errors import MeterErrorReply
from bridge.drivers.milur import MilurDriver
from bridge.simulator.archives import EPOCH, POWER_JOURNAL, SLOT
from bridge.simulator.meter import SimulatedMeter

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("no_leftovers")]


def reader_for(address: int, bcd: bool = False) -> ArchiveReader:
    cfg = meter("m", "ch", address)
    settings = dataclasses.replace(FAST_ARCHIVES, clock_bcd=bcd)
    return ArchiveReader(MilurDriver(cfg, builtin_templates()[cfg.template]), settings)


async def ask_until_done(reader: ArchiveReader, link: object, *args: object) -> SearchResult:
    for _ in range(50):
        result = await reader.search(link, *args)  # type: ignore[arg-type]
        if not result.pending:
            return result
        await asyncio.sleep(reader.settings.search_retry)
    raise AssertionError("search never finished")


def test_index_range_wraps() -> None:
    assert index_range(65534, 1) == [65534, 65535, 0, 1]
    assert index_range(7, 7) == [7]


@pytest.mark.parametrize("bcd", [False, True])
async def test_search_and_read_every_kind(bcd: bool) -> None:
    meter_sim: SimulatedMeter = sim(31, clock_bcd=bcd)
    reader = reader_for(31, bcd)
    async with link_rig(meter_sim) as rig:
        now = await reader.read_clock(rig.link)
        assert abs((now - meter_sim.wall_time()).total_seconds()) <= 2
        first = await reader.search(rig.link, PROFILE_LIST, now - timedelta(hours=2), now)
        assert first.pending  # STATUS 1: accepted, ask again (§4)
        found = await ask_until_done(reader, rig.link, PROFILE_LIST, now - timedelta(hours=2), now)
        assert found.found and len(found.indexes()) in (3, 4)
        for index in found.indexes():
            record = await reader.read_profile(rig.link, index)
            slot = (record.time - EPOCH) // SLOT
            assert slot % 65536 == index
            expected = meter_sim.archives.profile_values(slot)
            assert record.values == pytest.approx([v * 0.001 for v in expected])

        days = await ask_until_done(reader, rig.link, DAILY_LIST, now - timedelta(days=2), now)
        assert len(days.indexes()) == 2
        for index in days.indexes():
            daily = await reader.read_daily(rig.link, index)
            expected_daily = meter_sim.archives.daily_values((daily.time - EPOCH).days)
            assert daily.energies == pytest.approx([v * 0.01 for v in expected_daily])
            assert daily.time.hour == daily.time.minute == 0

        held = meter_sim.archives.journal(meter_sim.wall_time())
        events = await ask_until_done(reader, rig.link, POWER_JOURNAL, held[-3][1], now)
        read = [await reader.read_journal(rig.link, POWER_JOURNAL, i) for i in events.indexes()]
        assert [(e.time, e.flags) for e in read] == [(t, f) for _, t, f in held[-3:]]
        assert await reader.record_count(rig.link, PROFILE_LIST) == 60 * 48


async def test_a_record_the_meter_does_not_hold_is_an_error_reply() -> None:
    meter_sim = sim(32)
    reader = reader_for(32)
    async with link_rig(meter_sim) as rig:
        tomorrow = (meter_sim.wall_time() - EPOCH).days + 1
        with pytest.raises(MeterErrorReply) as err:
            await reader.read_daily(rig.link, tomorrow % 65536)
        assert err.value.code == 0x03


async def test_clock_write_with_func_02() -> None:
    meter_sim = sim(33)
    reader = reader_for(33)
    async with link_rig(meter_sim) as rig:
        now = await reader.read_clock(rig.link)
        await reader.write_clock(rig.link, now - timedelta(seconds=40))
        assert meter_sim.counters.clock_writes == 1
        assert meter_sim.clock_error == pytest.approx(-40, abs=2)
