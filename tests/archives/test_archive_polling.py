"""Archive polling end to end: simulator on loopback TCP / dial-in, Collector, SQLite in tmp_path."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from archive_rig import FAST_ARCHIVES, ShiftedClock, meter, sim, site, tcp_channel

from bridge.config.model import (
    ArchiveSettings,
    ChannelConfig,
    ChannelKind,
    DialInSettings,
    IdentifyMethod,
    ListenerConfig,
    SiteMapping,
)
from bridge.polling.archives import MeterArchiveSync
from bridge.polling.collector import Collector
from bridge.simulator.archives import EPOCH, POWER_JOURNAL
from bridge.simulator.bus import SimulatedBus
from bridge.simulator.meter import SimulatedMeter
from bridge.simulator.serving import DialOutModem, TcpMeterServer
from bridge.storage import SqliteReadingStore
from bridge.storage.model import PROFILE_CHANNELS, ArchiveKind, ArchiveRecord
from bridge.tags import TagStore
from bridge.tags.model import TagChange

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_leftovers")]

SLOT = timedelta(minutes=30)
IMEI = "351234567890121"


@contextlib.asynccontextmanager
async def opened_store(path: Path) -> AsyncIterator[SqliteReadingStore]:
    store = SqliteReadingStore(path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def collecting(
    mapping: SiteMapping, readings: SqliteReadingStore, clock: ShiftedClock | None = None, **kw: Any
) -> AsyncIterator[tuple[Collector, TagStore]]:
    tags = TagStore()
    collector = Collector(mapping, tags, reading_store=readings, archive_clock=clock, **kw)
    await collector.start()
    try:
        yield collector, tags
    finally:
        await collector.stop()


async def synced(collector: Collector, name: str, wait_until: Any, count: int = 1) -> MeterArchiveSync:
    sync = collector.archives.syncs[name]
    await wait_until(lambda: sync.syncs >= count and not sync.running, within=30, what="archive sync")
    return sync


def local_utc(naive: datetime) -> datetime:
    """A simulator wall time (the host's zone) as UTC, as the bridge stores it."""
    return naive.astimezone(UTC)


async def away_from_a_half_hour_boundary(margin: float = 30.0) -> None:
    """Start a slot-counting test well inside a half-hour (the meter records a slot at :00 / :30).

    The expected slots are computed from the meter's time after the backfill; a half-hour boundary
    passing during the test would add a slot the bridge had no reason to read yet.
    """
    into = datetime.now().timestamp() % 1800
    if into > 1800 - margin:
        await asyncio.sleep(1800 - into + 1)


def expected_slots(now: datetime, days: int) -> list[datetime]:
    """Half-hour starts the bridge should hold after a backfill of ``days`` at meter time ``now``."""
    last = EPOCH + ((now - EPOCH) // SLOT - 1) * SLOT
    window = now - timedelta(days=days)
    first = EPOCH + ((window - EPOCH) // SLOT + 1) * SLOT
    slots = []
    t = first
    while t <= last:
        slots.append(t)
        t += SLOT
    return slots


async def archive(
    readings: SqliteReadingStore, kind: ArchiveKind, channel: str | None = None
) -> list[ArchiveRecord]:
    await readings.flush()
    start = datetime(2000, 1, 1, tzinfo=UTC)
    return await readings.archive("m", kind, start, datetime(2100, 1, 1, tzinfo=UTC), channel)


async def test_daily_profile_and_journal_read_into_storage(tmp_path: Path, wait_until: Any) -> None:
    await away_from_a_half_hour_boundary()
    meter_sim = sim(21)
    async with TcpMeterServer(SimulatedBus([meter_sim])) as server, opened_store(
        tmp_path / "r.sqlite3"
    ) as readings:
        mapping = site(tcp_channel("ch", server.port), [meter("m", "ch", 21)])
        async with collecting(mapping, readings) as (collector, _tags):
            sync = await synced(collector, "m", wait_until)
            now = meter_sim.wall_time()
        profile = await archive(readings, ArchiveKind.PROFILE, "A+")
        slots = expected_slots(now, FAST_ARCHIVES.backfill_days)
        assert [r.timestamp for r in profile] == [local_utc(t) for t in slots]
        # the values are the meter's: its series in Wh, times the profile scale (0.001 kWh)
        arch = meter_sim.archives
        for record, t in zip(profile, slots, strict=True):
            slot = (t - EPOCH) // SLOT
            assert record.value == pytest.approx(arch.profile_values(slot)[0] * 0.001)
        for channel in PROFILE_CHANNELS:
            assert len(await archive(readings, ArchiveKind.PROFILE, channel)) == len(slots)

        daily = await archive(readings, ArchiveKind.DAILY, "energy_active_import_total")
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        assert [r.timestamp for r in daily] == [local_utc(today)]
        assert daily[0].value == pytest.approx(arch.daily_values((today - EPOCH).days)[0] * 0.01)
        t1 = await archive(readings, ArchiveKind.DAILY, "energy_active_import_t1")
        t2 = await archive(readings, ArchiveKind.DAILY, "energy_active_import_t2")
        assert t1[0].value + t2[0].value == pytest.approx(daily[0].value)

        events = await archive(readings, ArchiveKind.EVENT, "power")
        window = now - timedelta(days=FAST_ARCHIVES.backfill_days)
        expected = [
            (local_utc(t), flags)
            for _, t, flags in arch.journal(now)
            if t >= window.replace(second=0)
        ]
        assert [(e.timestamp, e.value) for e in events] == expected
        assert sync.records == 4 * len(slots) + 3 + len(expected)
        assert meter_sim.archives.search_questions >= 3


def dial_in_site(listener_port: int, archives: ArchiveSettings) -> SiteMapping:
    channel = ChannelConfig(
        "gsm",
        ChannelKind.DIAL_IN,
        dial_in=DialInSettings("gsm", IMEI),
        response_timeout=0.5,
        retries=1,
        frame_gap=0.001,
        reconnect_min=0.05,
        reconnect_max=0.2,
    )
    mapping = site(channel, [meter("m", "gsm", 21)], archives)
    lc = ListenerConfig("gsm", host="127.0.0.1", port=listener_port, method=IdentifyMethod.IMEI,
                        identify_timeout=2.0)
    return dataclasses.replace(mapping, listeners=(lc,))


async def test_backfill_after_a_two_day_outage_of_a_dial_in_module(
    tmp_path: Path, wait_until: Any, free_port: Any
) -> None:
    await away_from_a_half_hour_boundary()
    meter_sim = sim(21)
    clock = ShiftedClock()
    settings = dataclasses.replace(FAST_ARCHIVES, backfill_days=3)
    mapping = dial_in_site(free_port(), settings)
    bus = SimulatedBus([meter_sim])
    async with opened_store(tmp_path / "r.sqlite3") as readings, collecting(
        mapping, readings, clock
    ) as (collector, _tags):
        port = collector.listeners["gsm"].port
        sync = collector.archives.syncs["m"]
        async with DialOutModem(bus, "127.0.0.1", port, IMEI, reconnect_delay=0.05):
            await wait_until(lambda: sync.syncs >= 1 and not sync.running, within=30)
        before = len(await archive(readings, ArchiveKind.PROFILE, "A+"))
        records_before = sync.records
        await wait_until(lambda: collector.diagnostics()["channel:gsm"]["connected"] is False)

        clock.advance([meter_sim], 2 * 86400)  # two days offline; the meter keeps recording
        done = sync.syncs
        async with DialOutModem(bus, "127.0.0.1", port, IMEI, reconnect_delay=0.05):
            await wait_until(lambda: sync.syncs > done and not sync.running, within=30)
            now = meter_sim.wall_time()
            profile = await archive(readings, ArchiveKind.PROFILE, "A+")
            # every half-hour of the five days present exactly once, oldest first
            slots = expected_slots(now, 5)
            assert [r.timestamp for r in profile] == [local_utc(t) for t in slots]
            assert len(profile) - before == 96
            daily = await archive(readings, ArchiveKind.DAILY, "energy_active_import_total")
            times = [r.timestamp for r in daily]
            assert len(times) == len(set(times)) == 5  # days -2 .. today of the 3-day window + 2
            # only the missing records were read: 96 half-hours × 4 channels, 2 days × 3 blocks
            new_journal = sync.records - records_before - 96 * 4 - 2 * 3
            assert 0 <= new_journal <= 2 * 4  # at most two outages a day in the simulator

            # a second backfill of the same period reads no profile or daily record again
            records = sync.records
            done = sync.syncs
            collector.archives.trigger()
            await wait_until(lambda: sync.syncs > done and not sync.running, within=30)
            assert sync.records == records
            assert len(await archive(readings, ArchiveKind.PROFILE, "A+")) == len(profile)


async def test_live_polls_keep_their_cadence_during_backfill(tmp_path: Path, wait_until: Any) -> None:
    meter_sim = sim(23)
    settings = dataclasses.replace(FAST_ARCHIVES, backfill_days=3, chunk=2)
    async with TcpMeterServer(SimulatedBus([meter_sim])) as server, opened_store(
        tmp_path / "r.sqlite3"
    ) as readings:
        mapping = site(tcp_channel("ch", server.port), [meter("m", "ch", 23)], settings, interval=0.05)
        live: list[datetime] = []

        class LivePolls:
            def on_changes(self, changes: Sequence[TagChange]) -> None:
                live.extend(c.value.source_time for c in changes if c.key == "m.voltage"
                            and c.value.source_time is not None)

        tags = TagStore()
        tags.add_listener(LivePolls())
        collector = Collector(mapping, tags, reading_store=readings)
        await collector.start()
        try:
            sync = collector.archives.syncs["m"]
            await wait_until(lambda: sync.jobs_run >= 5, within=10)
            fired0, polls0 = collector.triggers["live"], len(live)
            await wait_until(lambda: sync.syncs >= 1 and not sync.running, within=30)
            fired, polls = collector.triggers["live"] - fired0, len(live) - polls0
        finally:
            await collector.stop()
    assert sync.jobs_run > 3 * 48 // 2  # the backfill took many background jobs
    assert fired >= 5
    # every trigger while the backfill ran got its live poll (one coalesced at the edges at most
    # per scheduling hiccup); a starved live poll would leave this near zero
    assert polls >= fired // 2


async def test_meter_that_stops_answering_gets_no_archive_reads(tmp_path: Path, wait_until: Any) -> None:
    meter_sim = sim(25)
    async with TcpMeterServer(SimulatedBus([meter_sim])) as server, opened_store(
        tmp_path / "r.sqlite3"
    ) as readings:
        mapping = site(tcp_channel("ch", server.port, retries=0), [meter("m", "ch", 25)])
        async with collecting(mapping, readings) as (collector, tags):
            sync = await synced(collector, "m", wait_until)
            meter_sim.faults.silent = True
            await wait_until(lambda: collector.meter_state("m") in ("failing", "demoted"))
            jobs = sync.jobs_run
            collector.archives.trigger()
            assert not sync.running and sync.jobs_run == jobs
            meter_sim.faults.silent = False


def test_power_journal_default_matches_the_simulator() -> None:
    assert ArchiveSettings().power_journal == POWER_JOURNAL
    assert SimulatedMeter("107", 1).archives.held(POWER_JOURNAL, datetime.now())
