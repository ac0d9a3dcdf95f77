"""Meter clock through the Collector: drift tag, optional correction (bounded, once a day)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from archive_rig import ShiftedClock, meter, sim, site, tcp_channel

from bridge.config.model import ArchiveSettings
from bridge.polling.clock import CORRECTION_CHANNEL
from bridge.polling.collector import Collector
from bridge.simulator.bus import SimulatedBus
from bridge.simulator.meter import SimulatedMeter
from bridge.simulator.serving import TcpMeterServer
from bridge.storage import SqliteReadingStore
from bridge.storage.model import ArchiveKind
from bridge.tags import Quality, TagStore

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_leftovers")]

#: clock only: no archive kinds, a clock read on every sync
CLOCK_ONLY = ArchiveSettings(
    enabled=True, daily=False, profile=False, journal=False, clock_interval=0.0
)
CORRECTING = dataclasses.replace(
    CLOCK_ONLY, clock_correction=True, clock_threshold=5.0, clock_max_step=30.0
)


@contextlib.asynccontextmanager
async def bridge(
    meter_sim: SimulatedMeter, settings: ArchiveSettings, db: Path, clock: ShiftedClock | None = None
) -> AsyncIterator[tuple[Collector, TagStore, SqliteReadingStore]]:
    readings = SqliteReadingStore(db)
    await readings.open()
    try:
        async with TcpMeterServer(SimulatedBus([meter_sim])) as server:
            mapping = site(tcp_channel("ch", server.port), [meter("m", "ch", meter_sim.address)],
                           settings)
            tags = TagStore()
            collector = Collector(mapping, tags, reading_store=readings, archive_clock=clock)
            await collector.start()
            try:
                yield collector, tags, readings
            finally:
                await collector.stop()
    finally:
        await readings.close()


async def sync_once(collector: Collector, wait_until: Any, first: bool = False) -> None:
    sync = collector.archives.syncs["m"]
    done = sync.syncs
    if first:
        await wait_until(lambda: sync.syncs >= 1 and not sync.running, within=20)
        return
    collector.archives.trigger()
    await wait_until(lambda: sync.syncs > done and not sync.running, within=20)


def drift(tags: TagStore) -> float:
    tv = tags.get("m.diag.clock_drift_s")
    assert tv is not None and tv.quality is Quality.Good
    assert isinstance(tv.value, float)
    return tv.value


async def test_drift_tag_and_no_correction_by_default(tmp_path: Path, wait_until: Any) -> None:
    assert ArchiveSettings().clock_correction is False
    meter_sim = sim(41)
    meter_sim.clock_error = 120.0  # the meter's clock runs two minutes ahead
    settings = dataclasses.replace(CLOCK_ONLY)  # correction left at its default
    async with bridge(meter_sim, settings, tmp_path / "r.sqlite3") as (collector, tags, readings):
        await sync_once(collector, wait_until, first=True)
        assert drift(tags) == pytest.approx(120.0, abs=1.5)
        meter_sim.clock_error = -30.0
        await sync_once(collector, wait_until)
        assert drift(tags) == pytest.approx(-30.0, abs=1.5)
        await readings.flush()
        assert meter_sim.counters.clock_writes == 0
        assert collector.archives.syncs["m"].clock.corrections == 0


async def test_correction_is_bounded_and_at_most_once_a_day(
    tmp_path: Path, wait_until: Any, caplog: pytest.LogCaptureFixture
) -> None:
    meter_sim = sim(42)
    meter_sim.clock_error = 100.0
    clock = ShiftedClock()
    db = tmp_path / "r.sqlite3"
    async with bridge(meter_sim, CORRECTING, db, clock) as (collector, tags, readings):
        await sync_once(collector, wait_until, first=True)
        assert meter_sim.counters.clock_writes == 1
        assert meter_sim.clock_error == pytest.approx(70.0, abs=1.5)  # one step of at most 30 s
        assert drift(tags) == pytest.approx(70.0, abs=1.5)
        assert "clock corrected by -30 s" in caplog.text

        await sync_once(collector, wait_until)  # same day: drift seen, no second write
        assert meter_sim.counters.clock_writes == 1
        assert drift(tags) == pytest.approx(70.0, abs=1.5)

        await readings.flush()
        start, end = clock() - timedelta(days=1), clock()
        events = await readings.archive("m", ArchiveKind.EVENT, start, end, CORRECTION_CHANNEL)
        assert [e.value for e in events] == [-30.0]

    # a restart on the same day does not allow another correction (the stored event says so)
    async with bridge(meter_sim, CORRECTING, db, clock) as (collector, tags, readings):
        await sync_once(collector, wait_until, first=True)
        assert meter_sim.counters.clock_writes == 1
        clock.advance([meter_sim], 86400 + 60)  # a day later: one more bounded step
        await sync_once(collector, wait_until)
        if meter_sim.counters.clock_writes == 1:
            # the sync that finished may have been the start-up one, which read the clock before
            # the advance (a loaded machine): one more sync must then make the correction
            await sync_once(collector, wait_until)
        assert meter_sim.counters.clock_writes == 2
        assert meter_sim.clock_error == pytest.approx(40.0, abs=1.5)


async def test_small_drift_is_left_alone(tmp_path: Path, wait_until: Any) -> None:
    meter_sim = sim(43)
    meter_sim.clock_error = 3.0  # below the 5 s threshold
    async with bridge(meter_sim, CORRECTING, tmp_path / "r.sqlite3") as (collector, tags, _r):
        await sync_once(collector, wait_until, first=True)
        assert drift(tags) == pytest.approx(3.0, abs=1.5)
        assert meter_sim.counters.clock_writes == 0


async def test_refused_correction_is_logged_once_and_not_retried_the_same_day(
    tmp_path: Path, wait_until: Any, caplog: pytest.LogCaptureFixture
) -> None:
    meter_sim = sim(44, clock_writable=False)  # the meter refuses FUNC 02 on register 14
    meter_sim.clock_error = 60.0
    async with bridge(meter_sim, CORRECTING, tmp_path / "r.sqlite3") as (collector, tags, _r):
        await sync_once(collector, wait_until, first=True)
        errors = meter_sim.counters.errors_sent
        assert errors == 1
        await sync_once(collector, wait_until)
        assert meter_sim.counters.errors_sent == errors  # no second attempt today
        assert drift(tags) == pytest.approx(60.0, abs=1.5)
        assert meter_sim.counters.clock_writes == 0
    assert caplog.text.count("clock correction refused") == 1
