"""Archive tags: which exist, the newest record on start, new records through the tap, reload."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from bridge.config.model import TagConfig
from bridge.storage import ArchiveKind, ArchiveRecord
from bridge.storage.archive_tags import ArchiveTagFeeder, archive_tags, colliding_archive_tags
from bridge.tags import TagStore
from bridge.tags.model import Quality

from .conftest import (
    DAILY,
    DAYS,
    FilledStore,
    build_mapping,
    daily_value,
    day_start,
    profile_time,
    profile_value,
)

PROFILE_KEYS = [
    "m1.profile_energy_active_import",
    "m1.profile_energy_active_export",
    "m1.profile_energy_reactive_import",
    "m1.profile_energy_reactive_export",
]


def test_only_meters_with_archives_get_archive_tags(tmp_path):
    mapping = build_mapping(tmp_path / "db")
    tags = archive_tags(mapping)
    assert [t.key for t in tags] == [f"m1.daily_{r}" for r in DAILY] + PROFILE_KEYS
    assert {t.unit for t in tags if "reactive" in t.key} == {"kvarh"}
    assert {t.unit for t in tags if "active_" in t.key and "reactive" not in t.key} == {"kWh"}
    no_storage = replace(mapping, storage=replace(mapping.storage, enabled=False))
    assert archive_tags(no_storage) == []
    no_profile = replace(mapping, archives=replace(mapping.archives, profile=False))
    assert [t.kind for t in archive_tags(no_profile)] == [ArchiveKind.DAILY] * 4


def test_a_mapped_tag_keeps_its_name(tmp_path):
    clash = TagConfig("daily_energy_active_import_total", "m1", "energy_active_import_total")
    mapping = build_mapping(tmp_path / "db", extra_tags=(clash,))
    assert "m1.daily_energy_active_import_total" not in [t.key for t in archive_tags(mapping)]
    assert colliding_archive_tags(mapping) == ["m1.daily_energy_active_import_total"]


@pytest.mark.timeout(30)
@pytest.mark.usefixtures("no_leftovers")
async def test_start_publishes_the_newest_stored_record_with_its_time(filled: FilledStore):
    mapping = build_mapping(filled.path)
    tags = TagStore()
    feeder = ArchiveTagFeeder(mapping, tags, filled.store)
    assert await feeder.start() == 8
    for c, register in enumerate(DAILY):
        tv = tags.get(f"m1.daily_{register}")
        assert tv is not None
        assert (tv.value, tv.quality, tv.source_time) == (
            daily_value(DAYS - 1, c), Quality.Good, day_start(DAYS - 1)
        )
    for c, key in enumerate(PROFILE_KEYS):
        tv = tags.get(key)
        assert tv is not None
        assert (tv.value, tv.source_time) == (profile_value(47, c), profile_time(47))


@pytest.mark.timeout(30)
@pytest.mark.usefixtures("no_leftovers")
async def test_the_tap_stores_every_record_and_publishes_only_newer_ones(filled: FilledStore):
    mapping = build_mapping(filled.path)
    tags = TagStore()
    feeder = ArchiveTagFeeder(mapping, tags, filled.store)
    await feeder.start()
    tap = feeder.tap()
    key = "m1.daily_energy_active_import_total"
    newer = day_start(DAYS)
    older = day_start(0) - timedelta(days=1)  # a backfill of an older day
    tap.submit_archive([
        ArchiveRecord("m1", ArchiveKind.DAILY, DAILY[0], newer, 9999.5),
        ArchiveRecord("m1", ArchiveKind.DAILY, DAILY[0], older, 1.0),
        ArchiveRecord("m2", ArchiveKind.DAILY, DAILY[0], newer, 7.0),  # m2 has no archive tags
    ])
    tv = tags.get(key)
    assert tv is not None and (tv.value, tv.source_time) == (9999.5, newer)
    assert tags.get("m2.daily_energy_active_import_total") is None
    await tap.flush()
    stored = await tap.archive("m1", ArchiveKind.DAILY, older, newer + timedelta(days=1), DAILY[0])
    assert [(r.timestamp, r.value) for r in stored][0] == (older, 1.0)
    assert [(r.timestamp, r.value) for r in stored][-1] == (newer, 9999.5)
    assert len(stored) == DAYS + 2


@pytest.mark.timeout(30)
@pytest.mark.usefixtures("no_leftovers")
async def test_reload_removes_tags_of_meters_no_longer_read(filled: FilledStore):
    mapping = build_mapping(filled.path)
    tags = TagStore()
    feeder = ArchiveTagFeeder(mapping, tags, filled.store)
    await feeder.start()
    assert tags.get(PROFILE_KEYS[0]) is not None
    await feeder.apply_mapping(replace(mapping, archives=replace(mapping.archives, profile=False)))
    assert all(tags.get(k) is None for k in PROFILE_KEYS)
    assert tags.get("m1.daily_energy_active_import_total") is not None
    await feeder.apply_mapping(mapping)  # back again: loaded from the store
    tv = tags.get(PROFILE_KEYS[1])
    assert tv is not None and tv.value == profile_value(47, 1)
