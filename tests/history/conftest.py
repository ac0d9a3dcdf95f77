"""Fixtures for the history tests: a site with storage and archives, and a filled SQLite store.

m1 (unit id 1) has its archives read; m2 (unit id 2) does not. m1's energy tag is stored (an energy
register), its voltage tag is not. The store holds a day of 15-minute energy readings of m1, six
daily records of m1 (every channel of ``SNAPSHOT_REGISTERS``) and one day of its 30-minute profile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bridge.config.model import (
    ArchiveSettings,
    ChannelConfig,
    ChannelKind,
    MeterConfig,
    ModbusSettings,
    OpcUaSettings,
    Origin,
    SerialSettings,
    SiteMapping,
    StorageSettings,
    TagConfig,
)
from bridge.config.templates import builtin_templates
from bridge.storage import PROFILE_CHANNELS, ArchiveKind, ArchiveRecord, Reading, SqliteReadingStore, TagClass
from bridge.tags.model import Quality

SOURCE = "site.xml"
ZONE = ZoneInfo("Europe/Moscow")
DAILY = (
    "energy_active_import_total",
    "energy_active_export_total",
    "energy_reactive_import_total",
    "energy_reactive_export_total",
)
#: first reading of m1.energy_ap; one every 15 minutes
FIRST_READING = datetime(2026, 11, 20, 0, 0, 7, 250000, tzinfo=UTC)
READINGS = 96
#: first daily record day (meter's clock) and the number of days
FIRST_DAY = datetime(2026, 11, 15, tzinfo=ZONE)
DAYS = 6
#: the profile day (meter's clock): 48 half-hours
PROFILE_DAY = datetime(2026, 11, 20, tzinfo=ZONE)


def reading_value(i: int) -> float:
    """Value of the i-th energy reading."""
    return 1000.0 + 0.25 * i


def reading_time(i: int) -> datetime:
    """Meter read time of the i-th energy reading."""
    return FIRST_READING + timedelta(minutes=15 * i)


def day_start(d: int) -> datetime:
    """Start of the d-th record day (meter's midnight) in UTC."""
    return (FIRST_DAY + timedelta(days=d)).astimezone(UTC)


def daily_value(d: int, channel: int) -> float:
    """Daily record value of day d for the channel at that index of ``DAILY``."""
    return 5000.0 * (channel + 1) + 12.5 * d


def profile_time(slot: int) -> datetime:
    """Start of the 30-minute interval ``slot`` of the profile day, in UTC."""
    return (PROFILE_DAY + timedelta(minutes=30 * slot)).astimezone(UTC)


def profile_value(slot: int, channel: int) -> float:
    """Profile value of one interval and channel (index of ``PROFILE_CHANNELS``)."""
    return round(0.1 * (channel + 1) + 0.001 * slot, 6)


def build_mapping(
    db: Path,
    opcua: OpcUaSettings | None = None,
    modbus: ModbusSettings | None = None,
    extra_tags: tuple[TagConfig, ...] = (),
) -> SiteMapping:
    """The test site; ``db`` is the storage path."""
    meters = tuple(
        MeterConfig(name, "bus1", "307", "milur-3phase", address, origin=Origin(SOURCE, 10 + address))
        for name, address in (("m1", 1), ("m2", 2))
    )
    tags = (
        TagConfig("energy_ap", "m1", "energy_active_import_total", origin=Origin(SOURCE, 20)),
        TagConfig("voltage", "m1", "voltage_a", origin=Origin(SOURCE, 21)),
        TagConfig("energy_ap", "m2", "energy_active_import_total", origin=Origin(SOURCE, 22)),
        *extra_tags,
    )
    return SiteMapping(
        source=SOURCE,
        templates=builtin_templates(),
        listeners=(),
        channels=(ChannelConfig("bus1", ChannelKind.SERIAL, serial=SerialSettings("/dev/null")),),
        meters=meters,
        poll_groups=(),
        tags=tags,
        opcua=opcua or OpcUaSettings(enabled=False),
        modbus=modbus or ModbusSettings(host="127.0.0.1", port=0, origin=Origin(SOURCE, 5)),
        storage=StorageSettings(enabled=True, path=str(db), flush_interval=0.05),
        archives=ArchiveSettings(
            enabled=True, meters=("m1",), daily_registers=DAILY, timezone="Europe/Moscow"
        ),
    )


def archive_records() -> list[ArchiveRecord]:
    """m1's daily records (every channel, ``DAYS`` days) and one profile day."""
    records = [
        ArchiveRecord("m1", ArchiveKind.DAILY, channel, day_start(d), daily_value(d, c))
        for d in range(DAYS)
        for c, channel in enumerate(DAILY)
    ]
    records += [
        ArchiveRecord("m1", ArchiveKind.PROFILE, channel, profile_time(s), profile_value(s, c))
        for s in range(48)
        for c, channel in enumerate(PROFILE_CHANNELS)
    ]
    return records


@dataclass
class FilledStore:
    """An open store with the readings and archive records above."""

    store: SqliteReadingStore
    path: Path


@pytest.fixture
async def filled(tmp_path: Path) -> AsyncIterator[FilledStore]:
    path = tmp_path / "readings.sqlite3"
    store = SqliteReadingStore(path, replace(StorageSettings(), flush_interval=0.05))
    await store.open()
    try:
        readings = [
            Reading("m1.energy_ap", reading_value(i), Quality.Good, reading_time(i)) for i in range(READINGS)
        ]
        store.submit(readings, TagClass.ENERGY)
        store.submit_archive(archive_records())
        await store.flush()
        yield FilledStore(store, path)
    finally:
        await store.close()
